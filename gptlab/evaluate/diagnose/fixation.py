"""word_fixation and number_fixation: one content word, or runs of numbers, take over the completion.

    python -m pytest tests/test_diagnose_detectors.py -k fixation

word_fixation. Content words are words of >= 3 letters that are not stop words or number words
(text.STOP_WORDS, text.NUMBER_WORDS), folded for plural/possessive ("ecosystems" = "ecosystem").
A word that labels a numbered thing ("Item 1B", "Note 12", "Table 3") is not counted: a table of
contents repeats "Item" without fixating on it. A sentence repeated word for word is counted once: a
sentence said over and over is repetition_loop's business, and its words dominate only by being copied
(`repeated_sentences` says how many copies were skipped).
`top_word_share` = count of the most frequent content word / all content words. The failure:
count >= WORD_MIN_COUNT and share >= WORD_SHARE. Human topic words recur ("revenue", "galaxy", "barn")
and reach a share of ~0.17 in 80-160-word passages of the corpus (bench/diagnose_calibrate.py); the
threshold sits well above that.

number_fixation. A number run is a stretch of figures separated by at most one other word (units such as
"million" or "%" are part of the figure), as in "1.8, 1.5, 1.6, 1.8, 1.5". A line that ends in a figure
followed by a line that starts with a word ends the run: that is a table's next row and its label
("First quarter $0.22 $0.20" / "Second quarter $0.22 $0.20"), and equal figures in labelled rows are
data. `number_run_repeat_share` = the fraction of the run's figures whose value already appeared before
it (in the prompt or earlier in the completion). The failure: a run of >= RUN_MIN figures with repeat
share >= RUN_REPEAT_SHARE, i.e. the model lists numbers it has seen rather than stating new ones; a data
table of fresh figures does not fail.
"""

from __future__ import annotations

import re
from collections import Counter

from gptlab.evaluate.diagnose.sample import Finding
from gptlab.evaluate.diagnose.text import NUMBER_RE, NUMBER_WORDS, WORD_RE, clip, is_content_word, \
    number_value, stem

WORD_MIN_COUNT = 8
WORD_SHARE = 0.25
RUN_MIN = 6
RUN_REPEAT_SHARE = 0.5
_MAX_GAP_WORDS = 1


_LABEL_NUMBER = re.compile(r"[ \t]+\d{1,3}[A-Za-z]?\b(?![.,]\d)")   # "Item 1B", "Note 12", not "in 2,000"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_ROW_BREAK = re.compile(r"^[ \t]*\n\s*[A-Za-z]")                      # figure, end of line, a row label


def _sentence_stems(sentence: str) -> list[str]:
    return [stem(m.group()) for m in WORD_RE.finditer(sentence)
            if is_content_word(m.group()) and not _LABEL_NUMBER.match(sentence, m.end())]


def word_fixation(completion: str) -> Finding:
    stems, seen, repeated = [], set(), 0
    for sentence in _SENTENCE_END.split(completion):
        key = " ".join(WORD_RE.findall(sentence.lower()))
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        stems += _sentence_stems(sentence)
    if not stems:
        return Finding(False, {"top_word": None, "top_word_count": 0, "top_word_share": 0.0,
                               "repeated_sentences": repeated})
    counts = Counter(stems)
    word, count = counts.most_common(1)[0]
    share = count / len(stems)
    metrics = {"top_word": word, "top_word_count": count, "top_word_share": round(share, 3),
               "content_words": len(stems), "repeated_sentences": repeated}
    if count >= WORD_MIN_COUNT and share >= WORD_SHARE:
        return Finding(True, metrics, {"word": word, "count": count, "share": round(share, 3)})
    return Finding(False, metrics)


def _figures_and_gaps(text: str) -> list[tuple[str, int, int, int]]:
    """Each figure in `text` as (value, start, end, words since the previous figure)."""
    out = []
    last_end = 0
    for m in NUMBER_RE.finditer(text):
        gap = text[last_end:m.start()]
        between = [w for w in WORD_RE.findall(gap) if w.lower() not in NUMBER_WORDS]
        value = number_value(m.group())
        if value:
            new_row = out and _ROW_BREAK.match(gap)
            out.append((value, m.start(), m.end(), _MAX_GAP_WORDS + 1 if new_row else len(between)))
            last_end = m.end()
    return out


def number_fixation(prompt: str, completion: str) -> Finding:
    figures = _figures_and_gaps(completion)
    n_words = len(WORD_RE.findall(completion))
    metrics = {"numbers": len(figures), "number_share": round(len(figures) / n_words, 3) if n_words else 0.0,
               "longest_number_run": 0, "number_run_repeat_share": 0.0}
    if not figures:
        return Finding(False, metrics)
    seen = Counter(number_value(m.group()) for m in NUMBER_RE.finditer(prompt))
    runs = []   # [first index, last index, figures seen before]
    for i, (value, _, _, gap) in enumerate(figures):
        if not runs or gap > _MAX_GAP_WORDS:
            runs.append([i, i, 0])
        runs[-1][1] = i
        runs[-1][2] += seen[value] > 0
        seen[value] += 1

    def qualifies(run):
        length = run[1] - run[0] + 1
        return length >= RUN_MIN and run[2] / length >= RUN_REPEAT_SHARE

    failing = [r for r in runs if qualifies(r)]
    first, last, repeats = max(failing or runs, key=lambda r: r[1] - r[0])
    length = last - first + 1
    metrics.update(longest_number_run=max(r[1] - r[0] + 1 for r in runs),
                   number_run_repeat_share=round(repeats / length, 3))
    if failing:
        span = completion[figures[first][1]:figures[last][2]]
        return Finding(True, metrics, {"run": clip(span, 200), "numbers": length,
                                       "repeated": round(repeats / length, 3), "offset": figures[first][1]})
    return Finding(False, metrics)
