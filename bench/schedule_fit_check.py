"""Does the schedule-aware loss law predict a real run's warmdown better than a plain power law? (CPU, ~4 min)

    PYTHONPATH=. python bench/schedule_fit_check.py [--steps 240] [--warmdown 0.7] [--keep RUN_DIR]

Trains the demo model (gptlab/presets/demo.toml, one thread) for `--steps` steps with a 10-step warmup and a
linear warmdown over the last `--warmdown` fraction of the steps to 0, measuring val bpb every 10 steps.
Then both laws are fitted on the first half of the val points and asked for the second half:

* schedule-aware: L = L0 + A*S1^-alpha - C*S2 (gptlab/stats/schedule_fit.py), S1 and S2 from the run's
  schedule rebuilt by gptlab/schedule.py, lambda fitted (and, for comparison, fixed at 0.9, 0.99, 0.999);
* plain: bpb = a + b*t^-c over steps (gptlab/stats/trend.py's fit_power_law).

Identifiability: C is only seen where the rate already falls, so the warmdown must begin inside the first
half: with 240 steps and a warmdown of 0.7 it begins at step 72, and 5 of the first half's 12 val points lie
in it. Prints the mean absolute and max error over the held-out half for both, side by side, then the verdicts
on the whole curve (docs/convergence.md holds a run's output). Test of the law itself: tests/test_schedule_fit.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gptlab.config import load_config
from gptlab.schedule import Schedule
from gptlab.stats.schedule_fit import fit_schedule_law
from gptlab.stats.trend import fit_power_law, trend
from gptlab.train import train


def val_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    pts = sorted((r["step"], r["val_bpb"]) for r in rows if r.get("val_bpb") is not None and r["step"] > 0)
    return [s for s, _ in pts], [v for _, v in pts]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--warmdown", type=float, default=0.7)
    ap.add_argument("--keep", type=Path, help="train into this run directory and keep it (default: a temp dir)")
    args = ap.parse_args()
    overrides = [f"train.steps={args.steps}", "train.warmup_steps=10", f"train.warmdown_frac={args.warmdown}",
                 "train.final_lr_frac=0.0", "train.eval_every=10", f"train.save_every={args.steps}",
                 "train.threads=1"]
    cfg = load_config("demo", overrides=overrides)
    tmp = None if args.keep else Path(tempfile.mkdtemp(prefix="schedfit-"))
    run_dir = args.keep or tmp / "run"
    try:
        t0 = time.perf_counter()
        train(cfg, run_dir, progress=False)
        took = time.perf_counter() - t0
        steps, y = val_curve(run_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    tc = cfg.train
    sched = Schedule(tc.steps, tc.warmup_steps, tc.warmdown_frac, tc.final_lr_frac)
    print(f"trained demo preset, {tc.steps} steps (warmup {tc.warmup_steps}, warmdown {tc.warmdown_frac:.0%} from "
          f"step {tc.steps - sched.warmdown_steps}), val every {tc.eval_every}: {len(steps)} points, {took:.0f} s")
    print("val bpb:", " ".join(f"{s}:{v:.4f}" for s, v in zip(steps, y)))
    half = len(steps) // 2
    fs, fy, ps, py = steps[:half], y[:half], np.array(steps[half:]), np.array(y[half:])
    print(f"fit on steps {fs[0]}-{fs[-1]} ({half} points, {sum(s > tc.steps - sched.warmdown_steps for s in fs)} "
          f"in the warmdown); predict steps {ps[0]}-{ps[-1]} ({len(ps)} points)")
    law, why = fit_schedule_law(fs, fy, sched)
    if law is None:
        print(f"schedule-aware law not fitted: {why}")
        return 1
    plain = fit_power_law(fs, fy)
    err_law = np.abs(law(ps) - py)
    err_plain = np.abs(plain(ps) - py)
    print(f"schedule-aware (lambda {law.lam}): L0 {law.L0:.4f}  A {law.A:.4f}  alpha {law.alpha:.3f}  C {law.C:.3g}  "
          f"rmse on fitted {law.rmse:.4f}")
    print(f"plain power law: a {plain.a:.4f}  b {plain.b:.4g}  c {plain.c:.3f}  rmse on fitted {plain.rmse:.4f}")
    print(f"{'held-out error (bpb)':<24}{'schedule-aware':>16}{'plain power law':>18}")
    print(f"{'mean absolute':<24}{err_law.mean():>16.4f}{err_plain.mean():>18.4f}")
    print(f"{'max':<24}{err_law.max():>16.4f}{err_plain.max():>18.4f}")
    print(f"{'at the last step':<24}{err_law[-1]:>16.4f}{err_plain[-1]:>18.4f}")
    for lam in (0.9, 0.99, 0.999):               # lambda fixed instead of fitted (0.999: the paper's value)
        fixed, _ = fit_schedule_law(fs, fy, sched, lam=lam, bootstrap=0)
        e = np.abs(fixed(ps) - py)
        print(f"  lambda fixed at {lam:<5}: held-out mean {e.mean():.4f}  max {e.max():.4f}  "
              f"(rmse on fitted {fixed.rmse:.4f})")
    print(f"final bpb {py[-1]:.4f}: schedule-aware predicted {law.final:.4f} "
          f"[{law.intervals['final'][0]:.4f}, {law.intervals['final'][1]:.4f}], plain {float(plain(ps[-1])):.4f}")
    whole = trend(steps, y, unit="steps", steps=steps, schedule=sched, use_schedule=True)
    plain_whole = trend(steps, y, unit="steps")
    print(f"whole curve: plain slope rule says {plain_whole.verdict}; schedule-aware verdict {whole.verdict}")
    if whole.law is not None:
        w = whole.law
        print(f"  law on all {w.n} points: L0 {w.L0:.4f} alpha {w.alpha:.3f}; 2x same schedule {w.longer:.4f} "
              f"[{w.intervals['longer'][0]:.4f}, {w.intervals['longer'][1]:.4f}], 2x constant rate "
              f"{w.constant:.4f}, gain {w.gain:.4f} [{w.intervals['gain'][0]:.4f}, {w.intervals['gain'][1]:.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
