"""prompt_echo: the completion repeats a long span of the prompt verbatim.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k echo

Metrics: `echo_words`, the longest run of consecutive words (case-sensitive, punctuation and spacing
ignored; "1.8" is two words) that occurs in both the prompt and the completion; `echo_share`, the
fraction of the completion's words inside copied runs of >= ECHO_MIN_RUN words.

The failure: echo_words >= ECHO_WORDS_PROSE for prose, >= ECHO_WORDS_CODE for code probes, or a copy of
(nearly) the whole prompt (>= WHOLE_PROMPT of its words, and >= WHOLE_PROMPT_MIN words) when the prompt is
shorter than those thresholds: a one-sentence prompt repeated word for word is an echo; or a whole sentence
of the prompt (capitalised, ending in . ! or ?, >= ECHO_SENTENCE_WORDS words) copied word for word, even when it is short:
"The function does not take any additional arguments." (`echo_sentence_words`, the longest such sentence).
"""

from __future__ import annotations

import re
from bisect import bisect_left

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip, word_spans
from gptlab.diagnose.types import Finding

ECHO_WORDS_PROSE = 18   # 10-K boilerplate recurs: human continuations share up to 17 words with their prompt
ECHO_WORDS_CODE = 12    # a code prompt is an instruction, which an answer has no reason to copy
ECHO_MIN_RUN = 6      # runs counted by echo_share (shorter ones are stock phrases)
WHOLE_PROMPT = 0.9
WHOLE_PROMPT_MIN = 10
ECHO_SENTENCE_WORDS = 5   # a copied sentence of the prompt: no human continuation repeats one of >= 4 words (calibration)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?](?=\s|$)")
_ANCHOR = 3           # runs are found from shared word trigrams
_MAX_ANCHOR_HITS = 64  # a trigram occurring more often than this in the prompt is not a useful anchor


def common_runs(prompt_words: list[str], completion_words: list[str], min_run: int) -> list[tuple[int, int, int]]:
    """Maximal runs (completion start, prompt start, length) of >= min_run equal words, longest first.

    Anchored on word trigrams, so the cost is linear in the completion length for ordinary text rather
    than the product of both lengths."""
    if len(prompt_words) < _ANCHOR or len(completion_words) < _ANCHOR:
        return []
    index: dict[tuple, list[int]] = {}
    for j in range(len(prompt_words) - _ANCHOR + 1):
        index.setdefault(tuple(prompt_words[j:j + _ANCHOR]), []).append(j)
    runs = []
    n, m = len(completion_words), len(prompt_words)
    for i in range(n - _ANCHOR + 1):
        hits = index.get(tuple(completion_words[i:i + _ANCHOR]))
        if not hits or len(hits) > _MAX_ANCHOR_HITS:
            continue
        for j in hits:
            if i and j and completion_words[i - 1] == prompt_words[j - 1]:
                continue   # inside a run already found from an earlier start
            k = _ANCHOR
            while i + k < n and j + k < m and completion_words[i + k] == prompt_words[j + k]:
                k += 1
            if k >= min_run:
                runs.append((i, j, k))
    runs.sort(key=lambda r: -r[2])
    return runs


def _sentences(prompt: str, p_spans) -> list[tuple[int, int]]:
    """Whole sentences of the prompt as word ranges [first, last + 1): they start with a capital letter, so the
    end of a sentence cut off at the prompt's start is not one."""
    starts = [s for _, s, _ in p_spans]
    out = []
    for m in _SENTENCE.finditer(prompt):
        first, end = bisect_left(starts, m.start()), bisect_left(starts, m.end())
        if first < end and p_spans[first][0][0].isupper():
            out.append((first, end))
    return out


def _copied_sentence(runs, sentences) -> tuple[int, tuple | None]:
    """The longest whole prompt sentence inside one copied run: (words, the run)."""
    best = (0, None)
    for a, b in sentences:
        for run in runs:
            if run[1] <= a and run[1] + run[2] >= b and b - a > best[0]:
                best = (b - a, (run[0] + a - run[1], a, b - a))
    return best


@detector("prompt_echo", scope="all")
def prompt_echo(prompt: str, completion: str, *, code: bool = False) -> Finding:
    p_spans = word_spans(prompt)
    c_spans = word_spans(completion)
    p_words = [w for w, _, _ in p_spans]
    c_words = [w for w, _, _ in c_spans]
    threshold = ECHO_WORDS_CODE if code else ECHO_WORDS_PROSE
    runs = common_runs(p_words, c_words, min(ECHO_MIN_RUN, ECHO_SENTENCE_WORDS))
    covered = set()
    for i, _, k in runs:
        if k >= ECHO_MIN_RUN:
            covered.update(range(i, i + k))
    longest = runs[0][2] if runs else 0
    sentence_words, sentence_run = _copied_sentence(runs, _sentences(prompt, p_spans)) if runs else (0, None)
    metrics = {"echo_words": longest, "echo_sentence_words": sentence_words,
               "echo_share": round(len(covered) / len(c_words), 3) if c_words else 0.0}
    whole = longest >= WHOLE_PROMPT_MIN and longest >= WHOLE_PROMPT * len(p_words)
    if longest < threshold and not whole:
        if sentence_words < ECHO_SENTENCE_WORDS:
            return Finding(False, metrics)
        runs = [sentence_run]
    i, j, k = runs[0]
    start, end = c_spans[i][1], c_spans[i + k - 1][2]
    evidence = {"span": clip(completion[start:end], 200), "words": k, "completion_offset": start,
                "prompt_offset": p_spans[j][1]}
    if i == 0 and j == 0 and k == len(p_words):
        evidence["hint"] = ("the completion starts with the whole prompt: if your sampler prints "
                            "prompt + completion, strip the prompt before diagnosing")
    return Finding(True, metrics, evidence)
