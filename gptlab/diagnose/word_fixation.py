"""word_fixation: one content word takes over a prose completion.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k word_fixation

Content words are words of >= 3 letters that are not stop words or number words (text.STOP_WORDS,
text.NUMBER_WORDS), folded for plural/possessive ("ecosystems" = "ecosystem"). A word that labels a numbered
thing ("Item 1B", "Note 12", "Table 3") is not counted: a table of contents repeats "Item" without fixating
on it. Nor is a name in an attribute access (`self._int`, `os.path`): code junk under a prose probe repeats
`self` by grammar. A sentence made of the same content words as an earlier one is counted once: a sentence said
over and
over, word for word or shuffled ("they survive because they survive"), is repetition_loop's business, and its
words dominate only by being copied (`repeated_sentences` says how many such sentences were skipped).

`top_word_share` = count of the most frequent content word / all content words. The failure: count >=
WORD_MIN_COUNT and share >= WORD_SHARE.
"""

from __future__ import annotations

import re
from collections import Counter

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import WORD_RE, is_content_word, stem
from gptlab.diagnose.types import Finding

WORD_MIN_COUNT = 8
# Human topic words recur ("revenue", "lease"); 0.18 is the human 99.8th percentile of this share
# (bench/diagnose_calibrate.py), just below where readers call a word fixated (~0.19).
WORD_SHARE = 0.18

_LABEL_NUMBER = re.compile(r"[ \t]+\d{1,3}[A-Za-z]?\b(?![.,]\d)")   # "Item 1B", "Note 12", not "in 2,000"
_ATTRIBUTE = re.compile(r"\.\w")     # `self._int`, `obj.attr`: code, not a prose word
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentence_stems(sentence: str) -> list[str]:
    return [stem(m.group()) for m in WORD_RE.finditer(sentence)
            if is_content_word(m.group()) and not _LABEL_NUMBER.match(sentence, m.end())
            and not _ATTRIBUTE.match(sentence, m.end()) and sentence[m.start() - 1:m.start()] != "."]


@detector("word_fixation", scope="prose")
def word_fixation(completion: str) -> Finding:
    stems, seen, repeated = [], set(), 0
    for sentence in _SENTENCE_END.split(completion):
        words = _sentence_stems(sentence)
        key = frozenset(words)
        if key and key in seen:
            repeated += 1
            continue
        seen.add(key)
        stems += words
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
