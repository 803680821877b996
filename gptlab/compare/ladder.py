"""A ladder read back from the store: each rung's final checkpoint, its bpb per domain group and its probes'
failure rates and pass@1, with the fits of gptlab/stats/scaling.py and capability.py over the rungs.

    gptlab ladder ladder-demo --out ladder_run          (trains, evaluates, then reports through this module)
    gptlab report ladder-demo --db ladder_run/results.sqlite
    python -m pytest tests/test_ladder_analysis.py

`gptlab ladder` records which runs form a ladder in the store's `ladder_rungs` table. `load_ladders(store,
runs)` finds the ladders whose rungs are among `runs` (a report's covered runs) and measures each rung at its
newest evaluated checkpoint through `Measurements` (the same units `compare` and `check` resample).
`analyse(ladder)` fits, per domain group (and all domains pooled), bpb against the rung's size, and per probe
the failure rate (any mode) and, for probes with tests, pass@1 against the bpb of the probe's own group:

  * size is the rung's non-embedding parameter count N (Kaplan et al. 2020: the embedding table's share of a
    tiny model's total is large and says little about its capacity; the total is shown beside it);
  * bpb = E + A * N^-alpha with bootstrap intervals over the evaluation documents and the fitted points; the
    same law over all domains against the rung's training compute C in FLOPs (the store's planned FLOPs);
  * rate = logistic(a + b * bpb), binomial counts pooled over the rung's samples of every length;
  * each probe's predicted crossing: the size at which its failure rate falls below 50 % (pass@1 rises above
    50 %), "beyond the ladder's range" past MAX_FACTOR x the largest rung;
  * a leave-one-out check: the largest rung's bpb (per group) and pooled failure rate predicted from the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gptlab.compare.measurements import ANY, Measurements, ModelRef
from gptlab.errors import GptlabError
from gptlab.stats import bootstrap as stats
from gptlab.stats.capability import (
    fit_capability,
    leave_one_out_capability,
    predict_at,
    predict_crossing,
)
from gptlab.stats.scaling import fit_loss_curve, leave_one_out

MIN_RUNGS = 3
THRESHOLD = 0.5             # a probe "can be done" when it is clean (passes) more often than not
MAX_FACTOR = 10.0           # extrapolations beyond 10x the largest rung are not made
RESAMPLES = 400             # replicates per fit: every one is a refit
ALL = "all domains"


@dataclass
class Rung:
    run: str
    value: str                  # the rung's value on the ladder's axis
    position: int
    params: int
    non_embedding_params: int
    tokens: int
    flops: float
    label: str = ""             # run@step of the measured checkpoint
    step: int | None = None


@dataclass
class Ladder:
    name: str
    axis: str
    rungs: list[Rung]           # the evaluated rungs, smallest first
    meas: Measurements
    notes: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([r.non_embedding_params for r in self.rungs], dtype=float)


@dataclass
class ProbeFit:
    probe: str
    group: str                  # whose bpb it is fitted against
    metric: str                 # "failure rate" | "pass@1"
    k: np.ndarray               # per rung: failing (passing) samples
    n: np.ndarray               # per rung: samples
    fit: object | None          # CapabilityFit, None when it could not be fitted
    crossing: object | None     # Prediction
    error: str = ""

    @property
    def rates(self) -> np.ndarray:
        return self.k / np.maximum(self.n, 1)

    @property
    def below(self) -> bool:
        return self.metric == "failure rate"


@dataclass
class Analysis:
    ladder: Ladder
    loss: dict[str, object]                 # group (or ALL) -> LossFit
    bpb: dict[str, list[stats.Interval]]    # group -> per rung
    probes: list[ProbeFit]
    loo_loss: dict[str, object]             # group -> LooCheck (needs >= 4 rungs)
    loo_rate: object | None                 # the pooled failure rate's LooCheck
    compute: object | None = None           # bpb (all domains) against training FLOPs C: E + A * C^-alpha
    notes: list[str] = field(default_factory=list)

    def compute_at(self, size: float) -> float:
        """Training FLOPs a rung of `size` non-embedding parameters would get under this ladder's budget rule:
        log C linear in log N through the rungs (C ~ N^2 at a fixed tokens-per-parameter ratio)."""
        n = self.ladder.sizes
        c = np.array([r.flops for r in self.ladder.rungs], dtype=float)
        slope, intercept = np.polyfit(np.log(n), np.log(c), 1)
        return float(np.exp(intercept + slope * np.log(size)))


def ladder_names(store, runs: set[str] | None = None) -> list[str]:
    """Ladders with at least one rung among `runs` (None: every ladder in the store)."""
    rows = store.ladder_rungs()
    return sorted({r["ladder"] for r in rows if runs is None or r["run"] in runs})


def load_ladder(store, name: str) -> Ladder:
    """The ladder `name` with each rung measured at its newest checkpoint that has bpb (rungs without one are
    left out, with a note)."""
    rows = store.ladder_rungs(name)
    if not rows:
        known = ", ".join(ladder_names(store)) or "none"
        raise GptlabError(f"no ladder '{name}' in {store.path} (ladders: {known})")
    rungs, refs, notes = [], [], []
    for r in rows:
        models = [m for m in store.models(r["run"]) if m["step"] is not None]
        scored = {row["weights_hash"] for row in store.bpb_rows([m["weights_hash"] for m in models])}
        models = [m for m in models if m["weights_hash"] in scored]
        if not models:
            notes.append(f"rung {r['run']} has no evaluated checkpoint yet; left out")
            continue
        m = max(models, key=lambda m: m["step"])
        rung = Rung(r["run"], r["value"], r["position"], r["params"], r["non_embedding_params"], r["tokens"],
                    r["flops"], label=f"{r['run']}@{m['step']}", step=m["step"])
        rungs.append(rung)
        refs.append(ModelRef(rung.label, r["run"], m))
    meas = Measurements(store, refs, suite=None)
    return Ladder(name, rows[0]["axis"], rungs, meas, notes + meas.notes)


def _bpb_units(ladder: Ladder, group: str):
    return [ladder.meas.bpb(r.label, group=None if group == ALL else group) for r in ladder.rungs]


def _replicates(units, resamples: int, seed: int) -> np.ndarray:
    """(resamples, rungs): each rung's statistic over its own resampled units."""
    return np.stack([stats.replicates(u, resamples=resamples, seed=seed) for u in units], axis=1)


