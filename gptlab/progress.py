"""Progress display for long work: a rich bar on a terminal, a plain line every few seconds otherwise.

    gptlab train demo        (shows TrainProgress)
    python -m pytest tests/test_train.py     (runs it as CI does: plain lines, no terminal)

CI logs and pipes get periodic one-line summaries instead of carriage-return animations.
"""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True, every_s: float = 10.0):
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.tty = enabled and sys.stderr.isatty()
        self._last_print = 0.0
        self._bar = None
        if self.tty:
            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=start, info="")

    def update(self, step, loss, tps, tokens_seen, val_bpb=None, mfu=None):
        if not self.enabled:
            return
        info = f"loss {loss:.4f}  {tps:,.0f} tok/s  {tokens_seen / 1e6:.2f}M tok"
        if val_bpb is not None:
            info += f"  val_bpb {val_bpb:.4f}"
        if mfu is not None:
            info += f"  mfu {100 * mfu:.1f}%"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif time.monotonic() - self._last_print > self.every_s or step == self.total:
            self._last_print = time.monotonic()
            print(f"step {step}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
