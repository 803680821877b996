"""Word-level views of a text shared by the prose detectors: tokens with offsets, content words, numbers.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py

One tokenisation for all detectors, so "echo length 14 words" and "top word share 0.21" count the same
words. A word is a run of letters/digits/underscores (Unicode `\\w`); apostrophes inside words are kept
("company's" is one word) because splitting them inflates stop-word counts.
"""

from __future__ import annotations

import re

WORD_RE = re.compile(r"\w+(?:['’]\w+)*")

# A figure as a reader sees it: optional $ and sign/parenthesis, digits with separators, optional %.
NUMBER_RE = re.compile(r"(?<![\w.])[$€£]?\(?-?\d[\d,]*(?:\.\d+)*%?\)?")

STOP_WORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can cannot could couldn't did didn't do does doesn't doing don't down during each
few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
themselves then there there's these they they'd they'll they're they've this those through to too under
until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
while who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
yourselves may might must shall will also however thus therefore within without upon via per among
including include includes included new one two three first second third other others such use used using
well many much make made like get got also e g i e etc
""".split())

# Number words and units: their frequency belongs to number_fixation, not to word_fixation.
NUMBER_WORDS = frozenset("""
thousand thousands million millions billion billions trillion percent percentage zero hundred hundreds
fiscal year years quarter quarters
""".split())


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def word_spans(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def stem(word: str) -> str:
    """Plural and possessive folded ("ecosystems", "ecosystem's" -> "ecosystem"); nothing smarter, on
    purpose: a fixation is on a surface form, and a real stemmer would merge distinct words."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def is_content_word(word: str) -> bool:
    w = word.lower().replace("’", "'")
    return (len(w) > 2 and not w[0].isdigit() and "_" not in w
            and w not in STOP_WORDS and w not in NUMBER_WORDS)


def numbers(text: str) -> list[tuple[str, int, int]]:
    """Figures in `text` with offsets; a bare year or page number counts (it is a number a model copies)."""
    return [(m.group(), m.start(), m.end()) for m in NUMBER_RE.finditer(text)]


def number_value(token: str) -> str:
    """The figure without its dress: "$1,200.0" and "1200.0" compare equal, "(4.7)" equals "4.7"."""
    return token.strip("$€£()%-").replace(",", "")


def clip(text: str, limit: int = 160) -> str:
    """A span for evidence: whitespace collapsed, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
