"""repetition_loop: the completion falls into repeating the same phrase, line or block.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_detectors.py -k "loop or repetition"

Tokens are numbers ("1,234.5" is one token), words and single punctuation marks, lower-cased;
whitespace and indentation never matter. In code every digit run is replaced by 0, so "def sort_2" and
"def sort_3" are the same line; in prose numbers stay as written, so a list of different figures is not
a loop, and a prose loop's unit must hold a word: "10:42, 10:42, 10:42" is a run of figures, which is
number_fixation's business.

Signals, any one fails the sample (thresholds calibrated with bench/diagnose_calibrate.py):
* a loop: a unit of `loop_unit_tokens` tokens repeated back to back, >= LOOP_COPIES times, where each
  token equals the token one unit earlier for >= PROSE_DENSITY of positions in prose (a copy may differ
  in a word, as a model's copies do), >= CODE_DENSITY in code. Human code is full of near-copies that
  vary in their names (getters, test cases, VarHandle boilerplate); a model's copies are the same block
  again. In code the unit must also be >= CODE_MIN_UNIT tokens (a unit of one whole line needs LINE_COPIES
  copies, as below; a shorter unit over several lines, `except E:` / `return None`, needs
  SHORT_UNIT_COPIES), cover >= CODE_MIN_SHARE of the completion and run to within CODE_TAIL of its end:
  a model that falls into a loop stays in it.
* in code, >= LINE_COPIES consecutive lines each nearly the same as the one before (difflib ratio of
  their tokens >= LINE_SIMILARITY; lines of >= 4 tokens), under the same share and tail conditions:
  `print(f([1, 2]))`, `print(f([1, 2, 3]))`, ... grows a little each time, so it is no exact unit.
* in prose, a phrase of PHRASE_WORDS words (not figures only) occurring >= PHRASE_COUNT times anywhere (a
  sentence the model keeps coming back to, with other text in between).

Metrics also report `repeated_ngram_share` (fraction of words inside a word 4-gram seen twice; the usual
"rep-4" view) and `compression_ratio` (zlib bytes / raw bytes; low = repetitive), for comparison across
checkpoints; they are not thresholds, because human finance prose and code score as repetitive as loops.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from difflib import SequenceMatcher

import numpy as np

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

LOOP_COPIES = 3
PROSE_DENSITY = 0.85
CODE_DENSITY = 0.95
LINE_COPIES = 4
LINE_SIMILARITY = 0.8
PROSE_MIN_UNIT = 3
CODE_MIN_UNIT = 8
SHORT_UNIT = 4            # `except E:` / `return None`, copied over and over
SHORT_UNIT_COPIES = 5
CODE_MIN_SHARE = 0.25
CODE_TAIL = 0.2
MAX_UNIT = 200          # tokens; a React component copied whole is ~100-150
PHRASE_WORDS = 8
PHRASE_COUNT = 4

_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*|\w+|[^\w\s]")
_DIGITS_RE = re.compile(r"\d+")


def _tokens(text: str, fold_digits: bool) -> tuple[list[str], list[int]]:
    """Lower-cased tokens (digit runs folded to 0 when asked) and each token's start offset in `text`."""
    toks, starts = [], []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group().lower()
        toks.append(_DIGITS_RE.sub("0", tok) if fold_digits else tok)
        starts.append(m.start())
    return toks, starts


def _candidate_units(ids: np.ndarray, lo: int, hi: int) -> list[int]:
    """Unit lengths worth testing: distances at which many token trigrams recur. A loop of unit p with
    copies that mostly agree makes ~p trigram pairs at distance p; ordinary text makes a handful."""
    if hi < lo or len(ids) < 3:
        return []
    v = int(ids.max()) + 1
    h = (ids[:-2].astype(np.int64) * v + ids[1:-1]) * v + ids[2:]
    order = np.argsort(h, kind="stable")
    same = h[order[1:]] == h[order[:-1]]
    gaps = order[1:][same] - order[:-1][same]       # distance to the previous occurrence
    counts = np.bincount(gaps[(gaps >= lo) & (gaps <= hi)], minlength=hi + 1)
    units = np.arange(hi + 1)
    return units[(units >= lo) & (counts >= np.maximum(2, 0.4 * units))].tolist()