def _counts(ladder: Ladder, probe: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    k, n = [], []
    for r in ladder.rungs:
        if metric == "failure rate":
            cols = ladder.meas.failure_rate(r.label, [probe], ANY).columns
        else:
            cols = ladder.meas.pass_at(r.label, [probe], 1).columns
        k.append(cols[:, 0].sum() if len(cols) else 0.0)
        n.append(cols[:, 1].sum() if len(cols) else 0.0)
    return np.array(k), np.array(n)


def analyse(ladder: Ladder, *, resamples: int = RESAMPLES, seed: int = 0) -> Analysis:
    if len(ladder.rungs) < MIN_RUNGS:
        raise GptlabError(f"ladder {ladder.name}: {len(ladder.rungs)} evaluated rung(s); a fit needs at least "
                          f"{MIN_RUNGS}")
    x = ladder.sizes
    groups = [ALL] + list(ladder.meas.groups())
    loss, bpb, reps, loo_loss, notes = {}, {}, {}, {}, list(ladder.notes)
    for g in groups:
        units = _bpb_units(ladder, g)
        reps[g] = _replicates(units, resamples, seed)
        y = np.array([u.value() for u in units])
        bpb[g] = [stats.from_replicates(v, reps[g][:, i], u.n) for i, (v, u) in enumerate(zip(y, units))]
        loss[g] = fit_loss_curve(x, y, y_reps=reps[g], resamples=resamples, seed=seed, key=f"{ladder.name} {g}")
        if len(x) >= MIN_RUNGS + 1:
            loo_loss[g] = leave_one_out(x, y, y_reps=reps[g], resamples=resamples, seed=seed)
    flops = np.array([r.flops for r in ladder.rungs], dtype=float)
    compute = None
    if (flops > 0).all() and len(set(flops)) == len(flops):
        compute = fit_loss_curve(flops, np.array([iv.value for iv in bpb[ALL]]), y_reps=reps[ALL],
                                 resamples=resamples, seed=seed, key=f"{ladder.name} compute", symbol="C")
    probes = []
    for name in sorted(ladder.meas.probes):
        info = ladder.meas.probes[name]
        group = info["domain"] if info["domain"] in loss else ALL
        for metric in ("failure rate",) + (("pass@1",) if info["tests"] else ()):
            try:
                k, n = _counts(ladder, name, metric)
            except GptlabError as e:                      # e.g. pass@1 without executed tests
                probes.append(ProbeFit(name, group, metric, np.zeros(len(x)), np.zeros(len(x)), None, None, str(e)))
                continue
            if (n == 0).any():
                probes.append(ProbeFit(name, group, metric, k, n, None, None, "a rung has no samples of it"))
                continue
            ys = np.array([iv.value for iv in bpb[group]])
            fit = fit_capability(ys, k, n, bpb_reps=reps[group], resamples=resamples, seed=seed,
                                 key=f"{ladder.name} {name} {metric}")
            below = metric == "failure rate"
            crossing = predict_crossing(loss[group], fit, THRESHOLD, below=below, max_factor=MAX_FACTOR)
            probes.append(ProbeFit(name, group, metric, k, n, fit, crossing))
    loo_rate = None
    fails = [p for p in probes if p.metric == "failure rate" and p.fit is not None]
    if len(x) >= MIN_RUNGS + 1 and fails:
        k = sum(p.k for p in fails)
        n = sum(p.n for p in fails)
        ys = np.array([iv.value for iv in bpb[ALL]])
        loo_rate = leave_one_out_capability(ys, k, n, bpb_reps=reps[ALL], resamples=resamples, seed=seed)
    return Analysis(ladder, loss, bpb, probes, loo_loss, loo_rate, compute, notes)


def rate_at_size(analysis: Analysis, probe: str, metric: str, size: float) -> stats.Interval:
    """A probe's predicted failure rate (or pass@1) at `size` non-embedding parameters, with its interval."""
    for p in analysis.probes:
        if p.probe == probe and p.metric == metric:
            if p.fit is None:
                raise GptlabError(f"ladder {analysis.ladder.name}: probe '{probe}' {metric} has no fit ({p.error})")
            return predict_at(analysis.loss[p.group], p.fit, size)
    known = ", ".join(sorted({p.probe for p in analysis.probes if p.metric == metric})) or "none"
    raise GptlabError(f"ladder {analysis.ladder.name}: no {metric} of probe '{probe}' (probes: {known})")
