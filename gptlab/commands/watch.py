"""Follow a training run: evaluate each checkpoint as it lands, then refresh the report.

    gptlab watch runs/d12 --db results.sqlite --interval 10      (Ctrl-C stops; exit status 0)
    gptlab watch runs/d12 --log wandb,tensorboard:tb             (each checkpoint's results to the trackers too)

Every `interval` seconds the run directory is listed with gptlab.checkpoints.discover, which only returns
complete checkpoints (gptlab writes each one into a temporary folder and renames it when whole). Checkpoints
not seen before go to the evaluation library (gptlab.evaluate.job.evaluate), which stores bpb, samples and
findings; then the report is rewritten. Evaluation skips work already in the store, so restarting a watch is
cheap, and each stored unit is one transaction, so Ctrl-C at any moment leaves a consistent store and the
previous complete report. A run directory that disappears ends the watch with a one-line error (exit 2).
This is the only place where reporting and evaluation meet: the report itself stays a pure reader of the store.

Under torchrun (`torchrun --nproc_per_node=4 -m gptlab watch runs/d12`) rank 0 looks for checkpoints and
sends every look's new ones to the other ranks (an empty list when there are none, so no rank waits longer
than an interval plus an evaluation); all ranks evaluate them together (gptlab/evaluate/ranks.py) and rank 0
alone writes the report. When rank 0 stops it sends None, and the others return.

    python -m pytest tests/test_watch.py
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from gptlab.checkpoints import discover
from gptlab.commands.tracking import EvalLogger
from gptlab.distributed import launched_world
from gptlab.errors import GptlabError
from gptlab.evaluate import ranks
from gptlab.evaluate.job import evaluate
from gptlab.report import write_report
from gptlab.store import Store
from gptlab.trackers import parse_log

MAX_INTERVAL_S = 86400          # a day; time.sleep overflows on absurd values


def _complete_checkpoints(run_dir: Path) -> list:
    try:
        return discover(run_dir)
    except GptlabError:
        return []                       # nothing saved yet (or not yet recognisable): keep waiting
    except OSError:
        return []                       # the folder vanished while listed: the next poll says so


def _default_evaluate(paths: list[str], *, db: str) -> None:
    evaluate(paths, db=db)


def _refresh(run_dir: Path, db: str, out: Path):
    store = Store(db)
    try:
        return write_report(store, [str(run_dir)], out)
    finally:
        store.close()


class _Stop(BaseException):
    """Raised by our SIGINT handler instead of KeyboardInterrupt. CPython 3.11 marks a KeyboardInterrupt
    raised inside exec'd code (dataclass creation during an import, for one) as unhandled and then kills the
    process with SIGINT at exit even after we caught it; another exception type has no such side effect.
    A BaseException, so `except Exception` in the evaluation code cannot swallow it."""


@contextmanager
def _ctrl_c_stops():
    if threading.current_thread() is not threading.main_thread():
        yield                           # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        raise _Stop()
    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(msg: str) -> None:
    print(msg, flush=True)             # flushed: a watch usually runs with its output piped to a log


def watch(run_dir, *, db: str, out=None, interval: float = 10.0, evaluate=None, sleep=time.sleep,
          max_polls: int | None = None, echo=_say, log: str | None = None) -> int:
    """Poll until Ctrl-C (or `max_polls`, for tests); returns the exit status, 0 on a clean stop. Raises
    GptlabError (one line, exit 2) for an interval that is not a finite number in (0, a day], and when the run
    directory disappears while it is watched. `log` names experiment trackers (gptlab/commands/tracking.py)
    that receive each new checkpoint's results, in one tracker run for the whole watch."""
    tracked = EvalLogger(parse_log(log))
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GptlabError(f"{run_dir}: not a folder (watch needs a training run directory)")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not math.isfinite(interval) \
            or not 0 < interval <= MAX_INTERVAL_S:
        raise GptlabError(f"--interval {interval}: must be a positive number of seconds, at most {MAX_INTERVAL_S}")
    out = Path(out) if out else run_dir / "report"
    evaluate = evaluate or _default_evaluate
    rank, world = launched_world()
    if world > 1 and rank != 0:
        return _follow(evaluate, db)
    tell = ranks.session().broadcast_object if world > 1 else (lambda paths: paths)
    done: set[str] = set()
    last = None
    polls = 0
    try:
        with _ctrl_c_stops():
            echo(f"watching {run_dir} every {interval:g} s for new checkpoints (Ctrl-C stops); report: "
                 f"{out / 'index.html'}")
            while True:
                if not run_dir.is_dir():
                    raise GptlabError(f"run directory {run_dir} is gone (deleted or moved); stopped watching")
                new = [r for r in _complete_checkpoints(run_dir) if str(r.path) not in done]
                tell([str(r.path) for r in new])
                if new:
                    echo(f"new checkpoint{'s' if len(new) > 1 else ''}: " + ", ".join(r.label for r in new))
                    try:
                        evaluate([str(r.path) for r in new], db=db)
                        if tracked.specs:
                            tracked.log([str(r.path) for r in new], db)
                    except GptlabError as e:
                        echo(f"gptlab: error: {e} (skipping; watching on)")
                    done.update(str(r.path) for r in new)
                    last = _refresh(run_dir, db, out)
                    echo(f"report refreshed: {last['html']}")
                polls += 1
                if max_polls is not None and polls >= max_polls:
                    break
                sleep(interval)
    except (_Stop, KeyboardInterrupt):
        echo("stopped watching; " + (f"the report is at {last['html']}" if last else
                                     f"no report written yet (`gptlab report {run_dir} --db {db}` writes one "
                                     f"from what is stored)"))
    finally:
        tell(None)                      # the other ranks return
        tracked.close()
    return 0


def _follow(evaluate, db: str) -> int:
    """A rank other than 0: evaluate, together with the others, what rank 0 found, until it sends None."""
    dist = ranks.session()
    while (paths := dist.broadcast_object(None)) is not None:
        if paths:
            try:
                evaluate(paths, db=db)
            except GptlabError:
                pass                    # rank 0 says it and watches on
    return 0
