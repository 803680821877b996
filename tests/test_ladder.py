"""`gptlab ladder`: the plan (parameters, tokens, steps), its one-line errors, a tiny ladder end to end, resume.

    python -m pytest tests/test_ladder.py        (~1 min on 2 busy CPU cores)
"""

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TWO_PROBES, run_gptlab
from gptlab.commands.ladder import flag_overrides
from gptlab.commands.ladder_plan import budget_of, count_params, plan_ladder
from gptlab.config import load_config
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent

# Three depths of a model small enough to train a few steps each in about a second.
LADDER = """name = "tl"
[model]
depth = 1
n_embd = 32
head_dim = 16
vocab_size = 300
sequence_len = 32
[tokenizer]
train_chars = 30000
[train]
total_batch_tokens = 256
device_batch_size = 8
warmup_steps = 2
eval_tokens = 256
threads = 1
[ladder]
axis = "model.depth"
values = [1, 2, 3]
tokens_per_param = 0.1
[[data.domains]]
name = "web_en"
group = "general"
train = ["gptlab:corpus/demo/web_en.val.jsonl"]
val = ["gptlab:corpus/demo/web_en.val.jsonl"]
"""


@pytest.fixture
def ladder_toml(tmp_path):
    p = tmp_path / "tl.toml"
    p.write_text(LADDER)
    return p


@pytest.fixture
def suite(tmp_path):
    p = tmp_path / "two.toml"
    p.write_text(f'name = "two"\nversion = "1"\n\n{TWO_PROBES}')
    return p


# ---------------------------------------------------------------- planning


def test_params_are_those_of_the_built_model(ladder_toml, tmp_path):
    rungs = plan_ladder(load_config(ladder_toml), tmp_path)
    assert [r.name for r in rungs] == ["tl-depth1", "tl-depth2", "tl-depth3"]
    for r in rungs:
        torch.manual_seed(0)
        model = GPT(GPTConfig.from_model_config(r.config.model))
        assert r.params == model.num_params()
        assert r.non_embedding_params == model.num_params() - model.transformer.wte.weight.numel()
        assert r.flops_per_token == model.flops_per_token()
        assert r.run_dir == tmp_path / r.name and r.config.name == r.name
    assert rungs[0].params < rungs[1].params < rungs[2].params


def test_steps_and_checkpoints_follow_the_budget(ladder_toml, tmp_path):
    for r in plan_ladder(load_config(ladder_toml), tmp_path):
        assert r.steps == math.ceil(0.1 * r.non_embedding_params / 256)
        assert r.tokens == r.steps * 256 >= 0.1 * r.non_embedding_params
        assert r.config.train.steps == r.steps
        assert r.config.train.save_every == r.config.train.eval_every == math.ceil(r.steps / 4)
        assert r.flops == r.flops_per_token * r.tokens
        assert r.row()["budget"] == {"tokens_per_param": 0.1}
    cfg = load_config(ladder_toml, flag_overrides(flops=5e8))
    assert budget_of(cfg) == {"flops": 5e8}
    for r in plan_ladder(cfg, tmp_path):
        assert r.steps == math.ceil(5e8 / r.flops_per_token / 256)
    default = load_config(ladder_toml, ["ladder.tokens_per_param=0"])
    assert budget_of(default) == {"tokens_per_param": 20.0}


def test_the_axis_value_lands_in_each_rung_and_nothing_else_changes(ladder_toml, tmp_path):
    base = load_config(ladder_toml)
    rungs = plan_ladder(base, tmp_path)
    for r, depth in zip(rungs, (1, 2, 3)):
        assert r.config.model.depth == depth and r.value == depth and r.axis == "model.depth"
        assert r.config.model.n_embd == base.model.n_embd and r.config.train.matrix_lr == base.train.matrix_lr
    assert base.model.depth == 1                              # the plan copies; the base config is untouched
    # the rungs share the first rung's tokenizer
    assert rungs[0].config.tokenizer.path == ""
    assert {r.config.tokenizer.path for r in rungs[1:]} == {str(tmp_path.resolve() / "tl-depth1/tokenizer/"
                                                                                     "tokenizer.json")}


def test_a_width_axis(ladder_toml, tmp_path):
    cfg = load_config(ladder_toml, ["model.depth=2"] + flag_overrides(axis="model.n_embd", values=[32, 64, 96]))
    rungs = plan_ladder(cfg, tmp_path)
    assert [r.name for r in rungs] == ["tl-n_embd32", "tl-n_embd64", "tl-n_embd96"]
    assert [r.config.model.width for r in rungs] == [32, 64, 96]
    assert all(r.config.model.depth == 2 for r in rungs)
    assert [r.params for r in rungs] == [count_params(r.config)[0] for r in rungs]
    assert rungs[0].params < rungs[1].params < rungs[2].params
    # a width the head size does not divide: one line naming the rung
    with pytest.raises(GptlabError, match="rung tl-n_embd40"):
        plan_ladder(load_config(ladder_toml, flag_overrides(axis="model.n_embd", values=[32, 40, 64])), tmp_path)