def find_loop(ids: np.ndarray, min_unit: int, density: float, copies: int = LOOP_COPIES,
              max_unit: int = MAX_UNIT, accept=None) -> tuple[int, int, int] | None:
    """The longest back-to-back repetition as (start, unit, length in tokens), or None.

    For each unit length p, position i "repeats" when ids[i] == ids[i - p]; a loop is a stretch where every
    window of p positions repeats at >= `density`, and its length must hold >= `copies` units.
    `accept(start, p)`, when given, may refuse a loop by its first unit."""
    n = len(ids)
    best = None
    for p in _candidate_units(ids, min_unit, min(max_unit, n // copies)):
        eq = ids[p:] == ids[:-p]
        need = density * p
        if eq.sum() < (copies - 1) * need:
            continue
        c = np.concatenate(([0], np.cumsum(eq, dtype=np.int32)))
        dense = (c[p:] - c[:-p]) >= need              # dense[i]: eq[i:i+p] mostly repeats
        if not dense.any():
            continue
        edges = np.diff(np.concatenate(([0], dense.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        k = int(np.argmax(ends - starts))
        length = int(ends[k] - starts[k]) + 2 * p - 1  # eq stretch + the first unit it repeats
        if length >= copies * p and (best is None or length > best[2]) \
                and (accept is None or accept(int(starts[k]), p)):
            best = (int(starts[k]), p, length)
    return best


def _unit_start(text: str, starts: list[int], ids: np.ndarray, start: int, unit: int) -> int:
    """Where to show the repeated unit from: the loop's fuzzy edge moved to a token that begins a line (or
    follows a full stop) and agrees with the next copy, so the evidence reads as the model's unit."""
    fallback = None
    for i in range(start, min(start + unit, len(ids) - unit - 2)):
        if not (ids[i:i + 3] == ids[i + unit:i + unit + 3]).all():
            continue
        if fallback is None:
            fallback = i
        before = text[:starts[i]].rstrip(" \t")
        if not before or before[-1] in "\n.!?;":
            return i
    return start if fallback is None else fallback


def _stays(start: int, length: int, total: int) -> bool:
    """A code loop counts when it is a good part of the completion and lasts to (nearly) its end."""
    return length / total >= CODE_MIN_SHARE and (total - start - length) / total <= CODE_TAIL


def _similar_lines(completion: str, metrics: dict) -> dict | None:
    lines = [ln for ln in completion.splitlines() if ln.strip()]
    toks = [_tokens(ln, fold_digits=True)[0] for ln in lines]
    best_start, best_len, run_start = 0, 1, 0
    for i in range(1, len(lines) + 1):
        similar = (i < len(lines) and len(toks[i]) >= 4 and len(toks[i - 1]) >= 4
                   and SequenceMatcher(None, toks[i - 1], toks[i], autojunk=False).ratio() >= LINE_SIMILARITY)
        if not similar:
            if i - run_start > best_len:
                best_start, best_len = run_start, i - run_start
            run_start = i
    if best_len < 2:
        return None
    metrics["similar_line_run"] = best_len
    if best_len >= LINE_COPIES and _stays(best_start, best_len, len(lines)):
        return {"lines": [clip(ln, 120) for ln in lines[best_start:best_start + 3]], "copies": best_len,
                "share": round(best_len / len(lines), 3)}
    return None


def _phrase_repeats(words: list[str]) -> tuple[tuple, int]:
    """The most frequent PHRASE_WORDS-word phrase that holds a word (not figures only) and its count."""
    counts = Counter(tuple(words[i:i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1))
    for phrase, count in counts.most_common():
        if any(w[0].isalpha() for w in phrase):
            return phrase, count
    return (), 0


def repeated_ngram_share(words: list[str], n: int = 4) -> float:
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i:i + n] = True
    return float(covered.mean())


def compression_ratio(text: str) -> float | None:
    raw = text.encode("utf-8")
    if len(raw) < 200:   # zlib's fixed overhead dominates shorter texts
        return None
    return round(len(zlib.compress(raw, 6)) / len(raw), 3)


@detector("repetition_loop", scope="all")
def repetition_loop(completion: str, *, code: bool = False) -> Finding:
    toks, starts = _tokens(completion, fold_digits=code)
    words = [t for t in toks if t[0].isalnum() or t[0] == "_"]
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in toks), dtype=np.int32, count=len(toks))
    metrics = {"repeated_ngram_share": round(repeated_ngram_share(words), 3),
               "compression_ratio": compression_ratio(completion)}
    if code:
        # a unit that is one whole line needs LINE_COPIES copies, as similar lines do: three lines
        # `<li>{tags[0]}</li>`, `[1]`, `[2]` are an unrolled list, not a loop
        def newlines(start, p):
            end = starts[start + p] if start + p < len(starts) else len(completion)
            return completion.count("\n", starts[start], end)
        loop = (find_loop(ids, CODE_MIN_UNIT, CODE_DENSITY, accept=lambda start, p: newlines(start, p) != 1)
                or find_loop(ids, CODE_MIN_UNIT, CODE_DENSITY, copies=LINE_COPIES,
                             accept=lambda start, p: newlines(start, p) == 1)
                or find_loop(ids, SHORT_UNIT, CODE_DENSITY, copies=SHORT_UNIT_COPIES, max_unit=CODE_MIN_UNIT - 1,
                             accept=lambda start, p: newlines(start, p) >= 2))
    else:
        wordy = np.fromiter((t[0].isalpha() for t in toks), dtype=bool, count=len(toks))
        loop = find_loop(ids, PROSE_MIN_UNIT, PROSE_DENSITY,
                         accept=lambda start, p: bool(wordy[start:start + p].any()))
    evidence = None
    if loop is not None:
        start, unit, length = loop
        share = length / len(toks)
        metrics.update(loop_unit_tokens=unit, loop_copies=round(length / unit, 1), loop_share=round(share, 3))
        if not code or _stays(start, length, len(toks)):
            first = _unit_start(completion, starts, ids, start, unit)
            end = starts[first + unit] if first + unit < len(starts) else len(completion)
            evidence = {"unit": clip(completion[starts[first]:end], 200), "copies": round(length / unit, 1),
                        "offset": starts[first], "share": round(share, 3)}
    if code and evidence is None:
        evidence = _similar_lines(completion, metrics)
    if not code:
        phrase, count = _phrase_repeats(words)
        metrics["top_phrase_count"] = count
        if evidence is None and count >= PHRASE_COUNT:
            evidence = {"phrase": " ".join(phrase), "count": count}
    return Finding(evidence is not None, metrics, evidence)
