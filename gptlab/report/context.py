"""What every report section reads: the selected checkpoints and their stored results, loaded once.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

`build_context(store, subject)` reads the store (never a model) and derives what several sections share:
the val-bpb curve and its convergence verdict, the run's architecture and data mixture. Sections then only
format. Two curves can exist for a run, and the report uses the one with more points (ties: gptlab eval):
  * "gptlab eval": bpb measured by `gptlab eval` on each stored checkpoint, per domain; the overall value
    pools every domain's val bytes: sum(bpb_d * bytes_d) / sum(bytes_d);
  * "training log": the val bpb the trainer logged (metrics.jsonl, imported with the run).
The verdict is schedule-aware (gptlab/stats/schedule_fit.py) when the run's stored config (`runs.config_json`,
its `train` table) names the schedule: `Context.schedule` rebuilds the per-step learning-rate multiplier
with gptlab/schedule.py, the function the optimizer ran (the logged `lr` column is only every log_every steps).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property

from gptlab.compare.select import Subject, detector_version
from gptlab.report.failure_summary import FailureSummary, summarise_failures
from gptlab.schedule import Schedule
from gptlab.stats.trend import Trend, trend


@dataclass
class Curve:
    source: str                  # "gptlab eval" | "training log"
    steps: list[int]
    x: list[float]               # tokens seen, or steps when unit == "steps"
    unit: str                    # "tokens" | "steps"
    overall: list[float | None]
    domains: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass
class Context:
    store_path: str
    subject: Subject
    run: dict | None
    run_config: dict
    metrics: list[dict]
    bpb: dict[str, dict[str, dict]]          # weights_hash -> domain -> newest bpb row
    samples: list[dict]                      # sample rows joined with findings of `detector_version`
    detector_version: str | None
    curve: Curve | None = None
    trend: Trend | None = None
    domain_trends: dict[str, Trend] = field(default_factory=dict)

    @cached_property
    def diagnosis(self) -> FailureSummary:
        return summarise_failures(self.samples)

    @property
    def schedule(self) -> Schedule | None:
        """The run's learning-rate schedule, rebuilt from its stored config (None when the config lacks it)."""
        return Schedule.from_config(self.run_config)

    @property
    def models(self) -> list[dict]:
        """The covered checkpoints' `models` rows, oldest step first."""
        return self.subject.models

    @property
    def latest(self) -> dict | None:
        return self.models[-1] if self.models else None

    @property
    def arch(self) -> dict:
        return _json(self.latest["config_json"]) if self.latest else _json(self.run_config.get("model"))

    @property
    def tokens_per_step(self) -> int | None:
        if self.run and self.run.get("tokens_per_step"):
            return int(self.run["tokens_per_step"])
        tps = self.run_config.get("tokens_per_step") or self.run_config.get("train", {}).get("total_batch_tokens")
        if tps:
            return int(tps)
        meta = _json(self.latest["meta_json"]) if self.latest else {}
        return meta.get("tokens_per_step")

    @property
    def last_step(self) -> int | None:
        steps = [m["step"] for m in self.models if m["step"] is not None] or [m["step"] for m in self.metrics]
        return max(steps) if steps else None

    @property
    def latest_bpb(self) -> dict[str, dict]:
        """Per-domain bpb rows of the newest checkpoint that has any."""
        for m in reversed(self.models):
            if self.bpb.get(m["weights_hash"]):
                return self.bpb[m["weights_hash"]]
        return {}

    @property
    def mixture(self) -> dict[str, dict]:
        """domain -> {"share": fraction of training tokens, "group": probe domain} from the run config."""
        domains = self.run_config.get("data", {}).get("domains") or []
        shares = self.run_config.get("data_shares") or {}
        total = sum(float(d.get("weight", 1.0)) for d in domains) or 1.0
        return {d["name"]: {"share": float(shares.get(d["name"], float(d.get("weight", 1.0)) / total)),
                            "group": d.get("group") or ""} for d in domains if d.get("name")}

    def tokens_at(self, step: int | None, stored: int | None = None) -> int | None:
        if stored:
            return int(stored)
        if step is None:
            return None
        for row in self.metrics:
            if row["step"] == step and row["tokens_seen"]:
                return int(row["tokens_seen"])
        return step * self.tokens_per_step if self.tokens_per_step else None

    def logged_at(self, step: int | None, key: str):
        """The training log's value of `key` at `step`, or at the last logged step before it."""
        rows = [r for r in self.metrics if r.get(key) is not None]
        i = bisect_right([r["step"] for r in rows], step if step is not None else -1)
        return rows[i - 1][key] if i else None