def test_the_preset_plans_four_rungs_whose_bpb_can_differ():
    rungs = plan_ladder(load_config("ladder-demo"), "/nonexistent")
    assert len(rungs) >= 4
    assert [r.params for r in rungs] == sorted(r.params for r in rungs)
    assert [r.tokens for r in rungs] == sorted(r.tokens for r in rungs)


# ---------------------------------------------------------------- bad input: one line, exit 2


BAD = [
    (["--axis", "model.foo"], "ladder.axis 'model.foo' is no config key (valid: model.depth, model.n_embd"),
    (["--axis", "train.dtype"], "ladder.axis 'train.dtype' is not numeric"),
    (["--axis", "train.steps"], "is set by each rung's budget"),
    (["--values", "1,2"], "a ladder needs at least 3 rungs for a fit"),
    (["--values", "1,2,2"], "ladder.values lists 2 twice"),
    (["--values", "1,3,2"], "ladder.values must be ascending"),
    (["--values", "1,2.5,3"], "must be an integer for model.depth"),
    (["--values", "1,x,3"], "--values '1,x,3': expected comma-separated numbers"),
    (["--tokens-per-param", "0.001"], "rung tl-depth1: its budget is 22 tokens, less than one step"),
    (["--tokens-per-param", "1", "--flops", "1e9"], "two budgets; give one"),
    (["--set", "ladder.flops=1e9"], "sets both tokens_per_param and flops"),
    (["--set", "ladder.bogus=1"], "unknown key 'bogus'"),
    (["--probes-on", "some"], "--probes-on 'some': expected final or all"),
    (["--samples", "0"], "--samples 0: must be at least 1"),
    (["--suite", "/nonexistent.toml"], "/nonexistent.toml"),
]


