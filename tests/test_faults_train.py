"""Training under faults: stale artefacts of a failed run, --resume on damaged state, two trainings into one
run directory, a full disk while saving. Each ends in a whole run or one line on stderr (exit 2).

    python -m pytest tests/test_faults_train.py
"""

import contextlib
import errno
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY
from gptlab import cli
from gptlab.checkpoints import discover, load
from gptlab.checkpoints.gptlab_run import read_metrics
from gptlab.config import load_config
from gptlab.data import prepare_domains
from gptlab.distributed import Dist
from gptlab.resume import get_tokenizer
from gptlab.tokenizer import load_tokenizer

SHORT = ["--set", "train.steps=2", "--set", "train.save_every=2", "--set", "train.eval_every=2"]
CORPUS = ROOT / "gptlab" / "corpus"


def gptlab_here(*args):
    """`gptlab ARGS` in this process (no interpreter start-up to pay): returncode and stderr, as conftest's
    run_gptlab gives them."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in args])
    return SimpleNamespace(returncode=rc, stderr=err.getvalue(), stdout="")


def stderr_lines(r):
    """What gptlab says (progress lines, "step 4/8 ...", are not messages)."""
    return [ln for ln in r.stderr.strip().splitlines() if ln.startswith("gptlab:")]


def one_line_error(r):
    lines = stderr_lines(r)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(lines) == 1 and lines[0].startswith("gptlab: error:"), r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr, r.stderr
    return lines[0]


def warnings_of(r):
    return [ln for ln in stderr_lines(r) if ln.startswith("gptlab: warning:")]


def _one_domain_config(tmp_path, src: Path) -> Path:
    p = tmp_path / "one.toml"
    p.write_text(TINY.read_text().split("[[data.domains]]")[0] +
                 f'[[data.domains]]\nname = "d"\ntrain = ["{src}"]\nval = ["{src}"]\n')
    return p


# ------------------------------------------------------------------ 1. artefacts record what made them


def test_a_failed_run_leaves_no_tokenizer_and_the_rerun_trains_a_proper_one(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text("")
    cfg, out = _one_domain_config(tmp_path, src), tmp_path / "run"
    assert "no text" in one_line_error(gptlab_here("train", cfg, "--out", out, *SHORT))
    assert not (out / "tokenizer" / "tokenizer.json").exists()
    shutil.copy(CORPUS / "code_python.val.jsonl", src)
    r = gptlab_here("train", cfg, "--out", out, *SHORT)
    assert r.returncode == 0, r.stderr
    assert load_tokenizer(out / "tokenizer").vocab_size == 512        # not the 257-id tokenizer of no text


def test_tokenizer_and_token_caches_are_rebuilt_when_what_made_them_changes(tmp_path):
    dist = Dist(0, 1, 0, torch.device("cpu"))
    src = tmp_path / "data.jsonl"
    shutil.copy(CORPUS / "code_python.val.jsonl", src)
    cfg_path, run = _one_domain_config(tmp_path, src), tmp_path / "run"
    small = ["tokenizer.train_chars=20000", "model.vocab_size=300"]
    tok, path = get_tokenizer(load_config(cfg_path, small), run, dist)
    made = path.stat().st_mtime_ns
    again, _ = get_tokenizer(load_config(cfg_path, small), run, dist)
    assert again.identity() == tok.identity() and path.stat().st_mtime_ns == made        # reused, not retrained
    bigger, _ = get_tokenizer(load_config(cfg_path, ["tokenizer.train_chars=20000", "model.vocab_size=320"]),
                              run, dist)
    assert bigger.vocab_size == 320
    more, _ = get_tokenizer(load_config(cfg_path, ["tokenizer.train_chars=40000", "model.vocab_size=320"]),
                            run, dist)
    assert more.identity() != bigger.identity()
    lines = src.read_text().splitlines(keepends=True)
    src.write_text("".join(lines[: len(lines) // 2]))                      # the corpus changed
    changed, _ = get_tokenizer(load_config(cfg_path, ["tokenizer.train_chars=40000", "model.vocab_size=320"]),
                               run, dist)
    assert changed.identity() != more.identity()
    # a tokenizer.json edited behind the record's back is not trusted either
    spec = json.loads(path.read_text())
    spec["added_tokens"][0]["content"] = "<|other|>"
    path.write_text(json.dumps(spec))
    fixed, _ = get_tokenizer(load_config(cfg_path, ["tokenizer.train_chars=40000", "model.vocab_size=320"]),
                             run, dist)
    assert fixed.identity() == changed.identity()


def test_a_truncated_token_cache_is_rebuilt(tmp_path, tiny_run):
    cfg = load_config(TINY)
    tok = load_tokenizer(tiny_run / "tokenizer")
    shutil.copytree(tiny_run / "tokens", tmp_path / "tokens")
    want = prepare_domains(cfg.data, tok, tmp_path / "tokens")
    for i, f in enumerate(sorted((tmp_path / "tokens").glob("*.npy"))):
        f.write_bytes(f.read_bytes()[: [40, 200, 1000, 0][i % 4]])
    got = prepare_domains(cfg.data, tok, tmp_path / "tokens")
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.val, b.val)
    assert [np.load(f).size > 0 for f in (tmp_path / "tokens").glob("*.npy")] == [True] * 4


# ------------------------------------------------------------------ 2. --resume on damaged state


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    return run


MORE = ["--set", "train.steps=12"]


def test_resume_ignores_a_torn_last_metrics_line_with_one_warning(run_copy):
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "train_loss": 4.9')                  # killed while writing step 9's line
    r = gptlab_here("train", TINY, "--out", run_copy, "--resume", *MORE)
    assert r.returncode == 0, r.stderr
    (w,) = warnings_of(r)
    assert "metrics.jsonl" in w and "torn" in w, w
    assert sorted(m["step"] for m in read_metrics(run_copy)) == list(range(1, 13))


def test_reading_metrics_skips_a_torn_last_line(run_copy):
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "tra')
    assert [m["step"] for m in read_metrics(run_copy)] == list(range(1, 9))


def test_resume_falls_back_past_a_truncated_latest_checkpoint(run_copy):
    weights = run_copy / "checkpoints" / "step_000008" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    r = gptlab_here("train", TINY, "--out", run_copy, "--resume", *MORE)
    assert r.returncode == 0, r.stderr
    (w,) = warnings_of(r)
    assert "step_000008" in w and "model.safetensors" in w and "step_000004" in w, w
    assert [ref.step for ref in discover(run_copy)] == [4, 8, 12]
    assert load(discover(run_copy)[1]).info.step == 8                  # re-trained and whole again
    assert sorted(m["step"] for m in read_metrics(run_copy)) == list(range(1, 13))


def test_resume_with_every_checkpoint_damaged_is_one_line(run_copy):
    for d in (run_copy / "checkpoints").iterdir():
        (d / "trainer.pt").write_bytes(b"garbage")
    before = (run_copy / "run.json").read_bytes()
    msg = one_line_error(gptlab_here("train", TINY, "--out", run_copy, "--resume", *MORE))
    assert "step_000004" in msg and "trainer.pt" in msg
    assert (run_copy / "run.json").read_bytes() == before


def test_resume_with_another_model_shape_names_the_keys_in_one_line(run_copy):
    run_json, metrics = (run_copy / "run.json").read_bytes(), (run_copy / "metrics.jsonl").read_bytes()
    msg = one_line_error(gptlab_here("train", TINY, "--out", run_copy, "--resume", *MORE,
                                    "--set", "model.depth=2", "--set", "model.n_embd=128"))
    assert "n_layer 1 -> 2" in msg and "n_embd 64 -> 128" in msg and "model.depth" in msg, msg
    assert (run_copy / "run.json").read_bytes() == run_json                 # nothing rewritten before failing
    assert (run_copy / "metrics.jsonl").read_bytes() == metrics


def test_resume_rebuilds_truncated_token_caches(run_copy):
    caches = sorted((run_copy / "tokens").glob("*.npy"))
    caches[0].write_bytes(caches[0].read_bytes()[:300])
    r = gptlab_here("train", TINY, "--out", run_copy, "--resume", *MORE)
    assert r.returncode == 0, r.stderr
    (w,) = warnings_of(r)
    assert caches[0].name in w and "rebuil" in w, w
    assert np.load(caches[0]).size > 100


def test_already_trained_does_not_rewrite_run_json(run_copy):
    before = (run_copy / "run.json").read_bytes()
    msg = one_line_error(gptlab_here("train", TINY, "--out", run_copy, "--resume", "--set", "train.eval_every=2"))
    assert "already trained to step 8" in msg
    assert (run_copy / "run.json").read_bytes() == before


# ------------------------------------------------------------------ 3. one training per run directory


def test_a_second_training_into_a_busy_run_directory_names_the_holder(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "gptlab", "train", str(TINY), "--out", str(out),
                              "--set", "train.steps=400", "--set", "train.save_every=400"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / ".lock").exists() or str(first.pid) not in (out / ".lock").read_text():
            assert first.poll() is None, first.stderr.read()
            assert time.time() < deadline
            time.sleep(0.02)
        msg = one_line_error(gptlab_here("train", TINY, "--out", out, "--resume"))
        assert f"pid {first.pid}" in msg and os.uname().nodename in msg and "since" in msg, msg
    finally:
        first.send_signal(signal.SIGKILL)                      # kill -9: the lock dies with the process
        first.wait()
    r = gptlab_here("train", TINY, "--out", out, "--resume", *SHORT)
    assert r.returncode == 0, r.stderr
    assert [ref.step for ref in discover(out)] == [2]


def test_the_lock_is_an_flock_on_the_run_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        msg = one_line_error(gptlab_here("train", TINY, "--out", out, *SHORT))
        assert "in use" in msg
    assert not (out / "run.json").exists()


# ------------------------------------------------------------------ 4. disk full while saving


def _assert_whole_run_after_enospc(out, msg, file_name):
    assert "ENOSPC" in msg and file_name in msg, msg
    ckpts = out / "checkpoints"
    assert not [p.name for p in ckpts.iterdir() if not p.name.startswith("step_")]   # no temporary folder
    assert [ref.step for ref in discover(out)] == [4]
    load(discover(out)[0])                                    # the earlier checkpoint is whole


@pytest.mark.parametrize("which", ["model.safetensors", "trainer.pt", "meta.json"])
def test_disk_full_while_saving_is_one_line_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, capsys, which):
    """ENOSPC injected into the second checkpoint's write of `which` (in-process, through the CLI's main):
    safetensors reports it as its own error type with the OS error number, the other files as OSError."""
    from safetensors import SafetensorError
    from gptlab import cli
    from gptlab.checkpoints import gptlab_run

    def second_save(path):
        return Path(path).name == which and "step_000008" in str(path)
    real_save_file, real_open = gptlab_run.save_file, gptlab_run.open_for_writing

    def full_disk_save_file(state, path, metadata=None):
        if not second_save(path):
            return real_save_file(state, path, metadata=metadata)
        Path(path).write_bytes(b"\0" * 100)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def full_disk_open(path):
        f = real_open(path)
        if second_save(path):
            real_write = f.raw_write

            def write(data):
                real_write(bytes(data)[:10])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            f.raw_write = write
        return f
    monkeypatch.setattr(gptlab_run, "save_file", full_disk_save_file)
    monkeypatch.setattr(gptlab_run, "open_for_writing", full_disk_open)
    out = tmp_path / "run"
    assert cli.main(["train", str(TINY), "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("gptlab:")]
    assert len(err) == 1, err
    _assert_whole_run_after_enospc(out, err[0], which)


@pytest.fixture
def small_tmpfs(tmp_path):
    mounted = []

    def mount(size_kb):
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        if subprocess.run(["umount", str(d)]).returncode:
            subprocess.run(["umount", "-l", str(d)])


@pytest.mark.parametrize("size_kb, which", [(1700, "model.safetensors"), (2150, "trainer.pt")])
def test_disk_full_on_a_real_small_filesystem(small_tmpfs, size_kb, which):
    fs = small_tmpfs(size_kb)
    out = fs / "run"
    msg = one_line_error(gptlab_here("train", TINY, "--out", out))
    _assert_whole_run_after_enospc(out, msg, which)
