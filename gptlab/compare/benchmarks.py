"""Stored lm-evaluation-harness scores: as flat records (report, `gptlab results --what benchmarks`) and as
resamplable units (`gptlab compare`, with the same ranking rules as bpb and failure rates).

    gptlab bench runs/a runs/b --tasks arc_easy            (gptlab/evaluate/benchmarks.py writes them)
    gptlab compare runs/a runs/b --no-eval                 ranks the models on each task's metrics
    python -m pytest tests/test_benchmarks.py

A stored row is one (checkpoint, task, task version, n-shot, document limit, protocol). For a comparison every
model is read at one setting per task, (task version, n-shot, limit): the one most models were scored at
(newest on ties); a model scored only at another setting lacks that task (a note says so). The protocol (BOS
or not, gptlab/evaluate/lm_eval_model.py) is not part of the setting: each model is read as it reads text.

Each metric's documents are the units, resampled as bpb's documents are (gptlab/stats/bootstrap.py) and paired
between models scored on the same documents. The statistic is the metric's own aggregation over the stored
per-document values: `mean` (accuracy, exact match) is sum(value) / documents; `perplexity` is
exp(-mean log-likelihood); `weighted_perplexity` (word, byte perplexity) exp(-sum ll / sum weight);
`bits_per_byte` -sum ll / (ln 2 x sum bytes). A metric aggregated otherwise (BLEU, F1, MCC: corpus-level) has
no units and is left out of the ranking; the report still shows its value with lm-eval's stderr.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gptlab.stats import bootstrap as stats
from gptlab.stats.bootstrap import Units


def _perplexity(sums: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.exp(-sums[..., 0].sum(-1) / sums[..., 1].sum(-1))


def _bits_per_byte(sums: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return -sums[..., 0].sum(-1) / (math.log(2) * sums[..., 1].sum(-1))


STATISTICS = {"mean": stats.rate_statistic, "perplexity": _perplexity, "weighted_perplexity": _perplexity,
              "bits_per_byte": _bits_per_byte}


def _json(text, default):
    try:
        return json.loads(text) if text else default
    except (TypeError, json.JSONDecodeError):
        return default


def metric_records(row: dict) -> list[dict]:
    """One flat record per metric (and filter) of a stored benchmark row, in the order lm-eval reported them."""
    out = []
    for m in _json(row.get("metrics_json"), {}).values():
        out.append({"run": row.get("run"), "step": row.get("step"), "weights_hash": row["weights_hash"],
                    "task": row["task"], "task_version": row["task_version"], "num_fewshot": row["num_fewshot"],
                    "limit": row["doc_limit"] or None, "protocol": row["protocol"], "metric": m.get("metric"),
                    "filter": m.get("filter"), "value": m.get("value"), "stderr": m.get("stderr"),
                    "higher_is_better": m.get("higher_is_better"), "aggregation": m.get("aggregation"),
                    "n_docs": row["n_docs"], "lm_eval_version": row["lm_eval_version"]})
    return out


def metric_name(task: str, metric: str, filt: str | None, shots=None) -> str:
    """'arc_easy acc_norm (0-shot)', 'gsm8k exact_match [strict-match] (5-shot)'."""
    name = f"{task} {metric}" + ("" if filt in (None, "none") else f" [{filt}]")
    return name + (f" ({shots}-shot)" if shots is not None else "")


def newest_rows(rows: list[dict]) -> list[dict]:
    """The newest row of each (checkpoint, task, version, n-shot, limit): one protocol per setting."""
    best = {}
    for r in rows:
        key = (r["weights_hash"], r["task"], r["task_version"], r["num_fewshot"], r["doc_limit"])
        if key not in best or (r["created_at"] or 0) >= (best[key]["created_at"] or 0):
            best[key] = r
    return list(best.values())


@dataclass
class BenchmarkQuantity:
    """One metric of one task for every model: the units to rank, or None where a model lacks them."""
    name: str
    lower_is_better: bool
    units: dict[str, Units | None]
    what: str = ""                                   # the caption's unit count: "12 documents"
    rankable: bool = True


@dataclass
class BenchmarkMeasurements:
    quantities: list[BenchmarkQuantity] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def measure(store, models: dict) -> BenchmarkMeasurements:
    """Every stored task of `models` ({label: compare.measurements.ModelRef}) at its common setting."""
    by_hash = {m.weights_hash: label for label, m in models.items()}
    rows = newest_rows(store.benchmark_rows(list(by_hash)))
    by_task = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    out = BenchmarkMeasurements()
    for task, rs in sorted(by_task.items()):
        scored, newest = defaultdict(set), {}
        for r in rs:
            key = (r["task_version"], r["num_fewshot"], r["doc_limit"])
            scored[key].add(r["weights_hash"])
            newest[key] = max(newest.get(key, 0), r["created_at"] or 0)
        setting = max(scored, key=lambda k: (len(scored[k]), newest[k]))
        chosen = {by_hash[r["weights_hash"]]: r for r in rs if (r["task_version"], r["num_fewshot"],
                                                                 r["doc_limit"]) == setting}
        for label in sorted({by_hash[r["weights_hash"]] for r in rs} - set(chosen)):
            out.notes.append(f"{label}: {task} was scored at another version, n-shot or limit than the other "
                             f"models; left out")
        out.quantities += _task_quantities(task, setting, chosen, list(models))
    return out


def _task_quantities(task, setting, chosen: dict[str, dict], labels: list[str]) -> list[BenchmarkQuantity]:
    version, shots, limit = setting
    metrics = {lab: _json(r["metrics_json"], {}) for lab, r in chosen.items()}
    docs = {lab: _json(r["docs_json"], {}) for lab, r in chosen.items()}
    keys = list(dict.fromkeys(k for m in metrics.values() for k in m))
    out = []
    for key in keys:
        spec = next(m[key] for m in metrics.values() if key in m)
        statistic = STATISTICS.get(spec.get("aggregation"))
        units = {}
        for lab in labels:
            d = docs.get(lab, {}).get(key) if lab in chosen else None
            if statistic is None or not d or not d.get("columns"):
                units[lab] = None
                continue
            units[lab] = Units(np.array(d["columns"], dtype=float), np.zeros(len(d["columns"]), dtype=int),
                               statistic, name=f"{lab} {task} {key} v{version} {shots}-shot {limit:g}",
                               pair_key=(task, version, shots, limit, key, tuple(d["doc_ids"])),
                               info={"documents": len(d["columns"])})
        got = [u for u in units.values() if u is not None]
        better = spec.get("higher_is_better")
        out.append(BenchmarkQuantity(
            metric_name(task, spec.get("metric", key), spec.get("filter"), shots),
            lower_is_better=better is False, units=units,
            what=f"{got[0].info['documents']} documents" if got else "", rankable=statistic is not None))
    return out