def _json(text) -> dict:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def pooled(rows: dict[str, dict]) -> float | None:
    """bpb over all domains' val bytes together."""
    total = sum(r["bytes"] or 0 for r in rows.values())
    if not total:
        return None
    return sum(r["bpb"] * (r["bytes"] or 0) for r in rows.values()) / total


def _newest_bpb(store, hashes) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in store.bpb_rows(hashes) if hashes else []:
        cur = out.setdefault(r["weights_hash"], {}).get(r["domain"])
        if cur is None or (r["created_at"] or 0) >= (cur["created_at"] or 0):
            out[r["weights_hash"]][r["domain"]] = r
    return out


def _curves(ctx: Context) -> list[Curve]:
    curves = []
    # One run's curve: checkpoints of other selected runs would interleave meaninglessly.
    rows = [(m, ctx.bpb[m["weights_hash"]]) for m in ctx.models
            if ctx.bpb.get(m["weights_hash"]) and m["run"] == ctx.subject.run]
    if rows:
        domains = sorted({d for _, r in rows for d in r})
        curves.append(Curve("gptlab eval", [m["step"] for m, _ in rows],
                            [ctx.tokens_at(m["step"], m["tokens_seen"]) for m, _ in rows], "tokens",
                            [pooled(r) for _, r in rows],
                            {d: [r[d]["bpb"] if d in r else None for _, r in rows] for d in domains}))
    logged = [r for r in ctx.metrics if r["val_bpb"] is not None]
    if logged:
        per = [_json(r["val_json"]) for r in logged]
        domains = sorted({d for p in per for d in p})
        curves.append(Curve("training log", [r["step"] for r in logged],
                            [r["tokens_seen"] or ctx.tokens_at(r["step"]) for r in logged], "tokens",
                            [r["val_bpb"] for r in logged], {d: [p.get(d) for p in per] for d in domains}))
    for c in curves:
        if any(x is None for x in c.x):           # tokens unknown somewhere: fall back to steps throughout
            c.x, c.unit = [float(s) if s is not None else None for s in c.steps], "steps"
    return curves


def build_context(store, subject: Subject) -> Context:
    hashes = [m["weights_hash"] for m in subject.models]
    run = next((r for r in store.runs() if r["run"] == subject.run), None) if subject.run else None
    version = detector_version(store, hashes)
    metrics = store.train_metrics(subject.run) if subject.run else []
    steps = [m["step"] for m in subject.models if m["run"] == subject.run and m["step"] is not None]
    if steps:                                    # the log up to the newest covered checkpoint, not beyond
        metrics = [r for r in metrics if r["step"] <= max(steps)]
    ctx = Context(
        store_path=str(store.path), subject=subject, run=run,
        run_config=_json(run["config_json"]) if run else {},
        metrics=metrics,
        bpb=_newest_bpb(store, hashes),
        samples=store.sample_rows(hashes, version) if hashes else [],
        detector_version=version)
    curves = _curves(ctx)
    if curves:
        ctx.curve = max(curves, key=lambda c: sum(v is not None for v in c.overall))   # first wins ties
        sched = dict(steps=ctx.curve.steps, schedule=ctx.schedule, use_schedule=True)
        ctx.trend = trend(ctx.curve.x, ctx.curve.overall, unit=ctx.curve.unit, **sched)
        ctx.domain_trends = {d: trend(ctx.curve.x, ys, unit=ctx.curve.unit, **sched)
                             for d, ys in ctx.curve.domains.items()}
    else:
        ctx.trend = trend([], [])
    return ctx
