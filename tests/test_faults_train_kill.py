"""Fault injection: training killed with SIGKILL at several points (while a checkpoint is half-written in its
temporary folder, in the middle of a step, halfway through writing a metrics line, after N metrics lines), then
`--resume`d to the end, gives the losses and the final weights of an uninterrupted run.

    python -m pytest -m slow tests/test_faults_train_kill.py
"""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY
from gptlab.checkpoints import discover, load
from gptlab.checkpoints.gptlab_run import read_metrics

COMMON = ["--set", "train.steps=12", "--set", "train.save_every=3", "--set", "train.eval_every=6"]

# Runs `gptlab ARGS` in this process after arranging for it to SIGKILL itself at one point:
#   save:N   right after step N's weights are written into its temporary checkpoint folder
#   step:N   in the middle of step N (gradients computed, the optimizer not yet stepped)
#   metrics:N  halfway through writing step N's line of metrics.jsonl (a torn last line)
#   slow     no kill; each step sleeps 0.25 s, so that the test can kill it from outside after N lines
DRIVER = r"""
import os, signal, sys, time
import torch
from gptlab.checkpoints import gptlab_run
from gptlab import train
from gptlab.cli import main

fault, args = sys.argv[1], sys.argv[2:]
kind, _, arg = fault.partition(":")
current = {"step": None}
real_step = train.Trainer.train_step

def train_step(self, step):
    current["step"] = step + 1
    if kind == "slow":
        time.sleep(0.5)
    return real_step(self, step)
train.Trainer.train_step = train_step

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if kind == "save":
    real_save = gptlab_run.save_file
    def save_file(state, path, metadata=None):
        real_save(state, path, metadata=metadata)
        if f".tmp-step_{int(arg):06d}" in str(path):
            die()
    gptlab_run.save_file = save_file
elif kind == "step":
    real_clip = torch.nn.utils.clip_grad_norm_
    def clip(params, max_norm, *a, **k):
        if current["step"] == int(arg):
            die()
        return real_clip(params, max_norm, *a, **k)
    torch.nn.utils.clip_grad_norm_ = clip
elif kind == "metrics":
    class TornLog:
        def __init__(self, f):
            self.f = f
        def write(self, s):
            if s.startswith('{"step": %d,' % int(arg)):
                self.f.write(s[: len(s) // 2])
                self.f.flush()
                die()
            return self.f.write(s)
        def __getattr__(self, name):
            return getattr(self.f, name)
    def open_log(path, mode="r", *a, **k):
        f = open(path, mode, *a, **k)
        return TornLog(f) if str(path).endswith("metrics.jsonl") and "a" in mode else f
    train.open = open_log
sys.exit(main(args))
"""


def gptlab_with_fault(fault, *args, wait=True):
    cmd = [sys.executable, "-c", DRIVER, fault, *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def losses(run_dir):
    return {m["step"]: m["train_loss"] for m in read_metrics(run_dir)}


def assert_every_checkpoint_whole(run_dir):
    for ref in discover(run_dir):
        load(ref)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    clean = tmp_path / "clean"
    r = gptlab_with_fault("none", "train", TINY, "--out", clean, *COMMON)
    assert r.returncode == 0, r.stderr

    run = tmp_path / "killed"
    # 1. killed while step 6's checkpoint is half-written: its temporary folder stays, step_000006 does not exist
    r = gptlab_with_fault("save:6", "train", TINY, "--out", run, *COMMON)
    assert r.returncode == -signal.SIGKILL, r.stderr
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [".tmp-step_000006", "step_000003"], names
    assert [ref.step for ref in discover(run)] == [3]
    assert_every_checkpoint_whole(run)

    # 2. resumed from step 3, killed in the middle of step 8 (after step 6's checkpoint was written)
    r = gptlab_with_fault("step:8", "train", TINY, "--out", run, "--resume", *COMMON)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert [ref.step for ref in discover(run)] == [3, 6]
    assert max(losses(run)) == 7
    assert_every_checkpoint_whole(run)

    # 3. resumed from step 6, killed halfway through writing step 10's metrics line
    r = gptlab_with_fault("metrics:10", "train", TINY, "--out", run, "--resume", *COMMON)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not (run / "metrics.jsonl").read_text().endswith("\n")
    assert [ref.step for ref in discover(run)] == [3, 6, 9]

    # 4. resumed from step 9 (one warning: the torn line is dropped), killed from outside once 11 steps are logged
    proc = gptlab_with_fault("slow", "train", TINY, "--out", run, "--resume", *COMMON, wait=False)
    deadline = time.time() + 120
    while len((run / "metrics.jsonl").read_text().splitlines()) < 11:
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    warnings = [w for w in err.splitlines() if w.startswith("gptlab: warning:")]
    assert len(warnings) == 1 and "torn" in warnings[0], err
    assert [ref.step for ref in discover(run)] == [3, 6, 9]
    assert_every_checkpoint_whole(run)

    # 5. resumed to the end
    r = gptlab_with_fault("none", "train", TINY, "--out", run, "--resume", *COMMON)
    assert r.returncode == 0, r.stderr
    assert not [w for w in r.stderr.splitlines() if "warning" in w], r.stderr

    a, b = losses(clean), losses(run)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-6), step
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["step_000003", "step_000006", "step_000009", "step_000012"], names
    wa = load_file(str(clean / "checkpoints/step_000012/model.safetensors"))
    wb = load_file(str(run / "checkpoints/step_000012/model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    meta_a = json.loads((clean / "checkpoints/step_000012/meta.json").read_text())
    meta_b = json.loads((run / "checkpoints/step_000012/meta.json").read_text())
    assert meta_b["val_bpb"] == meta_a["val_bpb"]
