"""Fault injection for `gptlab eval`: the job is killed (SIGKILL) inside a unit's transaction, between units, and
after a random delay, or interrupted once with SIGINT (exit 130); at each point the store holds whole units
only, and a rerun ends with a store equal to that of an uninterrupted run (bpb to 1e-9, the same sample texts
per key, the same findings, no duplicates).

    python -m pytest tests/test_faults_eval.py                 (the fast one)
    python -m pytest -m slow tests/test_faults_eval.py         (every kill point)
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TWO_PROBES

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "peers" / "hf_gpt2" / "trained_200steps"     # 0.6 MB, loads in ms

SUITE = f'''name = "faults"
version = "1"

{TWO_PROBES}'''
# 2 probes x 3 samples = 6 rows, 2 rows a batch: 3 sample transactions of 4 samples (2 lengths) each
EVAL = ["--samples", "3", "--max-tokens", "6,12", "--batch-rows", "2", "--no-exec", "--threads", "1"]

# Runs `gptlab ARGS` in this process after arranging a fault in the store's write path:
#   none                 no fault
#   METHOD:N:inside      SIGKILL inside the N-th call of Store.METHOD, its rows written but not committed
#   METHOD:N:after       SIGKILL right after the N-th call of Store.METHOD returned (committed)
#   slow                 no kill; every put_samples transaction waits 0.4 s before COMMIT, so that a signal
#                        from outside lands inside a unit
#   hold                 no kill; the 2nd put_samples transaction, its rows written, creates the file named by
#                        GPTLAB_TEST_HELD and waits there (up to 120 s) for a signal from outside
DRIVER = r"""
import os, signal, sys, time
from contextlib import contextmanager
from gptlab.store import Store
from gptlab.cli import main

# Ctrl-C reaches the job as it would from a terminal, even when the test runner was started in the background
# (`make test &`): a shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN.
signal.signal(signal.SIGINT, signal.default_int_handler)
fault, args = sys.argv[1], sys.argv[2:]
method, _, rest = fault.partition(":")
nth, _, where = rest.partition(":")
current = {"method": None, "calls": {}}
real_tx = Store.transaction

def die():
    os.kill(os.getpid(), signal.SIGKILL)

@contextmanager
def transaction(self):
    with real_tx(self) as db:
        yield db
        if method == "slow" and current["method"] == "put_samples":
            time.sleep(0.4)
        if method == "hold" and current["method"] == "put_samples" and current["calls"]["put_samples"] == 2:
            open(os.environ["GPTLAB_TEST_HELD"], "w").close()
            time.sleep(120)
        if where == "inside" and current["method"] == method and current["calls"][method] == int(nth):
            die()
Store.transaction = transaction

def wrap(name):
    real = getattr(Store, name)
    def call(self, *a, **k):
        current["method"] = name
        current["calls"][name] = current["calls"].get(name, 0) + 1
        out = real(self, *a, **k)
        current["method"] = None
        if where == "after" and name == method and current["calls"][name] == int(nth):
            die()
        return out
    setattr(Store, name, call)

for name in ("put_probe", "put_model", "put_run", "put_bpb", "put_samples", "put_findings"):
    wrap(name)
