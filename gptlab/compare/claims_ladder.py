"""Claims about sizes a ladder did not train: a measurement predicted by a ladder's fits (gptlab/compare/ladder.py)
at a chosen size, with its 95 % interval from the fits' replicates, judged like any measured quantity.

    gptlab check claims.toml --db ladder_run/results.sqlite
    python -m pytest tests/test_ladder_claims.py

In a claims file a measurement names a `ladder` (as `gptlab ladder` recorded it) instead of a `model`:

    left = { ladder = "ladder-demo", size = "4x", metric = "pass_at_k", probe = "code_add" }
    left = { ladder = "ladder-demo", size = 2e6, metric = "failure_rate", probe = "general_water" }
    left = { ladder = "ladder-demo", size = "10x", metric = "bpb", group = "code" }

`size` is a factor of the ladder's largest rung ("4x") or a number of non-embedding parameters. Metrics:
`bpb` (a domain `group`, default all domains), `failure_rate` (one `probe`, any failure mode) and `pass_at_k`
(one `probe`, k = 1). The prediction chains the fits (size -> bpb -> rate); its interval pairs their
replicates, so it carries the uncertainty of both. A size beyond the ladder's extrapolation limit (10x its
largest rung) is an error: the ladder cannot say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gptlab.compare.ladder import ALL, MAX_FACTOR, analyse, load_ladder
from gptlab.errors import GptlabError
from gptlab.stats import bootstrap as stats
from gptlab.stats.capability import rate_reps_at
from gptlab.textfile import shown_repr

LADDER_METRICS = {"bpb": {"group"}, "failure_rate": {"probe", "mode"}, "pass_at_k": {"probe", "k"}}


def parse_ladder_measure(raw: dict, where: str) -> dict:
    """A `{ ladder = ..., size = ..., metric = ... }` table, checked field by field."""
    metric = raw.get("metric")
    if metric not in LADDER_METRICS:
        raise GptlabError(f"{where}.metric for a ladder prediction must be one of {', '.join(LADDER_METRICS)}, "
                          f"got {shown_repr(metric)}")
    allowed = LADDER_METRICS[metric] | {"ladder", "size", "metric"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise GptlabError(f"{where} has unknown key '{unknown[0]}' for a ladder's {metric} "
                          f"(known: {', '.join(sorted(allowed))})")
    name = raw["ladder"]
    if not isinstance(name, str) or not name:
        raise GptlabError(f"{where}.ladder must be a ladder's name, got {shown_repr(name)}")
    out = {"ladder": name, "metric": metric, "size": _size(raw.get("size"), where)}
    if metric == "bpb":
        group = raw.get("group", ALL)
        if not isinstance(group, str):
            raise GptlabError(f"{where}.group must be a domain group's name, got {shown_repr(group)}")
        out["group"] = group
        return out
    probe = raw.get("probe")
    if not isinstance(probe, str) or not probe:
        raise GptlabError(f"{where}.probe must name one probe for a ladder prediction, got {shown_repr(probe)}")
    if raw.get("mode", "any") != "any":
        raise GptlabError(f"{where}.mode: a ladder predicts the failure rate of any mode only")
    if raw.get("k", 1) != 1:
        raise GptlabError(f"{where}.k: a ladder predicts pass@1 only")
    out["probe"] = probe
    return out


def _size(value, where: str) -> tuple[str, float]:
    if isinstance(value, str) and value.endswith("x"):
        try:
            factor = float(value[:-1])
        except ValueError:
            factor = math.nan
        if math.isfinite(factor) and factor > 0:
            return ("factor", factor)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return ("params", float(value))
    raise GptlabError(f"{where}.size must be a factor of the largest rung like \"4x\" or a number of non-embedding "
                      f"parameters, got {shown_repr(value)}")


@dataclass
class Predicted:
    """A ladder's prediction, shaped like claims_verdict.Quantity: a point and the fits' replicates."""
    what: str
    model: str
    point: float
    reps: np.ndarray
    n: int
    units: str
    terms: list = field(default_factory=list)
    term_names: tuple = ()

    def value(self) -> float:
        return self.point

    def replicates(self, resamples, seed) -> np.ndarray:
        return np.resize(self.reps, resamples)

    def interval(self, resamples, seed) -> stats.Interval:
        return stats.from_replicates(self.point, self.reps, self.n)


class Ladders:
    """Each ladder's analysis, computed once per `gptlab check`, with `resamples` replicates per fit."""

    def __init__(self, store, resamples: int, seed: int):
        self.store, self.resamples, self.seed, self.done = store, resamples, seed, {}

    def analysis(self, name: str):
        if name not in self.done:
            self.done[name] = analyse(load_ladder(self.store, name), resamples=self.resamples, seed=self.seed)
        return self.done[name]

    def quantity(self, spec: dict) -> Predicted:
        an = self.analysis(spec["ladder"])
        top = float(an.ladder.sizes.max())
        kind, v = spec["size"]
        size = v * top if kind == "factor" else v
        if size > MAX_FACTOR * top:
            raise GptlabError(f"size {size:.3g} is beyond {MAX_FACTOR:g}x the ladder's largest rung ({top:.3g} "
                              f"non-embedding parameters): the ladder cannot predict it")
        where = f"ladder {spec['ladder']} at {v:g}x its largest rung" if kind == "factor" else \
            f"ladder {spec['ladder']} at {size:.3g} parameters"
        if spec["metric"] == "bpb":
            group = spec["group"]
            if group not in an.loss:
                raise GptlabError(f"group '{group}' is not fitted on ladder {spec['ladder']} (groups: "
                                  f"{', '.join(an.loss)})")
            fit = an.loss[group]
            return Predicted(f"predicted bpb ({group})", where, float(fit(size)), fit.curve_reps(size), fit.n,
                             f"{fit.n} rungs")
        metric = "failure rate" if spec["metric"] == "failure_rate" else "pass@1"
        hits = [p for p in an.probes if p.probe == spec["probe"] and p.metric == metric]
        if not hits or hits[0].fit is None:
            known = ", ".join(sorted({p.probe for p in an.probes if p.metric == metric and p.fit})) or "none"
            why = f" ({hits[0].error})" if hits and hits[0].error else ""
            raise GptlabError(f"ladder {spec['ladder']} has no {metric} fit for probe '{spec['probe']}'{why} "
                              f"(fitted: {known})")
        p = hits[0]
        loss = an.loss[p.group]
        return Predicted(f"predicted {metric} on {p.probe}", where, float(p.fit(loss(size))),
                         rate_reps_at(loss, p.fit, size), p.fit.n, f"{p.fit.n} rungs, {int(sum(p.n))} samples")
