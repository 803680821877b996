"""Experiment trackers: W&B and TensorBoard behind one small interface, for training and evaluation.

    gptlab train demo --set logging.wandb_project=gptlab --set logging.tensorboard_dir=tb
    gptlab eval runs/demo --log wandb,tensorboard:tb        (also `gptlab watch RUN_DIR --log ...`)
    python -m pytest tests/test_trackers.py

Both are optional extras (`pip install 'gptlab[wandb]'`, `'gptlab[tensorboard]'`) imported only when asked
for; with no tracker asked for nothing is imported, opened or written (`Trackers` with no members).
* W&B: one run per `open_trackers` call, started with `wandb.init(project, entity, name, group, job_type,
  config)`; WANDB_MODE=offline (or `wandb offline`) keeps it on disk for `wandb sync`. Its local files go
  to `wandb_dir` (training: the run directory) unless WANDB_DIR says otherwise.
* TensorBoard: an event file in `<dir>/<run name>/<job>` (job: train or eval), written by torch's
  SummaryWriter, so `tensorboard --logdir <dir>` shows every run and job side by side.
Scalars are logged with a step (training: the optimizer step; evaluation: the checkpoint's step); tables
(samples with their findings) go to W&B as a wandb.Table and to TensorBoard as a Markdown text table.

Training logs each metrics.jsonl line through `train_metrics`, whose names are the contract:
train/loss, train/lr, train/lr_mult, train/tokens_seen, train/tokens_per_s, train/step_seconds, train/mfu
(CUDA only), val/bpb and val/bpb/<domain>. Evaluation's names are in gptlab/commands/tracking.py.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from gptlab.errors import GptlabError

KINDS = ("wandb", "tensorboard")
DEFAULT_TENSORBOARD_DIR = "tensorboard"
LOG_HELP = ("log results to experiment trackers, comma-separated: wandb (wandb:PROJECT names the project, "
            "default gptlab), tensorboard (tensorboard:DIR, default ./tensorboard)")
TRAIN_NAMES = {"train_loss": "train/loss", "lr": "train/lr", "lr_mult": "train/lr_mult",
               "tokens_seen": "train/tokens_seen", "tokens_per_s": "train/tokens_per_s", "dt": "train/step_seconds",
               "mfu": "train/mfu", "val_bpb": "val/bpb"}


@dataclass(frozen=True)
class TrackerSpec:
    kind: str                   # "wandb" | "tensorboard"
    target: str = ""            # W&B project, or TensorBoard root folder ("" = the default)
    entity: str = ""            # W&B entity (team or user; "" = the logged-in user's default)


def parse_log(text: str | None) -> list[TrackerSpec]:
    """'wandb,tensorboard:tb' -> the trackers asked for; '' or None -> none. Unknown names are one line."""
    specs = []
    for item in (text or "").split(","):
        kind, _, target = item.strip().partition(":")
        if not kind:
            continue
        if kind not in KINDS:
            raise GptlabError(f"--log {text!r}: unknown tracker {kind!r} (trackers: {', '.join(KINDS)}; e.g. "
                              f"--log wandb:my-project,tensorboard:tb)")
        specs.append(TrackerSpec(kind, target.strip()))
    return specs


def numeric(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers in `metrics`, nested dicts flattened with '/' ('a': {'b': 1} -> 'a/b')."""
    out = {}
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(numeric(v, name + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = v
    return out


def train_metrics(row: dict) -> dict[str, float]:
    """A metrics.jsonl line under the tracker names of the module docstring."""
    out = {TRAIN_NAMES[k]: v for k, v in numeric({k: row.get(k) for k in TRAIN_NAMES}).items()}
    out.update(numeric(row.get("val_bpb_domains") or {}, "val/bpb/"))
    return out


class WandbTracker:
    def __init__(self, spec: TrackerSpec, *, name: str, group: str, job: str, config: dict, wandb_dir=None):
        try:
            import wandb  # deferred: optional extra [wandb]; imported only when W&B logging is asked for
        except ImportError:
            raise GptlabError("logging to W&B needs wandb: pip install 'gptlab[wandb]'") from None
        self._wandb = wandb
        kw = {"dir": str(wandb_dir)} if wandb_dir and not os.environ.get("WANDB_DIR") else {}
        if wandb_dir and "dir" in kw:
            Path(wandb_dir).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(project=spec.target or os.environ.get("WANDB_PROJECT") or "gptlab",
                                  entity=spec.entity or None, name=name, group=group, job_type=job,
                                  config=config, reinit="create_new", **kw)
        except Exception as e:  # noqa: BLE001 - wandb raises its own errors (not logged in, no network, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise GptlabError(f"W&B: cannot start a run ({first}); log in with `wandb login`, or set "
                              f"WANDB_MODE=offline to keep the run on disk") from None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if metrics:
            self.run.log(metrics, step=step)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)}, step=step)

    def close(self) -> None:
        self.run.finish()
        if self._wandb.run is None:     # no other run of this process is open: have the run files written now
            self._wandb.teardown()


class TensorBoardTracker:
    def __init__(self, spec: TrackerSpec, *, name: str, job: str, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter  # deferred: optional extra [tensorboard]
        except ImportError:
            raise GptlabError("logging to TensorBoard needs tensorboard: pip install 'gptlab[tensorboard]'") \
                from None
        self.dir = Path(spec.target or DEFAULT_TENSORBOARD_DIR) / name / job
        try:
            self.writer = SummaryWriter(log_dir=str(self.dir))
        except OSError as e:
            raise GptlabError(f"{self.dir}: cannot write TensorBoard events there ({e.strerror})") from None
        if config:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self.writer.add_text(name, markdown_table(columns, rows), step)

    def close(self) -> None:
        self.writer.close()


def markdown_table(columns: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return "" if v is None else str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


class Trackers:
    """Every tracker asked for, as one: `log`, `table` and `close` go to each. Empty (falsy) when none."""

    def __init__(self, members=()):
        self.members = list(members)

    def __bool__(self) -> bool:
        return bool(self.members)

    def log(self, metrics: dict[str, float], step: int) -> None:
        for m in self.members:
            m.log(metrics, step)

    def table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        for m in self.members:
            m.table(name, columns, rows, step)

    def close(self) -> None:
        for m in self.members:
            m.close()
        self.members = []


def open_trackers(specs: list[TrackerSpec], *, name: str, job: str, config: dict | None = None,
                  wandb_dir=None) -> Trackers:
    """A run named `name` (W&B: in group `name`, job type `job`) in each tracker of `specs`; if one fails to
    start, those already started are closed and the error is raised."""
    members = []
    try:
        for spec in specs:
            if spec.kind == "wandb":
                members.append(WandbTracker(spec, name=f"{name} {job}", group=name, job=job, config=config or {},
                                            wandb_dir=wandb_dir))
            else:
                members.append(TensorBoardTracker(spec, name=name, job=job, config=config or {}))
    except BaseException:
        Trackers(members).close()
        raise
    return Trackers(members)


def training_trackers(logging, name: str, config: dict, run_dir: Path) -> Trackers:
    """The trackers a training config's [logging] table asks for (none when both fields are empty)."""
    specs = []
    if logging.wandb_project:
        specs.append(TrackerSpec("wandb", logging.wandb_project, logging.wandb_entity))
    if logging.tensorboard_dir:
        specs.append(TrackerSpec("tensorboard", logging.tensorboard_dir))
    return open_trackers(specs, name=name, job="train", config=config, wandb_dir=run_dir) if specs else Trackers()
