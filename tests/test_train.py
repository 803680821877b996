"""Training end to end on CPU: checkpoints, resume after SIGKILL, DDP with gloo, NaN stop, bad input."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY, run_gptlab
from gptlab.checkpoints import discover, load
from gptlab.config import load_config
from gptlab.checkpoints.gptlab_run import read_metrics


def losses(run_dir):
    return {m["step"]: m["train_loss"] for m in read_metrics(run_dir)}


def test_tiny_run_writes_complete_checkpoints(tiny_run):
    steps = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    assert steps == ["step_000004", "step_000008"]
    for name in steps:
        d = tiny_run / "checkpoints" / name
        assert {p.name for p in d.iterdir()} == {"model.safetensors", "config.json", "meta.json",
                                                   "tokenizer.json", "trainer.pt"}
        meta = json.loads((d / "meta.json").read_text())
        for key in ("step", "tokens_seen", "val_bpb", "val_bpb_domains", "train_loss", "tokenizer_hash",
                    "data", "gptlab_version"):
            assert key in meta, key
        assert meta["tokens_seen"] == meta["step"] * 512
        assert set(meta["val_bpb_domains"]) == {"code_python", "web_en"}
    ls = losses(tiny_run)
    assert ls[8] < ls[1] - 0.5          # it learns something in 8 steps
    refs = discover(tiny_run)
    assert [r.step for r in refs] == [4, 8]
    loaded = load(refs[-1])
    assert loaded.info.tokens_seen == 8 * 512 and loaded.info.params == loaded.model.num_params()


def test_loaded_checkpoint_reproduces_training_val_bpb(tiny_run):
    """The saved weights are the trained weights: recomputing val bpb from the checkpoint matches meta."""
    from gptlab.data import prepare_domains
    from gptlab.distributed import Dist
    from gptlab.train import evaluate_val
    cfg = load_config(TINY)
    ref = discover(tiny_run)[-1]
    m = load(ref)
    domains = prepare_domains(cfg.data, m.tokenizer, tiny_run / "tokens")
    overall, per = evaluate_val(m.model, domains, m.tokenizer.token_bytes(), 64, cfg.train.eval_tokens, 4,
                                torch.device("cpu"), torch.autocast("cpu", enabled=False), Dist(0, 1, 0, "cpu"))
    assert overall == pytest.approx(m.info.meta["val_bpb"], rel=1e-5)


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    common = ["--set", "train.steps=12", "--set", "train.save_every=3", "--set", "train.eval_every=6"]
    full = tmp_path / "full"
    r = run_gptlab("train", TINY, "--out", full, *common)
    assert r.returncode == 0, r.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gptlab", "train", str(TINY), "--out", str(killed), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step_000006").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert "step_000012" not in done
    r = run_gptlab("train", TINY, "--out", killed, "--resume", *common)
    assert r.returncode == 0, r.stderr
    a, b = losses(full), losses(killed)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-6), step
    meta_a = json.loads((full / "checkpoints/step_000012/meta.json").read_text())
    meta_b = json.loads((killed / "checkpoints/step_000012/meta.json").read_text())
    assert meta_b["val_bpb"] == pytest.approx(meta_a["val_bpb"], rel=1e-6)


def test_resume_without_flag_refuses_and_keeps_run(tiny_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    r = run_gptlab("train", TINY, "--out", run)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = run_gptlab("train", TINY, "--out", run, "--resume")
    assert r.returncode == 2 and "already trained to step 8" in r.stderr


@pytest.mark.slow
def test_ddp_two_processes_gloo_matches_single_process(tmp_path):
    common = ["--set", "train.steps=4", "--set", "train.save_every=4", "--set", "train.eval_every=4"]
    single = tmp_path / "single"
    assert run_gptlab("train", TINY, "--out", single, *common).returncode == 0
    ddp = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                        "-m", "gptlab", "train", str(TINY), "--out", str(ddp), *common],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    run = json.loads((ddp / "run.json").read_text())
    assert run["world_size"] == 2
    a, b = losses(single), losses(ddp)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:   # same global batch, gradients averaged over ranks: equal up to reduction order
        assert b[step] == pytest.approx(a[step], rel=1e-3), step
    assert (ddp / "checkpoints" / "step_000004").is_dir()


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    r = run_gptlab("train", TINY, "--out", out, "--set", "train.steps=8", "--set", "train.save_every=2",
                   "--set", "train.embedding_lr=1e30", "--set", "train.unembedding_lr=1e30",
                   "--set", "train.warmup_steps=0", "--set", "train.grad_clip=0")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("gptlab: error: loss became nan at step")
    bad_step = int(line.split("at step ")[1].split(";")[0])
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert all(int(n.split("_")[1]) < bad_step for n in kept)
    assert not any(n.startswith(".tmp") for n in kept)
    for n in kept:
        meta = json.loads((out / "checkpoints" / n / "meta.json").read_text())
        assert math.isfinite(meta["train_loss"])


def _write_config(tmp_path, data_lines, extra=""):
    cfg = TINY.read_text().split("[[data.domains]]")[0] + extra + data_lines
    p = tmp_path / "c.toml"
    p.write_text(cfg)
    return p


@pytest.mark.parametrize("case", ["missing", "empty", "undecodable", "unknown_key", "bad_jsonl"])
def test_bad_corpus_and_config_give_one_line_errors(tmp_path, case):
    src = tmp_path / "data.jsonl"
    extra = ""
    if case == "empty":
        src.write_text("")
    elif case == "undecodable":
        src = tmp_path / "data.txt"
        src.write_bytes(b"hello\n\xff\xfe world")
    elif case == "bad_jsonl":
        src.write_text('{"text": "ok"}\n{not json}\n')
    elif case == "unknown_key":
        src.write_text('{"text": "hello world"}\n')
        extra = "[train]\nstepz = 3\n"
    cfg = _write_config(tmp_path, f'[[data.domains]]\nname = "d"\ntrain = ["{src}"]\nval = ["{src}"]\n')
    if extra:
        cfg.write_text(cfg.read_text().replace("[train]\n", "[train]\nstepz = 3\n", 1))
    out = tmp_path / "run"
    r = run_gptlab("train", cfg, "--out", out)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gptlab: error:"), err
    expect = {"missing": "not found", "empty": "no text", "undecodable": "not UTF-8 text at line 2",
              "unknown_key": "unknown key 'stepz'", "bad_jsonl": ":2: not valid JSON"}[case]
    assert expect in err
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


def test_tokenizer_vocab_larger_than_model_is_refused(tiny_run, tmp_path):
    r = run_gptlab("train", TINY, "--out", tmp_path / "r", "--set",
                   f'tokenizer.path="{tiny_run / "tokenizer" / "tokenizer.json"}"', "--set", "model.vocab_size=300")
    assert r.returncode == 2 and "do not match" in r.stderr


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_gptlab("train", TINY, "--out", blocker / "run")
    assert r.returncode == 2 and "not writable" in r.stderr and "Traceback" not in r.stderr


def test_unknown_preset_lists_presets():
    r = run_gptlab("train", "no-such-preset")
    assert r.returncode == 2 and "demo" in r.stderr


def test_the_same_weights_saved_by_two_processes_have_the_same_bytes(tmp_path):
    """The store keys a model by its weights file's content hash, so saving must be reproducible across
    processes (safetensors wrote a two-key header in a per-process order before)."""
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    code = ("import sys, torch; from pathlib import Path; from gptlab.models.gpt import GPT, GPTConfig; "
            "from gptlab.checkpoints.gptlab_run import save_checkpoint; torch.manual_seed(0); "
            "m = GPT(GPTConfig(n_layer=1, n_embd=32, n_head=2, n_kv_head=2, vocab_size=64, sequence_len=16)); "
            "save_checkpoint(Path(sys.argv[1]), 1, m, [], {'step': 1}, {}, Path(sys.argv[2]))")
    files = []
    for name in ("a", "b", "c"):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / name), str(tok)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        files.append((tmp_path / name / "checkpoints" / "step_000001" / "model.safetensors").read_bytes())
    assert files[0] == files[1] == files[2]
