"""`gptlab demo`: the whole pipeline on the sample corpus, on CPU, in a few minutes.

    gptlab demo                 # -> demo_run/run (checkpoints), demo_run/results.sqlite, demo_run/report/
    python -m pytest tests/test_cli_demo.py

1. trains the `demo` preset (a 2-layer, 128-wide GPT with a 2,048-token BPE trained on the spot) on the seven
   domains shipped in gptlab/corpus, saving a checkpoint every 40 steps;
2. evaluates every checkpoint: bits per byte on each domain's held-out text, the default probe suite sampled
   at temperature 0.8 (2 samples, 40 and 120 tokens), and the diagnosis of every sample;
3. writes the report (Markdown + a self-contained HTML page) and prints where to open it.
Running it again reuses the trained run and every stored result (say --fresh to start over).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from gptlab.checkpoints.gptlab_run import list_step_dirs
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.evaluate.job import evaluate
from gptlab.report import write_report
from gptlab.store import Store
from gptlab.train import train

DEMO_EVAL = dict(temperatures=(0.8,), max_tokens=(40, 120), samples=2, seed=0, threads=1)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_demo(out: str | Path = "demo_run", fresh: bool = False) -> Path:
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    run_dir, db, report_dir = out / "run", out / "results.sqlite", out / "report"
    t0 = time.time()
    cfg = load_config("demo")
    done = list_step_dirs(run_dir / "checkpoints")
    if done and done[-1].name == f"step_{cfg.train.steps:06d}":
        say(f"[1/3] training: reusing {run_dir} ({len(done)} checkpoints)")
    else:
        say(f"[1/3] training the demo model on {len(cfg.data.domains)} domains ({cfg.train.steps} steps) ...")
        train(cfg, run_dir, resume=bool(done))
    t1 = time.time()
    say(f"      {t1 - t0:.0f} s")

    say("[2/3] evaluating every checkpoint (bpb per domain, probes, diagnosis) ...")
    evaluate([str(run_dir)], db=str(db), **DEMO_EVAL)
    t2 = time.time()
    say(f"      {t2 - t1:.0f} s")

    say("[3/3] writing the report ...")
    store = Store(db)
    try:
        write_report(store, [str(run_dir)], report_dir)
    finally:
        store.close()
    say(f"      {time.time() - t2:.0f} s (total {time.time() - t0:.0f} s)")
    html = Path(report_dir) / "index.html"
    if not html.exists():
        raise GptlabError(f"{html}: the report was not written")
    print(f"report: {html.resolve()}")
    print(f"        {(Path(report_dir) / 'report.md').resolve()}")
    return html
