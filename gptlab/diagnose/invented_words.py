"""invented_words: prose made of words that do not exist ("negress cirly affect", "Sinh-Deutschmans").

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_word_salad.py

A word is checked when a reader could look it up: a run of >= 3 lower-case ASCII letters (apostrophes inside
kept; so no acronym or camelCase; a capitalised word only where it starts a sentence or a line, see below for
the others, which may be names: "Olsavsky", "Trokelowe") that is not glued to a digit, underscore, dot, slash
or @ (code identifiers, file names, URLs, e-mail addresses) and not one of the prompt's own words. Inside a
token glued by digits, underscores or a lower-to-upper case change ("seledelher127",
"_dec_from_triplenanificstat", "emptygndexError"), each lower-case part of >= GLUED_MIN letters that starts
the token or follows a digit, underscore or case change is checked as well (so "getItem_2" and "McKesson"
check nothing: "get" is short, "Kesson" is capitalised). A capitalised word inside a sentence is checked only
in a text that already coins a lower-case word (a checked one, glued parts included; not a sentence-initial
one, which may be a name) and only when it stands alone ("the Decisc advertising"): not next to another
capitalised word ("Za Kusay", "U.S. Steel"), not hyphen-joined ("Al-Hirah"), not marked as a brand ("Halog®").

A checked word is invented when it is in no English word list: wordfreq's "best" English list (321,180 words,
from Wikipedia, subtitles, news, books, the web...), also after taking off one common inflection or prefix
("spyglasses", "reemitted") when what remains is a word of Zipf frequency >= BASE_ZIPF (the list's rarest
entries, "caut", "sust", would otherwise excuse "cauts", "sustes"); "es" comes off only after s, x, z, ch, sh
or o ("speares" is not "spear"). A list word of >= 4 letters rarer than NEAR_MISS_ZIPF that is one letter
(added, dropped, changed or two swapped) away from a word of Zipf >= NEAR_WORD_ZIPF is a near miss and counts
as invented unless an inflection excuses it ("shole": "whole", "reate": "create"; "sharding", near "sharing",
is "shard" + ing). Typos and rare words exist in human text too, so one invented word is not a failure: the
mode needs INVENTED_MIN different invented words making >= INVENTED_SHARE of the checked words, or, in a short
text, INVENTED_MIN_SHORT making >= INVENTED_SHARE_SHORT, or one lower-case one making >= INVENTED_SHARE_TINY
(human text: docs/failure_modes.md).

Letter soup fails too: what a character-level model writes before it has words ("an y is oden it j s u")
has too few runs of >= 3 letters to check, but its one- and two-letter runs are no English words. A
standalone lower-case run of one or two letters that is not one of English's own (SHORT_WORDS: "a", "of",
"us") is a fragment; FRAGMENTS_MIN different fragments making >= FRAGMENT_SHARE of the text's runs of letters
fail the mode (`fragments` in metrics and evidence). Human text has few, among many words ("cm", "et al").

A real code name is not coined, even in prose: Python's own lower-case names (code_names.txt, made by
tools/code_names.py: its keywords, builtins and every name its standard library's source defines or uses,
"isinstance", "getcontext", "tzoff") are never invented. A token glued from words or names is ("importos",
"selfsign": "self" is not a prefix, since English hyphenates it).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

from gptlab.diagnose.registry import detector
from gptlab.diagnose.types import Finding

INVENTED_MIN = 3          # different invented words ...
INVENTED_SHARE = 0.025    # ... making this share of the checked words (occurrences), or
INVENTED_MIN_SHORT = 2    # in a short text, fewer different invented words ...
INVENTED_SHARE_SHORT = 0.05   # ... making a larger share, or
FRAGMENTS_MIN = 3         # different fragments (one- or two-letter runs that are no English word) ...
FRAGMENT_SHARE = 0.1      # ... making this share of the runs of letters: letter soup
INVENTED_SHARE_TINY = 0.1     # one lower-case invented word making this share of a text that checks little
BASE_ZIPF = 2.0           # an inflected or prefixed word's stem must be at least this common (Zipf scale)
GLUED_MIN = 5             # letters of a glued token's part to be checked
NEAR_MISS_ZIPF = 1.5      # a list word rarer than this (Zipf scale) ...
NEAR_WORD_ZIPF = 4.5      # ... one letter away from a word at least this common is a near miss
EVIDENCE_WORDS = 12
CODE_NAMES = Path(__file__).with_name("code_names.txt")

_WORD = re.compile(r"(?<![\w.@/\\])[A-Za-z]{3,}(?:['’][A-Za-z]+)*(?![\w@/\\]|\.\w)")
_GLUED = re.compile(r"[A-Za-z0-9_]*(?:[0-9_]|[a-z][A-Z])[A-Za-z0-9_]*")   # a token glued by a digit, _ or aB
_GLUED_PART = re.compile(r"(?<![A-Za-z])[a-z]+")
_SIBILANT = re.compile(r"(?:s|x|z|ch|sh|o)$")       # the stems that take "es"
_SENTENCE_START = re.compile(r"(?:\A|[.!?]\s+|\n\s*)(?=[A-Z])")   # ends where a sentence or a line starts
_NAME_BEFORE = re.compile(r"\b[A-Z][\w'’.]*[ -]\Z")   # a capitalised word just before ("Za Kusay", "Al-Hirah")
_NAME_AFTER = re.compile(r"[-®™]|\s[A-Z]")           # just after: hyphen, brand mark or another capitalised word
_SUFFIXES = ("'s", "s", "es", "ed", "d", "ing", "ly", "er", "ers", "est", "ness", "ment", "ments", "al", "ally")
_PREFIXES = ("re", "pre", "un", "non", "semi", "multi", "sub", "super", "inter", "over", "under", "anti", "co",
             "de", "dis", "mis", "micro", "macro", "post", "pseudo", "out", "counter", "trans", "mid")


@lru_cache(maxsize=1)
def english_words() -> dict[str, float]:
    """wordfreq's best English list: word -> frequency (a share of all words)."""
    import wordfreq  # deferred: heavy (loads a 321,000-word list; only prose samples need it)
    return wordfreq.get_frequency_dict("en", wordlist="best")