sys.exit(main(args))
"""

TABLES = ("models", "bpb", "probes", "samples", "findings")
SAMPLE_KEY = "s.weights_hash, s.probe_hash, s.temperature, s.top_k, s.top_p, s.seed, s.sample_index, s.max_tokens"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault_inputs")
    (d / "suite.toml").write_text(SUITE)
    (d / "notes.txt").write_text("Water boils at 100 degrees Celsius at sea level.\n" * 8)
    (d / "code.jsonl").write_text("\n".join(json.dumps({"text": f"def f{i}(x):\n    return x * {i}\n"})
                                            for i in range(4)) + "\n")
    return d


def _args(inputs, db):
    return ["eval", str(MODEL), "--db", str(db), "--suite", str(inputs / "suite.toml"), "--bpb",
            f"notes={inputs / 'notes.txt'}", "--bpb", f"code={inputs / 'code.jsonl'}", *EVAL]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def run_eval(inputs, db, fault="none"):
    return subprocess.run([sys.executable, "-c", DRIVER, fault, *_args(inputs, db)], capture_output=True,
                          text=True, timeout=300, env=_env(), check=False)


def start_eval(inputs, db, fault="none", **env):
    return subprocess.Popen([sys.executable, "-c", DRIVER, fault, *_args(inputs, db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(_env(), **env))


def snapshot(db) -> dict:
    """The store's results by key, without ids or timestamps."""
    with sqlite3.connect(db) as c:
        out = {"counts": {t: c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}}
        out["model_hashes"] = sorted(r[0] for r in c.execute("SELECT weights_hash FROM models"))
        out["probes"] = sorted(c.execute("SELECT probe_hash, name, spec_json FROM probes").fetchall())
        out["bpb"] = {r[:4]: r[4:] for r in c.execute(
            "SELECT weights_hash, domain, data_hash, protocol, bpb, nll, bytes, tokens, docs_json FROM bpb")}
        out["samples"] = {r[:-2]: r[-2:] for r in c.execute(
            f"SELECT {SAMPLE_KEY}, s.completion, s.n_tokens FROM samples s")}
        out["findings"] = {r[:9]: r[9:] for r in c.execute(
            f"SELECT {SAMPLE_KEY}, f.detector_version, f.failures_json, f.metrics_json, f.evidence_json, f.passed "
            "FROM findings f JOIN samples s ON s.id = f.sample_id")}
        out["orphan_findings"] = c.execute(
            "SELECT COUNT(*) FROM findings WHERE sample_id NOT IN (SELECT id FROM samples)").fetchone()[0]
    return out


def assert_whole_units(db) -> dict:
    """What a killed job may leave: only whole units, never a duplicate or a dangling finding."""
    if not Path(db).exists():
        return {t: 0 for t in TABLES}
    snap = snapshot(db)
    counts = snap["counts"]
    assert len(snap["samples"]) == counts["samples"], "duplicate samples"
    assert len(snap["bpb"]) == counts["bpb"] and len(snap["findings"]) == counts["findings"]
    assert snap["orphan_findings"] == 0
    for (*_, docs_json) in snap["bpb"].values():
        assert len(json.loads(docs_json)) > 0
    rows = {}
    for key in snap["samples"]:
        rows.setdefault(key[:-1], set()).add(key[-1])
    assert all(v == {6, 12} for v in rows.values()), rows        # both lengths of a row or neither
    assert len(rows) % 2 == 0                                     # whole batches of 2 rows
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return counts


def assert_same_store(db, clean):
    got, want = snapshot(db), clean
    for t in ("counts", "model_hashes", "probes", "orphan_findings"):
        assert got[t] == want[t], t
    assert got["bpb"].keys() == want["bpb"].keys()
    for key, (bpb, nll, n_bytes, tokens, docs) in want["bpb"].items():
        g = got["bpb"][key]
        assert g[0] == pytest.approx(bpb, abs=1e-9) and g[1] == pytest.approx(nll, abs=1e-9), key
        assert g[2:4] == (n_bytes, tokens)
        for (a_nll, a_bytes), (b_nll, b_bytes) in zip(json.loads(g[4]), json.loads(docs), strict=True):
            assert a_nll == pytest.approx(b_nll, abs=1e-9) and a_bytes == b_bytes
    assert got["samples"] == want["samples"]                       # the same text for every key
    assert got["findings"] == want["findings"]


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory):
    db = tmp_path_factory.mktemp("fault_clean") / "clean.sqlite"
    r = run_eval(inputs, db)
    assert r.returncode == 0, r.stderr
    snap = snapshot(db)
    assert snap["counts"] == {"models": 1, "bpb": 2, "probes": 2, "samples": 12, "findings": 12}, snap["counts"]
    return snap


