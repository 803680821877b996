"""Bootstrap confidence intervals for the numbers `gptlab compare` and `gptlab check` put side by side.

    gptlab compare runs/code_heavy runs/prose_heavy --db results.sqlite
    python -m pytest tests/test_stats.py

Every measured number is a statistic of sums over *units* that are resampled with replacement: documents for
bits-per-byte (columns: nats, bytes), generations for failure rates and pass@k (columns: samples with the
failure or passing, samples). Units are resampled within their *stratum* (a bpb domain, a probe), because
the design fixed how many documents each domain and how many samples each probe has; the statistic then sees
per-stratum sums of shape (..., strata, columns), and a pooled bpb is sum(nats) / (ln 2 x sum(bytes)) over
all strata — the ratio of sums, never a mean of per-document ratios.

The interval is the percentile bootstrap: the 2.5th and 97.5th percentiles of `resamples` replicates (95 %).
Replicates are seeded from (seed, the quantity's name), so an interval never changes between runs, and adding
a model to a comparison leaves the other models' intervals as they were.

A difference of two quantities is *paired* when both were measured on the same units (two models scoring the
same documents: `pair_key` equal): each replicate resamples the same documents for both, which removes the
documents' own difficulty from the interval. Otherwise the two are resampled independently. A difference is
significant when its interval excludes 0. A ranking gives each model 1 + the number of models that are
significantly better, so models whose difference is not significant share a rank. No correction for multiple
comparisons is made: with many models and domains, expect about 1 in 20 spurious "significant" pairs.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
LN2 = math.log(2)
_CELLS = 1 << 20             # resampled indices held at once (memory stays flat for 100k-document domains)


@dataclass(frozen=True)
class Interval:
    """A point estimate on all the units with its bootstrap percentile interval."""
    value: float
    low: float
    high: float
    n: int                   # units behind the estimate (documents, generations)
    confidence: float = CONFIDENCE

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    @property
    def significant(self) -> bool:
        """For a difference: the interval excludes 0."""
        return not self.contains(0.0)

    def text(self, digits: int = 3, signed: bool = False) -> str:
        sign = "+" if signed else ""
        return f"{self.value:{sign}.{digits}f} [{self.low:{sign}.{digits}f}, {self.high:{sign}.{digits}f}]"


@dataclass
class Units:
    """What a bootstrap resamples. `columns` (n, c): numbers of each unit, summed over the resampled units;
    `strata` (n,): 0..S-1, units are resampled within their stratum; `statistic` maps per-stratum sums
    (..., S, c) to the quantity (...). `pair_key` equal for two Units means the same units in the same
    order (so their difference can be paired); None: never paired."""
    columns: np.ndarray
    strata: np.ndarray
    statistic: Callable[[np.ndarray], np.ndarray]
    name: str = ""
    pair_key: object = None
    info: dict = field(default_factory=dict)     # what a renderer may want to say (documents, probes ...)

    def __post_init__(self):
        self.columns = np.asarray(self.columns, dtype=np.float64)
        if self.columns.ndim == 1:
            self.columns = self.columns[:, None]
        self.strata = np.asarray(self.strata, dtype=np.int64)
        if len(self.strata) != len(self.columns):
            raise ValueError(f"{self.name}: {len(self.columns)} units but {len(self.strata)} strata labels")
        if len(self.strata) and (self.strata.min() < 0 or np.unique(self.strata).size != self.strata.max() + 1):
            raise ValueError(f"{self.name}: strata must be 0..S-1, each used")

    @property
    def n(self) -> int:
        return len(self.columns)

    @property
    def n_strata(self) -> int:
        return int(self.strata.max()) + 1 if self.n else 0

    def sums(self) -> np.ndarray:
        """Per-stratum column sums of all the units: (S, c)."""
        out = np.zeros((self.n_strata, self.columns.shape[1]))
        np.add.at(out, self.strata, self.columns)
        return out

    def value(self) -> float:
        return float(self.statistic(self.sums()))


def rng_for(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def replicate_sums(columns: np.ndarray, strata: np.ndarray, resamples: int, rng) -> np.ndarray:
    """(resamples, S, c): per-stratum column sums of `resamples` stratified resamples with replacement."""
    columns = np.asarray(columns, dtype=np.float64)
    n_strata = int(strata.max()) + 1 if len(strata) else 0
    out = np.zeros((resamples, n_strata, columns.shape[1]))
    for s in range(n_strata):
        rows = columns[strata == s]
        chunk = max(1, _CELLS // len(rows))
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            idx = rng.integers(0, len(rows), size=(b, len(rows)))
            out[start:start + b, s] = rows[idx].sum(axis=1)
    return out


def from_replicates(value: float, reps: np.ndarray, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The percentile interval of bootstrap replicates around a point estimate."""
    low, high = _percentiles(np.asarray(reps, dtype=np.float64), confidence)
    return Interval(float(value), low, high, int(n), confidence)