def _zipf(frequency: float) -> float:
    """A share of all words on the Zipf scale: log10 of occurrences per billion words."""
    return math.log10(frequency) + 9


def _common(word: str, zipf: float = BASE_ZIPF) -> bool:
    """In the list at Zipf frequency >= zipf."""
    f = english_words().get(word)
    return f is not None and _zipf(f) >= zipf


@lru_cache(maxsize=1)
def code_names() -> frozenset[str]:
    """Python's own lower-case names (code_names.txt, made by tools/code_names.py)."""
    lines = CODE_NAMES.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


@lru_cache(maxsize=1)
def _frequent_words() -> frozenset[str]:
    """The list's words of Zipf >= NEAR_WORD_ZIPF (the ones a near miss is one letter away from)."""
    return frozenset(w for w, f in english_words().items() if _zipf(f) >= NEAR_WORD_ZIPF)


def _one_letter_away(w: str):
    """The strings one letter away from w: a letter dropped, two swapped, one changed or one added."""
    for i in range(len(w) + 1):
        a, b = w[:i], w[i:]
        if b:
            yield a + b[1:]
        if len(b) > 1:
            yield a + b[1] + b[0] + b[2:]
        for c in "abcdefghijklmnopqrstuvwxyz":
            if b and c != b[0]:
                yield a + c + b[1:]
            yield a + c + b


def near_miss(w: str) -> bool:
    """A rare list word one letter away from a frequent word ("shole": "whole")."""
    if len(w) < 4 or not w.isalpha() or _common(w, NEAR_MISS_ZIPF):
        return False
    frequent = _frequent_words()
    return any(v in frequent for v in _one_letter_away(w))


def is_english(word: str) -> bool:
    """In the English word list (not as a near miss), as written or with one common inflection or prefix taken
    off a common stem."""
    w = word.lower().replace("’", "'")
    if w in english_words() and not near_miss(w):
        return True
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            base = w[:-len(suffix)]
            if suffix == "es" and not _SIBILANT.search(base):
                continue
            if _common(base) or _common(base + "e") or (len(base) > 3 and base[-1] == base[-2]
                                                        and _common(base[:-1])):
                return True
    return any(w.startswith(p) and len(w) - len(p) >= 4 and _common(w[len(p):].lstrip("-")) for p in _PREFIXES)