@pytest.mark.parametrize("args, expect", BAD)
def test_bad_input_is_one_line_and_exit_2(ladder_toml, tmp_path, args, expect):
    r = run_gptlab("ladder", ladder_toml, "--out", tmp_path / "out", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptlab: error:") and expect in lines[0], r.stderr
    assert not (tmp_path / "out").exists()


def test_a_config_without_data_is_one_line(tmp_path):
    p = tmp_path / "nodata.toml"
    p.write_text(LADDER.split("[[data.domains]]")[0])
    r = run_gptlab("ladder", p, "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no [[data.domains]]" in r.stderr, r.stderr


# ---------------------------------------------------------------- end to end, and resume


def store_rows(db):
    """What a ladder leaves in the store, without timestamps: rungs, bpb per (run, step, domain), samples."""
    con = sqlite3.connect(db)
    try:
        rungs = con.execute("SELECT ladder, run, axis, value, position, params, non_embedding_params, tokens, flops, "
                            "budget_json FROM ladder_rungs ORDER BY position").fetchall()
        bpb = con.execute("SELECT m.run, m.step, b.domain, b.bpb FROM bpb b JOIN models m USING (weights_hash) "
                          "ORDER BY 1, 2, 3").fetchall()
        samples = con.execute("SELECT m.run, m.step, s.probe_hash, s.sample_index, s.max_tokens, s.completion "
                              "FROM samples s JOIN models m USING (weights_hash) ORDER BY 1, 2, 3, 4, 5").fetchall()
    finally:
        con.close()
    return rungs, bpb, samples


def test_a_tiny_ladder_trains_evaluates_records_and_reports(ladder_toml, suite, tmp_path):
    out = tmp_path / "ladder"
    r = run_gptlab("ladder", ladder_toml, "--out", out, "--suite", suite, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[rung 1/3] training tl-depth1" in r.stderr and "[rung 3/3] training tl-depth3" in r.stderr
    html = out / "report" / "index.html"
    assert f"report: {html.resolve()}" in r.stdout and (out / "report" / "report.md").is_file()
    rungs, bpb, samples = store_rows(out / "results.sqlite")
    assert [(row[1], row[3], row[4]) for row in rungs] == [("tl-depth1", "1", 0), ("tl-depth2", "2", 1),
                                                          ("tl-depth3", "3", 2)]
    plan = plan_ladder(load_config(ladder_toml), out)
    for row, rung in zip(rungs, plan):
        assert row[5:8] == (rung.params, rung.non_embedding_params, rung.tokens)
        steps = sorted(d.name for d in (out / rung.name / "checkpoints").iterdir())
        assert steps[-1] == f"step_{rung.steps:06d}" and 3 <= len(steps) <= 5
        # bpb of every checkpoint; samples of the final one only (the default --probes-on final)
        assert {(run, step) for run, step, _, _ in bpb if run == rung.name} == {
            (rung.name, int(s.removeprefix("step_"))) for s in steps}
        assert {(run, step) for run, step, *_ in samples if run == rung.name} == {(rung.name, rung.steps)}
    assert len(samples) == 3 * 2 * 4 * 2        # rungs x probes x samples x lengths
    assert "## Capability by size" in (out / "report" / "report.md").read_text()
    pytest.importorskip("lm_eval")
    tasks = ROOT / "tests" / "data" / "lmeval"
    again = run_gptlab("ladder", ladder_toml, "--out", out, "--suite", suite, "--tasks", "gptlab_tiny_rolling",
                       "--include-path", tasks, "--limit", "3", timeout=300)
    assert again.returncode == 0 and again.stderr.count("reusing") == 3, again.stderr
    assert store_rows(out / "results.sqlite") == (rungs, bpb, samples)
    con = sqlite3.connect(out / "results.sqlite")
    scored = con.execute("SELECT m.run, m.step FROM benchmarks b JOIN models m USING (weights_hash) "
                         "ORDER BY 1").fetchall()
    con.close()
    assert scored == [(rung.name, rung.steps) for rung in plan]      # each rung's final checkpoint, once


def test_no_eval_trains_and_records_only(ladder_toml, tmp_path):
    out = tmp_path / "ladder"
    r = run_gptlab("ladder", ladder_toml, "--out", out, "--no-eval", "--values", "1,2,4", "--db", tmp_path / "r.db")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "not evaluated: --no-eval" in r.stdout and not (out / "report").exists()
    rungs, bpb, samples = store_rows(tmp_path / "r.db")
    assert [row[1] for row in rungs] == ["tl-depth1", "tl-depth2", "tl-depth4"] and not bpb and not samples


# Runs `gptlab ARGS` with every training step slowed down, so that the test can kill it mid-rung from outside.
SLOW = r"""
import sys, time
from gptlab import train
from gptlab.cli import main
real_step = train.Trainer.train_step
def train_step(self, step):
    time.sleep(0.3)
    return real_step(self, step)
train.Trainer.train_step = train_step
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_ladder_resumes_where_it_stopped(ladder_toml, suite, tmp_path):
    clean, out = tmp_path / "clean", tmp_path / "killed"
    r = run_gptlab("ladder", ladder_toml, "--out", clean, "--suite", suite, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    proc = subprocess.Popen([sys.executable, "-c", SLOW, "ladder", str(ladder_toml), "--out", str(out), "--suite",
                             str(suite)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = out / "tl-depth2" / "checkpoints"
    deadline = time.time() + 120
    try:
        while not (second.is_dir() and any(d.name.startswith("step_") for d in second.iterdir())):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = sorted((out / "tl-depth1" / "checkpoints").glob("step_*/*"))
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    stopped_at = sorted(d.name for d in second.iterdir() if d.name.startswith("step_"))
    assert stopped_at and stopped_at[-1] != f"step_{plan_ladder(load_config(ladder_toml), out)[1].steps:06d}"

    r = run_gptlab("ladder", ladder_toml, "--out", out, "--suite", suite, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[rung 1/3] reusing tl-depth1" in r.stderr and "[rung 2/3] resuming tl-depth2" in r.stderr, r.stderr
    assert "[rung 3/3] training tl-depth3" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in first} == mtimes          # the first rung was not retrained
    got, want = store_rows(out / "results.sqlite"), store_rows(clean / "results.sqlite")
    assert got[0] == want[0]
    assert [row[:3] for row in got[1]] == [row[:3] for row in want[1]]
    for a, b in zip(got[1], want[1]):
        assert a[3] == pytest.approx(b[3], abs=1e-9), a      # resumed training is bit for bit the same
    assert got[2] == want[2]


def test_a_ladder_under_torchrun_trains_every_rung_on_both_ranks(ladder_toml, suite, tmp_path):
    """Two gloo processes: one process group serves every rung's training and the evaluation; rank 0 records."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gptlab",
           "ladder", str(ladder_toml), "--out", str(out), "--suite", str(suite), "--set", "train.device_batch_size=4"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("report:") == 1 and r.stderr.count("[rung 3/3] training tl-depth3") == 1
    rungs, bpb, samples = store_rows(out / "results.sqlite")
    assert [row[1] for row in rungs] == ["tl-depth1", "tl-depth2", "tl-depth3"]
    assert {row[0] for row in bpb} == {"tl-depth1", "tl-depth2", "tl-depth3"} and len(samples) == 3 * 2 * 4 * 2
    for rung in plan_ladder(load_config(ladder_toml, ["train.device_batch_size=4"]), out):
        assert (rung.run_dir / "checkpoints" / f"step_{rung.steps:06d}").is_dir()