def _percentiles(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if not reps.size:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(low), float(high)


def replicates(units: Units, *, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The statistic on each bootstrap replicate, seeded by the units' name."""
    sums = replicate_sums(units.columns, units.strata, resamples, rng_for(seed, units.name))
    return np.asarray(units.statistic(sums), dtype=np.float64)


def estimate(units: Units, *, resamples: int = RESAMPLES, seed: int = 0,
             confidence: float = CONFIDENCE) -> Interval | None:
    """The quantity with its percentile interval; None when there are no units."""
    if units.n == 0:
        return None
    low, high = _percentiles(replicates(units, resamples=resamples, seed=seed), confidence)
    return Interval(units.value(), low, high, units.n, confidence)


def paired(a: Units, b: Units) -> bool:
    return a.pair_key is not None and a.pair_key == b.pair_key and a.n == b.n and np.array_equal(a.strata, b.strata)


def difference(a: Units, b: Units, *, resamples: int = RESAMPLES, seed: int = 0,
               confidence: float = CONFIDENCE) -> Interval | None:
    """a - b with its interval: paired by unit when both were measured on the same units, else independent."""
    if a.n == 0 or b.n == 0:
        return None
    value = a.value() - b.value()
    if paired(a, b):
        ca = a.columns.shape[1]
        joined = np.hstack([a.columns, b.columns])
        # the key ignores the order, so b - a is exactly the negation of a - b
        sums = replicate_sums(joined, a.strata, resamples, rng_for(seed, " - ".join(sorted((a.name, b.name)))))
        reps = np.asarray(a.statistic(sums[..., :ca])) - np.asarray(b.statistic(sums[..., ca:]))
    else:
        reps = replicates(a, resamples=resamples, seed=seed) - replicates(b, resamples=resamples, seed=seed)
    low, high = _percentiles(reps, confidence)
    return Interval(value, low, high, min(a.n, b.n), confidence)


# ---------------------------------------------------------------- the statistics gptlab measures


def bpb_statistic(sums: np.ndarray) -> np.ndarray:
    """columns (nats, bytes): bits per byte = sum(nats) / (ln 2 x sum(bytes)) over every stratum."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[..., 0].sum(-1) / (LN2 * sums[..., 1].sum(-1))


def rate_statistic(sums: np.ndarray) -> np.ndarray:
    """columns (hits, samples): the share of all samples that are hits (each sample counts once)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[..., 0].sum(-1) / sums[..., 1].sum(-1)


def per_stratum_mean(tables: list[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """columns (hits, samples) with a fixed number of samples per stratum: the mean over strata of
    tables[s][hits in stratum s]. pass@k uses it with tables[s][c] = pass@k(n_s, c, k), so the estimator
    is evaluated exactly as defined, on every resampled count."""
    def statistic(sums: np.ndarray) -> np.ndarray:
        hits = np.rint(sums[..., 0]).astype(np.int64)
        return np.mean([tables[s][hits[..., s]] for s in range(len(tables))], axis=0)
    return statistic


# ---------------------------------------------------------------- ranking


@dataclass
class Ranked:
    label: str
    estimate: Interval
    rank: int                        # 1 + models significantly better
    tied_with: list[str] = field(default_factory=list)   # models whose difference is not significant


def rank(units: dict[str, Units], *, lower_is_better: bool, resamples: int = RESAMPLES, seed: int = 0,
         confidence: float = CONFIDENCE) -> tuple[list[Ranked], dict[tuple[str, str], Interval]]:
    """Models ordered best first; each pairwise difference (a - b for a ranked before b) with its interval."""
    ests = {k: estimate(u, resamples=resamples, seed=seed, confidence=confidence) for k, u in units.items()}
    ests = {k: e for k, e in ests.items() if e is not None}
    order = sorted(ests, key=lambda k: ests[k].value if lower_is_better else -ests[k].value)
    diffs = {}
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            diffs[(a, b)] = difference(units[a], units[b], resamples=resamples, seed=seed, confidence=confidence)
    out = []
    for k in order:
        better = sum(1 for j in order if (j, k) in diffs and diffs[(j, k)].significant)
        ties = [j for j in order if j != k and not diffs[(j, k) if (j, k) in diffs else (k, j)].significant]
        out.append(Ranked(k, ests[k], 1 + better, ties))
    return out, diffs