def _checked(text: str, prompt_words: set[str]) -> tuple[list[str], list[str]]:
    """The words a reader could look up, and the capitalised words that may be coined, not used by the prompt.
    Looked up: lower-case words, and capitalised words that start a sentence or a line. May be coined: the other
    capitalised words that stand alone (no capitalised word, hyphen or brand mark beside them)."""
    starts = {m.end() for m in _SENTENCE_START.finditer(text)}
    words, capitalised = [], []
    for m in _WORD.finditer(text):
        w = m.group()
        if w.lower() in prompt_words:
            continue
        if w.islower():
            words.append(w)
        elif w[0].isupper() and w[1:].islower():
            if m.start() in starts:
                words.append(w)
            elif not _NAME_BEFORE.search(text, max(0, m.start() - 40), m.start()) \
                    and not _NAME_AFTER.match(text, m.end()):
                capitalised.append(w)
    return words, capitalised


def _glued_parts(text: str, prompt_words: set[str]):
    """The lower-case parts of tokens glued by digits, underscores or a case change ("seledelher127")."""
    for token in _GLUED.findall(text):
        for part in _GLUED_PART.findall(token):
            if len(part) >= GLUED_MIN and part not in prompt_words:
                yield part


@detector("invented_words", scope="prose")
def invented_words(prompt: str, completion: str) -> Finding:
    prompt_words = {w.lower() for w in re.findall(r"[A-Za-z]+(?:['’][A-Za-z]+)*", prompt)}
    words, capitalised = _checked(completion, prompt_words)
    checked = words + list(_glued_parts(completion, prompt_words))
    names = code_names()
    invented = [w for w in checked if not is_english(w) and w.lower() not in names]
    if any(w.islower() for w in invented):     # the text coins words: a lone capitalised word is more likely
        checked += capitalised                 # coined than a name
        invented += [w for w in capitalised if not is_english(w) and w.lower() not in names]
    coined_lower = any(w.islower() for w in invented)   # a capitalised one may be a name ("Lippershey made it")
    invented = [w.lower() for w in invented]
    counts = Counter(invented)                      # in first-seen order
    distinct = sorted(counts, key=lambda w: -counts[w])   # most used first, then in order
    share = len(invented) / len(checked) if checked else 0.0
    metrics = {"checked_words": len(checked), "invented_words": len(distinct), "invented_share": round(share, 3)}
    pieces, letter_runs = _fragments(completion)
    metrics["fragments"] = len(set(pieces))
    coins = (len(distinct) >= INVENTED_MIN and share >= INVENTED_SHARE
             or len(distinct) >= INVENTED_MIN_SHORT and share >= INVENTED_SHARE_SHORT
             or coined_lower and share >= INVENTED_SHARE_TINY)
    # letter soup: what a character-level model writes before it has words ("an y is oden it j s u")
    soup = len(set(pieces)) >= FRAGMENTS_MIN and len(pieces) >= FRAGMENT_SHARE * letter_runs
    if not (coins or soup):
        return Finding(False, metrics)
    evidence = {"words": distinct[:EVIDENCE_WORDS], "count": len(distinct), "share": round(share, 3)}
    if soup:
        evidence["fragments"] = sorted(set(pieces))[:EVIDENCE_WORDS]
    return Finding(True, metrics, evidence)


# English's words of one or two letters: any other standalone lower-case run of one or two letters is a fragment
SHORT_WORDS = frozenset("a i o am an as at ax be by do go he hi if in is it me my no of oh ok on or ox so to up us "
                        "we ye".split())
_FRAGMENT = re.compile(r"(?<![\w.'’@/\\&-])[a-z]{1,2}(?![\w'’@/\\&-]|\.\w)")
_LETTER_RUN = re.compile(r"[A-Za-z]+")


def _fragments(text: str) -> tuple[list[str], int]:
    """The standalone one- or two-letter lower-case runs that are not English words ("j", "ns", "nd"), and how
    many runs of letters the text has."""
    return ([m.group() for m in _FRAGMENT.finditer(text) if m.group() not in SHORT_WORDS],
            len(_LETTER_RUN.findall(text)))
