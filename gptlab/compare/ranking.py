"""Models side by side on the same held-out text and probes: per-domain bpb, failure rates, pass@k and the
effect of prompt length, each with a bootstrap interval, and a ranking that says when a difference is noise.

    gptlab compare runs/code_heavy runs/prose_heavy --db results.sqlite --out compare
    python -m pytest tests/test_compare.py

`build` turns the measurements read from the store (gptlab/compare/measurements.py) into a Comparison that
gptlab/report/sections/compare.py renders; gptlab/commands/compare.py evaluates what is missing first.
Rankings follow gptlab/stats/bootstrap.py: a model's rank is 1 + the number of models significantly better;
"≈" joins neighbours whose difference's 95 % interval includes 0. lm-eval task metrics (`gptlab bench`,
gptlab/compare/benchmarks.py) are ranked by the same rules, in their own direction (accuracy: higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gptlab.compare.measurements import ANY, Measurements, ModelRef
from gptlab.diagnose.rollup import PASS_KS
from gptlab.errors import GptlabError
from gptlab.stats import bootstrap as stats


@dataclass
class RankedQuantity:
    """One quantity (a domain's bpb, a mode's rate ...) for every model, with the ranking."""
    name: str
    cells: dict[str, stats.Interval | None]
    lower_is_better: bool
    ranking: list[stats.Ranked] = field(default_factory=list)
    diffs: dict[tuple[str, str], stats.Interval] = field(default_factory=dict)
    paired: bool = False
    units: str = ""                 # what was resampled, for the caption: "37 documents"
    effective: float | None = None  # bpb: the fewest effective documents of any model (measurements.py)

    def order_text(self) -> str:
        """'A < B ≈ C' for lower-is-better ('>' otherwise): '≈' where neighbours do not differ significantly."""
        if not self.ranking:
            return "–"
        sign = "<" if self.lower_is_better else ">"
        out = [self.ranking[0].label]
        for prev, cur in zip(self.ranking, self.ranking[1:]):
            d = self.diffs.get((prev.label, cur.label))
            out += ["≈" if d is None or not d.significant else sign, cur.label]
        return " ".join(out)


@dataclass
class LengthEffect:
    """Short prompts minus their long twins, for one model."""
    label: str
    what: str                       # "failure rate (any)", "failure rate (no_code)" ... | "pass@1"
    short: stats.Interval | None
    long: stats.Interval | None
    effect: stats.Interval | None   # short - long
    pairs: int


@dataclass
class Comparison:
    models: list[ModelRef]
    bpb: list[RankedQuantity]
    failures: list[RankedQuantity]             # any failure, per probe domain and overall
    modes: list[RankedQuantity]                # each failure mode seen, all probes
    pass_at: list[RankedQuantity]              # per probe with tests, pass@1 and pass@k
    length: list[LengthEffect]
    twins: list[tuple[str, str]]    # (short, long) probe pairs behind `length`
    temperature: float | None
    detector_version: str | None
    suite: str | None
    notes: list[str]
    resamples: int
    benchmarks: list[RankedQuantity] = field(default_factory=list)   # lm-eval task metrics (gptlab bench)


def _row(name, units: dict, lower_is_better, resamples, seed, what="") -> RankedQuantity:
    units = {k: u for k, u in units.items() if u is not None and u.n}
    ranking, diffs = stats.rank(units, lower_is_better=lower_is_better, resamples=resamples, seed=seed)
    cells = {r.label: r.estimate for r in ranking}
    paired = len(units) > 1 and all(stats.paired(a, b) for a in units.values() for b in units.values())
    return RankedQuantity(name, cells, lower_is_better, ranking, diffs, paired, what)


def _try(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except GptlabError:
        return None


def build(meas: Measurements, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> Comparison:
    labels = list(meas.models)
    bpb = []
    for name, kw in ([(f"all ({len(meas.common_domains)} domains)", {})] if meas.common_domains else []) + \
            [(f"group {g}", {"group": g}) for g in meas.groups()] + \
            [(d, {"domain": d}) for d in meas.domains]:
        units = {lab: _try(meas.bpb, lab, **kw) for lab in labels}
        scored = [u for u in units.values() if u is not None]
        row = _row(name, units, True, resamples, seed, f"{scored[0].info['documents'] if scored else 0} documents")
        row.effective = min((u.info["effective"] for u in scored), default=None)
        bpb.append(row)
    failures, modes, pass_at, length = [], [], [], []
    if meas.probes:
        domains = sorted({p["domain"] for p in meas.probes.values()})
        for name, probes in [("all probes", meas.select_probes())] + \
                [(f"domain {d}", meas.select_probes(domain=d)) for d in domains]:
            units = {lab: meas.failure_rate(lab, probes) for lab in labels}
            failures.append(_row(name, units, True, resamples, seed, f"{len(probes)} probes"))
        seen = sorted({m for rows in meas.samples.values() for r in rows for m in r["failures"]})
        for mode in seen:
            units = {lab: meas.failure_rate(lab, meas.select_probes(), mode) for lab in labels}
            modes.append(_row(mode, units, True, resamples, seed))
        for probe in sorted(p for p, v in meas.probes.items() if v["tests"]):
            n = min(meas.judged(lab, probe) for lab in labels)
            for k in [k for k in PASS_KS if k <= n]:
                units = {lab: _try(meas.pass_at, lab, [probe], k) for lab in labels}
                pass_at.append(_row(f"{probe} pass@{k}", units, False, resamples, seed))
        length = prompt_length(meas, resamples=resamples, seed=seed)
    benchmarks = [_row(q.name, q.units, q.lower_is_better, resamples, seed, q.what)
                  for q in meas.benchmarks.quantities if q.rankable]
    return Comparison(list(meas.models.values()), bpb, failures, modes, pass_at, length, meas.twins(),
                      meas.temperature, meas.detector_version, meas.suite, list(meas.notes), resamples, benchmarks)


def prompt_length(meas: Measurements, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> list[LengthEffect]:
    """Per model: failure rate (any, then each mode seen in the twins' samples) and pass@1 of short prompts,
    of their long twins, and short - long. Each mode is measured too because "any" can saturate while one
    mode still moves with the prompt's length."""
    pairs = meas.twins()
    if not pairs:
        return []
    short, long = [s for s, _ in pairs], [lo for _, lo in pairs]
    tested = [(s, lo) for s, lo in pairs if meas.probes[s]["tests"] and meas.probes[lo]["tests"]]
    modes = sorted({m for rows in meas.samples.values() for r in rows if r["probe"] in short + long
                    for m in r["failures"]})
    kw = {"resamples": resamples, "seed": seed}

    def effect(label, what, a, b, n):
        return LengthEffect(label, what, stats.estimate(a, **kw), stats.estimate(b, **kw),
                            stats.difference(a, b, **kw), n)

    out = []
    for lab in meas.models:
        for mode in [ANY] + modes:
            out.append(effect(lab, f"failure rate ({mode})", meas.failure_rate(lab, short, mode),
                              meas.failure_rate(lab, long, mode), len(pairs)))
        if tested:
            a = _try(meas.pass_at, lab, [s for s, _ in tested], 1)
            b = _try(meas.pass_at, lab, [lo for _, lo in tested], 1)
            if a is not None and b is not None:
                out.append(effect(lab, "pass@1", a, b, len(tested)))
    return out
