"""`gptlab eval`: results land in the store once; a repeated job runs no model; a job killed with SIGKILL
resumes with exactly what is missing and ends identical to an uninterrupted one; --json; bad input."""

import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from conftest import TWO_PROBES, run_gptlab
from gptlab.checkpoints import discover, load
from gptlab.commands.sample import sample_paths
from gptlab.engine import Engine, Request, row_seed
from gptlab.errors import GptlabError
from gptlab.evaluate import job as eval_job
from gptlab.evaluate.job import evaluate
from gptlab.probes import load_suite

SUITE = f'''name = "small"
version = "1"

{TWO_PROBES}
[[probes]]
name = "revenue"
domain = "finance"
prompt = "Item 7. Management's Discussion and Analysis\\n\\nRevenue increased 12% in fiscal 2023, driven by"
'''
TABLES = ("models", "runs", "train_metrics", "bpb", "probes", "samples", "findings")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    p = tmp_path_factory.mktemp("suite") / "small.toml"
    p.write_text(SUITE)
    return p


@pytest.fixture(scope="module")
def small_txt(tmp_path_factory):
    p = tmp_path_factory.mktemp("bpb") / "notes.txt"
    p.write_text("Water boils at 100 degrees Celsius at sea level.\n" * 20)
    return p


def _counts(db):
    with sqlite3.connect(db) as c:
        return {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def _samples(db):
    with sqlite3.connect(db) as c:
        return sorted(c.execute("SELECT weights_hash, probe_hash, temperature, seed, sample_index, max_tokens, "
                                "completion, n_tokens FROM samples").fetchall())


def test_second_run_does_no_model_work(tiny_run, suite, small_txt, tmp_path):
    db = tmp_path / "r.sqlite"
    kw = dict(db=str(db), suite=str(suite), samples=3, max_tokens=(8, 24), temperatures=(0.8, 0.0),
              bpb_files={"notes": str(small_txt)}, progress=False, echo=lambda m: None)
    first = evaluate([str(tiny_run)], **kw)
    n = 2 * 3 * 3 * 2 * 2                     # checkpoints x probes x samples x temperatures x lengths
    assert first.model_calls > 0 and not first.cache_hit
    assert first.samples_written == n and first.generations == n // 2 and first.bpb_computed == 2
    assert first.findings_computed == n
    before, texts = _counts(db), _samples(db)
    assert before["runs"] == 1 and before["train_metrics"] > 0 and before["models"] == 2
    assert before["findings"] == before["samples"] == n
    with sqlite3.connect(db) as c:           # probes without tests have no pass/fail
        passed = dict(c.execute("SELECT p.name, COUNT(f.passed) FROM findings f JOIN samples s ON s.id = f.sample_id "
                                "JOIN probes p USING (probe_hash) GROUP BY p.name").fetchall())
    assert passed["water"] == passed["revenue"] == 0

    calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(lambda *a: calls.append(1))
    try:
        second = evaluate([str(tiny_run)], **kw)
    finally:
        hook.remove()
    assert calls == [] and second.model_calls == 0 and second.cache_hit
    assert second.samples_cached == first.samples_written and second.bpb_cached == 2
    assert second.findings_cached == n and second.findings_computed == 0
    assert _counts(db) == before and _samples(db) == texts


def test_stored_samples_are_what_the_engine_gives_alone(tiny_run, suite, tmp_path):
    db = tmp_path / "r.sqlite"
    evaluate([str(tiny_run)], db=str(db), suite=str(suite), samples=2, max_tokens=(6, 20), seed=7, bpb=False,
             diagnose=False, progress=False, echo=lambda m: None)
    ref = discover(tiny_run)[-1]
    loaded = load(ref)
    engine = Engine(loaded.model, loaded.tokenizer)
    probe = load_suite(suite).get("revenue")
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT sample_index, max_tokens, completion, n_tokens FROM samples WHERE probe_hash=? AND "
                         "weights_hash=? ORDER BY sample_index, max_tokens",
                         (probe.probe_hash, loaded.info.weights_hash)).fetchall()
    assert len(rows) == 4
    for i in range(2):
        seed = row_seed(7, hashlib.sha256(probe.prompt.encode()).hexdigest(), i)
        c = engine.generate([Request(probe.prompt, 0.8, seed)], 20)[0]
        short, long = [r for r in rows if r[0] == i]
        assert long[2] == loaded.tokenizer.decode(c.tokens) and long[3] == len(c.tokens)
        assert short[2] == loaded.tokenizer.decode(c.tokens[:6]) and short[3] == min(6, len(c.tokens))


