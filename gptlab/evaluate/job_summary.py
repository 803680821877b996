"""What an evaluation job reports: its counts (`Summary`) and its progress display (`JobProgress`).

    gptlab eval runs/demo          (the last line is the summary; the bar or periodic lines go to stderr)
    python -m pytest tests/test_eval.py tests/test_eval_distributed.py
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@dataclass
class Summary:
    checkpoints: int = 0
    bpb_computed: int = 0
    bpb_cached: int = 0
    generations: int = 0             # sampled rows (each gives one stored sample per length)
    samples_written: int = 0
    samples_cached: int = 0
    findings_computed: int = 0
    findings_cached: int = 0
    model_calls: int = 0             # forward passes of any model during this job
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    bpb: list[dict] = field(default_factory=list)     # one {"model","step","domain","bpb","bytes","tokens"} each

    @property
    def cache_hit(self) -> bool:
        return self.model_calls == 0 and not (self.bpb_computed or self.samples_written or self.findings_computed)

    def lines(self, db) -> list[str]:
        out = [f"{self.checkpoints} checkpoint{'s' * (self.checkpoints != 1)} in {self.seconds:.1f} s: "
               f"bpb {self.bpb_computed} computed, {self.bpb_cached} cached; samples {self.samples_written} "
               f"written ({self.generations} generations), {self.samples_cached} cached; findings "
               f"{self.findings_computed} computed, {self.findings_cached} cached; {self.model_calls} model calls"]
        if self.cache_hit:
            out.append(f"cache hit: every result was already in {db}; no model was run")
        return out


class JobProgress:
    """One bar over the whole job's units (bpb domains, sample rows, findings) on a terminal; a plain line
    every few seconds otherwise (logs and pipes)."""

    def __init__(self, total: int, enabled: bool, every_s: float = 10.0):
        self.total, self.done, self.enabled, self.every_s = total, 0, enabled, every_s
        self.what, self._last, self._bar = "", 0.0, None
        if enabled and sys.stderr.isatty():
            self._bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[what]}"),
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task("eval", total=total, what="")

    def say(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def status(self, what: str) -> None:
        self.what = what
        self.advance(0)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, what=self.what)
        elif self.enabled and time.monotonic() - self._last > self.every_s:
            self._last = time.monotonic()
            print(f"eval {self.done}/{self.total} units  {self.what}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def bpb_line(label: str, parts: list[str], computed: int, cached: int) -> str:
    """`run@step bpb (cached): code 1.2345, web 1.5` — one checkpoint's domains, as the job prints them."""
    state = "cached" if not computed else "computed" if not cached else f"{computed} computed"
    return f"{label} bpb ({state}): " + ", ".join(parts)