def _kill_and_rerun(inputs, tmp_path, clean, fault, expect):
    db = tmp_path / "killed.sqlite"
    r = run_eval(inputs, db, fault)
    assert r.returncode == -signal.SIGKILL, (fault, r.stderr)
    assert assert_whole_units(db) == {**dict.fromkeys(TABLES, 0), **expect}, fault
    again = run_eval(inputs, db)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert_same_store(db, clean)
    return again.stderr


def test_sigkill_inside_a_sample_batch_then_rerun_equals_a_clean_run(inputs, tmp_path, clean):
    """Killed with the second batch's rows written but not committed: the store has the first batch only,
    and the rerun generates exactly the two missing batches."""
    err = _kill_and_rerun(inputs, tmp_path, clean, "put_samples:2:inside",
                          {"models": 1, "probes": 2, "bpb": 2, "samples": 4})
    assert "bpb 0 computed, 2 cached; samples 8 written (4 generations), 4 cached; findings 12 computed" in err


@pytest.mark.slow
@pytest.mark.parametrize("fault, expect", [
    ("put_probe:1:after", {"probes": 1}),
    ("put_bpb:1:inside", {"models": 1, "probes": 2}),
    ("put_bpb:2:after", {"models": 1, "probes": 2, "bpb": 2}),
    ("put_samples:3:after", {"models": 1, "probes": 2, "bpb": 2, "samples": 12}),
    ("put_findings:1:inside", {"models": 1, "probes": 2, "bpb": 2, "samples": 12}),
])
def test_sigkill_at_each_kind_of_unit_then_rerun_equals_a_clean_run(inputs, tmp_path, clean, fault, expect):
    _kill_and_rerun(inputs, tmp_path, clean, fault, expect)


def _wait_for(db, proc, sql, deadline_s=120) -> None:
    """Poll the store until `sql` gives a true value (or the job ended: a resumed one may have nothing to do)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=0.1) as c:
                    if c.execute(sql).fetchone()[0]:
                        return
            except sqlite3.OperationalError:
                pass                                              # the schema is not there yet
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_after_random_delays_then_rerun_equals_a_clean_run(inputs, tmp_path, clean):
    """Killed from outside at three seeded random moments after the model is loaded (the slowed job then
    writes for ~2 s: bpb, three batches of 0.4 s, findings), each time resumed by the next job, then run to
    the end."""
    db = tmp_path / "random.sqlite"
    rng = random.Random(20240601)
    seen = []
    for _ in range(3):
        proc = start_eval(inputs, db, "slow")
        _wait_for(db, proc, f"SELECT MAX(updated_at) > {time.time()} FROM models")   # this job loaded the model
        delay = rng.uniform(0.0, 2.0)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (-signal.SIGKILL, 0), (delay, err)
        seen.append((round(delay, 2), assert_whole_units(db)))
    again = run_eval(inputs, db)
    assert again.returncode == 0, (seen, again.stderr)
    assert_same_store(db, clean)
    # seed 20240601 kills before the first sample batch, in the middle of sampling (8 of 12 stored) and at the
    # end; a kill point that lands after the job finished shows as a job that exited 0


def test_sigint_exits_130_with_whole_units_then_rerun_equals_a_clean_run(inputs, tmp_path, clean):
    """Ctrl-C while a batch's transaction is open: exit status 130, one line, the batch rolled back. The job
    holds inside its second sample transaction until the signal comes, so the test does not race it."""
    db = tmp_path / "interrupted.sqlite"
    held = tmp_path / "held"
    proc = start_eval(inputs, db, "hold", GPTLAB_TEST_HELD=str(held))
    deadline = time.monotonic() + 120
    while not held.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held.exists() and proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == "gptlab: interrupted" and "Traceback" not in err, err
    left = assert_whole_units(db)
    assert 0 < left["samples"] < 12 and left["findings"] == 0, left
    again = run_eval(inputs, db)
    assert again.returncode == 0, again.stderr
    assert_same_store(db, clean)