def _eval_cmd(run, db, suite, *extra):
    return [sys.executable, "-m", "gptlab", "eval", str(run), "--db", str(db), "--suite", str(suite), "--samples",
            "12", "--max-tokens", "8,30", "--batch-rows", "2", "--no-bpb", "--no-diagnose", *extra]


def test_sigkill_then_restart_computes_only_what_is_missing(tiny_run, suite, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full_db, db = tmp_path / "full.sqlite", tmp_path / "killed.sqlite"
    evaluate([str(tiny_run)], db=str(full_db), suite=str(suite), samples=12, max_tokens=(8, 30), batch_rows=2,
             bpb=False, diagnose=False, progress=False, echo=lambda m: None)       # the uninterrupted run
    total = len(_samples(full_db))
    assert total == 2 * 3 * 12 * 2

    proc = subprocess.Popen(_eval_cmd(tiny_run, db, suite), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    n = 0
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=0.1) as c:
                    n = c.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0                                           # schema not created yet
            if n:
                break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _samples(db)
    assert 0 < len(partial) < total, "the kill should land mid-job"
    rows = {}
    for w, p, t, s, i, n_max, *_ in partial:
        rows.setdefault((w, p, t, i), set()).add(n_max)
    assert all(v == {8, 30} for v in rows.values())             # whole rows only: both lengths or neither

    again = subprocess.run(_eval_cmd(tiny_run, db, suite), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    m = re.search(r"samples (\d+) written \((\d+) generations\), (\d+) cached", again.stderr)
    assert m, again.stderr
    assert int(m[1]) == total - len(partial) and int(m[2]) == (total - len(partial)) // 2
    assert int(m[3]) == len(partial)
    final = _samples(db)
    assert final == _samples(full_db)                           # same texts as the uninterrupted run
    with sqlite3.connect(db) as c:
        dup = c.execute("SELECT COUNT(*) FROM (SELECT 1 FROM samples GROUP BY weights_hash, probe_hash, temperature,"
                        " top_k, top_p, seed, sample_index, max_tokens HAVING COUNT(*) > 1)").fetchone()[0]
    assert dup == 0


def test_json_lines_per_model_step_domain(tiny_run, small_txt, tmp_path):
    db = tmp_path / "j.sqlite"
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": f"def f{i}(x):\n    return x * {i}\n"}) for i in range(5)) + "\n")
    args = ("eval", tiny_run, "--db", db, "--no-probes", "--json", "--bpb", f"notes={small_txt}", "--bpb",
            f"code={docs}")
    r = run_gptlab(*args)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(d["step"], d["domain"]) for d in lines] == [(4, "notes"), (4, "code"), (8, "notes"), (8, "code")]
    for d in lines:
        assert set(d) == {"model", "step", "domain", "bpb", "bytes", "tokens"} and d["model"] == "run"
        assert 0 < d["bpb"] < 20 and d["tokens"] > 0
    assert lines[0]["bytes"] == len(small_txt.read_bytes())
    again = run_gptlab(*args)
    assert again.returncode == 0 and again.stdout == r.stdout and "cache hit" in again.stderr


def test_default_domains_of_a_gptlab_run(tiny_run, tmp_path):
    got = []
    evaluate([str(tiny_run / "checkpoints" / "step_000008")], db=str(tmp_path / "d.sqlite"), probes=False,
             progress=False, on_bpb=got.append, echo=lambda m: None)
    assert [(d["step"], d["domain"]) for d in got] == [(8, "code_python"), (8, "web_en")]


@pytest.mark.parametrize("args, words", [
    (["--temperature", "-1"], ["--temperature", ">= 0"]),
    (["--samples", "0"], ["--samples", "at least 1"]),
    (["--max-tokens", "80,x"], ["--max-tokens", "integers"]),
    (["--bpb", "nofile"], ["--bpb", "NAME=FILE"]),
    (["--suite", "BAD"], ["'square'", "'tests'", "not valid Python"]),
])
def test_bad_input_is_one_line(tiny_run, suite, tmp_path, args, words):
    if "BAD" in args:
        bad = tmp_path / "bad.toml"
        bad.write_text(SUITE.replace('tests = "assert square(3) == 9"', 'tests = "assert square(3) =="'))
        args = [str(bad) if a == "BAD" else a for a in args]
    r = run_gptlab("eval", tiny_run, "--db", tmp_path / "x.sqlite", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("gptlab: error:") and r.stderr.count("\n") == 1, r.stderr
    for w in words:
        assert w in r.stderr
    assert not (tmp_path / "x.sqlite").exists()            # nothing written


BAD_BPB_FILES = [
    ("empty.txt", b"", "no text"),
    ("blank.jsonl", b"\n  \n", "no text"),
    ("binary.txt", bytes(range(256)) * 4, "not UTF-8"),
    ("binary.jsonl", b'{"text": "ok"}\n\xff\xfe\x00\x01\n', "not UTF-8"),      # bad after a good line
]


@pytest.mark.parametrize("name, content, why", BAD_BPB_FILES)
def test_bpb_file_without_text_is_an_error_before_any_model(tmp_path, monkeypatch, name, content, why):
    """An empty or binary --bpb file used to be 'skipped', then 'cache hit ... no model was run', exit 0."""
    monkeypatch.setattr(eval_job, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(GptlabError, match=why) as e:
        evaluate([str(tmp_path)], db=str(tmp_path / "x.sqlite"), probes=False, bpb_files=[f"x={bad}"],
                 progress=False, echo=lambda m: None)
    assert str(e.value).startswith(f"--bpb 'x={bad}': {bad}") and "\n" not in str(e.value)
    assert not (tmp_path / "x.sqlite").exists()


def test_bpb_file_without_text_is_one_line_and_exit_2(tiny_run, tmp_path):
    bad = tmp_path / "binary.txt"
    bad.write_bytes(bytes(range(256)))
    r = run_gptlab("eval", tiny_run, "--db", tmp_path / "x.sqlite", "--no-probes", "--bpb", f"x={bad}")
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.startswith("gptlab: error: --bpb") and r.stderr.count("\n") == 1, r.stderr
    assert str(bad) in r.stderr and "not UTF-8" in r.stderr
    assert not (tmp_path / "x.sqlite").exists()            # nothing stored, no model loaded


def test_bad_arguments_in_the_library(tiny_run, tmp_path):
    for kw, word in (({"samples": 0}, "samples"), ({"temperatures": (float("nan"),)}, "temperature"),
                     ({"max_tokens": (0,)}, "max-tokens"), ({"top_p": 0.0}, "top-p")):
        with pytest.raises(GptlabError, match=word):
            evaluate([str(tiny_run)], db=str(tmp_path / "y.sqlite"), **kw)
    with pytest.raises(GptlabError, match="no such file"):
        evaluate([str(tmp_path / "missing")], db=str(tmp_path / "y.sqlite"))


def test_sample_streams_each_checkpoint(tiny_run):
    every, last = io.StringIO(), io.StringIO()
    texts = sample_paths(str(tiny_run), "def square(x):", max_tokens=12, seed=3, out=every)
    assert len(texts) == 2 and every.getvalue().count("def square(x):") == 2
    assert "── run@4 ──" in every.getvalue() and "── run@8 ──" in every.getvalue()
    assert sample_paths(str(tiny_run), "def square(x):", max_tokens=12, seed=3, last=True, out=last) == texts[1:]
    assert "run@4" not in last.getvalue() and texts[1] in last.getvalue()
