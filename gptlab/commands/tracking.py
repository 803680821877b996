"""Evaluation results to experiment trackers: `gptlab eval PATH --log wandb,tensorboard` and `gptlab watch
RUN_DIR --log ...` evaluate as usual, then log what the store holds for the checkpoints evaluated.

    gptlab eval runs/demo --log wandb:gptlab,tensorboard:tb
    WANDB_MODE=offline gptlab watch runs/d12 --log wandb
    python -m pytest tests/test_trackers.py

One tracker run per model run (W&B: named "<run> eval", in group <run>, job type eval; TensorBoard:
<dir>/<run>/eval), each checkpoint logged at its training step (0 when it has none), oldest first. What is
logged is what `gptlab results` exports (gptlab/compare/results.py), under these names:
    eval/bpb/<domain>                                  bits per byte
    eval/tokens_seen                                   when the checkpoint knows it
    eval/t<temperature>/<domain>/clean_rate            share of samples with no failure
    eval/t<temperature>/<domain>/pass_at_<k>           probes with tests (k = 1, 5, 10 when there are enough)
    eval/t<temperature>/<domain>/rate_<mode>           each failure mode's rate (docs/failure_modes.md)
    eval/samples                                       a table: step, probe, domain, temperature, sample_index,
                                                       max_tokens, prompt, completion, failures, passed
Nothing is logged, and no tracker package imported, when --log is not given. The trackers are checked (known
names) before any model is loaded.
"""

from __future__ import annotations

from collections import defaultdict

from gptlab.checkpoints import discover
from gptlab.compare.results import collect
from gptlab.evaluate.job import Summary
from gptlab.evaluate.job import evaluate as evaluate_job
from gptlab.store import Store
from gptlab.trackers import Trackers, TrackerSpec, numeric, open_trackers, parse_log

SAMPLE_COLUMNS = ["step", "probe", "domain", "temperature", "sample_index", "max_tokens", "prompt", "completion",
                  "failures", "passed"]
ROLLUP_FIELDS = ("clean_rate", "pass_at_1", "pass_at_5", "pass_at_10")


def evaluate(paths: list[str], *, db: str, log: str | None = None, **kw) -> Summary:
    """gptlab.evaluate.job.evaluate, then (with `log`) its results to the trackers named there."""
    specs = parse_log(log)
    summary = evaluate_job(paths, db=db, **kw)
    if specs:
        logger = EvalLogger(specs)
        try:
            logger.log(paths, db)
        finally:
            logger.close()
    return summary


def checkpoint_metrics(bpb: list[dict], rollup: list[dict]) -> dict[str, float]:
    """One checkpoint's records as tracker scalars (names: the module docstring)."""
    out = {}
    for r in bpb:
        out[f"eval/bpb/{r['domain']}"] = r["bpb"]
        if r.get("tokens_seen") is not None:
            out["eval/tokens_seen"] = r["tokens_seen"]
    for r in rollup:
        head = f"eval/t{r['temperature']:g}/{r['domain']}/"
        fields = {k: r.get(k) for k in ROLLUP_FIELDS}
        fields.update({k: v for k, v in r.items() if k.startswith("rate_")})
        out.update(numeric(fields, head))
    return out


def sample_rows(samples: list[dict]) -> list[list]:
    return [[s["step"], s["probe"], s["domain"], s["temperature"], s["sample_index"], s["max_tokens"], s["prompt"],
             s["completion"], ", ".join(s["failures"] or []), s["passed"]] for s in samples]


class EvalLogger:
    """Tracker runs kept open per model run, so that `watch` logs each new checkpoint into the same run."""

    def __init__(self, specs: list[TrackerSpec]):
        self.specs = specs
        self.runs: dict[str, Trackers] = {}

    def log(self, paths: list[str], db: str) -> int:
        """Log the stored results of every checkpoint under `paths`; returns how many were logged."""
        targets = [str(r.path) for p in paths for r in discover(p)]
        store = Store(db, readonly=True)
        try:
            doc = collect(store, targets)
        finally:
            store.close()
        by_model = defaultdict(lambda: {"bpb": [], "rollup": [], "samples": []})
        for table in ("bpb", "rollup", "samples"):
            for r in doc[table]:
                by_model[(r["run"] or "model", r["weights_hash"])][table].append(r)
        steps = {key: next(r["step"] for t in got.values() for r in t) for key, got in by_model.items()}
        for key in sorted(by_model, key=lambda k: (k[0], steps[k] is None, steps[k] or 0)):
            run, got = key[0], by_model[key]
            if run not in self.runs:
                self.runs[run] = open_trackers(self.specs, name=run, job="eval")
            step = steps[key] or 0
            self.runs[run].log(checkpoint_metrics(got["bpb"], got["rollup"]), step)
            if got["samples"]:
                self.runs[run].table("eval/samples", SAMPLE_COLUMNS, sample_rows(got["samples"]), step)
        return len(by_model)

    def close(self) -> None:
        for trackers in self.runs.values():
            trackers.close()
        self.runs = {}
