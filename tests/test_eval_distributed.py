"""Evaluation across ranks (gptlab/evaluate/ranks.py): two gloo processes started by the real torchrun give the
same store as one process; a rank killed with SIGKILL leaves whole units that the rerun keeps; the planner
balances by cost; journals drop torn lines and are merged once."""

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TWO_PROBES
from gptlab.checkpoints import discover, load
from gptlab.evaluate import journal
from gptlab.evaluate.balance import Unit, assign, makespan, stripe
from gptlab.evaluate.bpb import BpbResult, DocScore, merge_parts, read_documents, score_documents
from gptlab.evaluate.job import evaluate
from gptlab.store import Store

CORPUS = ROOT / "gptlab" / "corpus"
ARGS = dict(samples=6, max_tokens=(8, 30), batch_rows=2, execute=False)


def _cli_args(run, db, suite):
    return ["eval", str(run), "--db", str(db), "--suite", str(suite), "--samples", "6", "--max-tokens", "8,30",
            "--batch-rows", "2", "--no-exec", "--bpb", f"code={CORPUS / 'code_python.val.jsonl'}",
            "--bpb", f"web={CORPUS / 'web_en.val.jsonl'}"]


def _torchrun(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gptlab",
           *map(str, args)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    p = tmp_path_factory.mktemp("suite") / "two.toml"
    p.write_text(f'name = "two"\nversion = "1"\n\n{TWO_PROBES}')
    return p


@pytest.fixture(scope="module")
def reference(tiny_run, suite, tmp_path_factory):
    """The store one process writes."""
    db = tmp_path_factory.mktemp("one") / "one.sqlite"
    evaluate([str(tiny_run)], db=str(db), suite=str(suite), progress=False, echo=lambda m: None,
             bpb_files={"code": str(CORPUS / "code_python.val.jsonl"), "web": str(CORPUS / "web_en.val.jsonl")},
             **ARGS)
    return db


def _rows(db):
    with sqlite3.connect(db) as c:
        return {
            "models": sorted(c.execute("SELECT weights_hash, run, step, params FROM models")),
            "samples": sorted(c.execute("SELECT weights_hash, probe_hash, temperature, top_k, top_p, seed, "
                                        "sample_index, max_tokens, completion, n_tokens FROM samples")),
            "findings": sorted(c.execute("SELECT s.weights_hash, s.probe_hash, s.sample_index, s.max_tokens, "
                                         "f.detector_version, f.failures_json, f.passed FROM findings f "
                                         "JOIN samples s ON s.id = f.sample_id")),
            "bpb": sorted(c.execute("SELECT weights_hash, domain, data_hash, protocol, bpb, nll, bytes, tokens, "
                                    "docs_json FROM bpb")),
        }


def _assert_same_store(got, want):
    a, b = _rows(got), _rows(want)
    assert a["models"] == b["models"]
    assert a["samples"] == b["samples"] and a["findings"] == b["findings"]
    assert len(a["bpb"]) == len(b["bpb"]) > 0
    for x, y in zip(a["bpb"], b["bpb"]):
        assert x[:4] == y[:4] and x[6:8] == y[6:8]                  # same key, bytes and tokens
        assert x[4] == pytest.approx(y[4], abs=1e-6)                # bpb
        dx, dy = json.loads(x[8]), json.loads(y[8])
        assert [d[1] for d in dx] == [d[1] for d in dy]
        assert all(abs(p[0] - q[0]) <= 1e-6 * max(1.0, abs(q[0])) for p, q in zip(dx, dy))


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes(tiny_run, suite, reference, tmp_path):
    db = tmp_path / "two.sqlite"
    proc = _torchrun(*_cli_args(tiny_run, db, suite), "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    _assert_same_store(db, reference)
    plan = re.search(r"2 ranks: rank 0: (\d+) checkpoints?.*; rank 1: (\d+) checkpoints?.*", err)
    assert plan and int(plan[1]) and int(plan[2]), err                # both ranks had work
    assert "stripes" in plan[0], plan[0]                              # a domain was split between them
    assert len([json.loads(line) for line in out.splitlines()]) == 4  # --json: one line per model and domain, once
    assert err.count(" bpb (computed): ") == 2                        # printed by rank 0 only
    assert not journal.folder_of(db).exists()                         # journals merged, then deleted


@pytest.mark.slow
def test_watch_then_compare_under_torchrun(tiny_run, suite, reference, tmp_path):
    """`watch` evaluates on both ranks what rank 0 found and only rank 0 writes the report; `compare` finds
    everything stored (no model runs) and only rank 0 writes and prints the comparison."""
    db = tmp_path / "w.sqlite"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(ROOT / "tests" / "torchrun_watch_compare.py"), tiny_run, db, suite,
                        CORPUS / "code_python.val.jsonl", CORPUS / "web_en.val.jsonl", tmp_path],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_store(db, reference)
    ranks = sorted((d["rank"], d["compared"]) for d in map(json.loads, re.findall(r"^\{.*\}$", r.stdout, re.M)))
    assert ranks == [(0, True), (1, False)]
    assert r.stdout.count("report refreshed") == 1 and (tmp_path / "report" / "index.html").is_file()
    assert (tmp_path / "compare" / "compare.md").is_file()
    assert "cache hit" in r.stderr and r.stderr.count("cache hit") == 1     # compare ran no model


def _children(pid):
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def _rank_of(pid):
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((e[5:].decode() for e in env if e.startswith(b"RANK=")), None)


def _complete_units(folder):
    """(samples, complete bpb domains) in the journals: what the rerun must not compute again."""
    records = [r for p in folder.glob("*.jsonl") for r in journal.read_records(p)]
    samples = sum(len(r["records"]) for r in records if r["kind"] == "samples")
    whole = {(r["weights_hash"], r["domain"]) for r in records if r["kind"] == "bpb" and r["stripes"] is None}
    stripes = {}
    for r in records:
        if r["kind"] == "bpb" and r["stripes"] is not None:
            stripes.setdefault((r["weights_hash"], r["domain"], r["stripes"][1]), set()).update(r["stripes"][0])
    whole |= {(w, d) for (w, d, n), ks in stripes.items() if ks == set(range(n))}
    return samples, len(whole)


@pytest.mark.slow
def test_sigkilled_rank_then_rerun_computes_only_what_is_missing(tiny_run, suite, reference, tmp_path):
    db = tmp_path / "killed.sqlite"
    folder = journal.folder_of(db)
    proc = _torchrun(*_cli_args(tiny_run, db, suite), "--no-diagnose")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:   # until some rank has finished a sample batch
        lines = [p.read_bytes().count(b"\n") for p in folder.glob("*-rank1.jsonl")] if folder.exists() else []
        if lines and lines[0] >= 2 and _complete_units(folder)[0] > 0:
            break
        time.sleep(0.01)
    victims = [p for p in _children(proc.pid) if _rank_of(p) == "1"]
    assert len(victims) == 1, "rank 1 should still be running"
    os.kill(victims[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "SIGKILL" in err

    with sqlite3.connect(db) as c:                   # only rank 0 writes the store, at the end: nothing yet
        assert c.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0
    want = _rows(reference)
    samples_done, bpb_done = _complete_units(folder)
    assert 0 < samples_done < len(want["samples"]), "the kill should land mid-job"

    again = _torchrun(*_cli_args(tiny_run, db, suite), "--no-diagnose")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    m = re.search(r"bpb (\d+) computed, (\d+) cached; samples (\d+) written \((\d+) generations\), (\d+) cached", err)
    assert m, err[-2000:]
    assert int(m[2]) == bpb_done and int(m[1]) == len(want["bpb"]) - bpb_done
    assert int(m[5]) == samples_done and int(m[3]) == len(want["samples"]) - samples_done
    assert int(m[4]) == int(m[3]) // 2                               # one generation gives both lengths
    got = _rows(db)
    assert got["samples"] == want["samples"]                         # the texts one process writes
    assert [r[:4] for r in got["bpb"]] == [r[:4] for r in want["bpb"]]
    assert all(math.isclose(a[4], b[4], abs_tol=1e-6) for a, b in zip(got["bpb"], want["bpb"]))
    assert not folder.exists()


# ---------------------------------------------------------------- the parts, without torchrun


def test_one_process_merges_what_ranks_left(tiny_run, suite, reference, tmp_path):
    """A job in one process takes over the journals of an interrupted job across ranks."""
    db = tmp_path / "one.sqlite"
    with sqlite3.connect(reference) as c:
        c.row_factory = sqlite3.Row
        first = c.execute("SELECT weights_hash FROM models ORDER BY step").fetchone()[0]
        done = [dict(r) for r in c.execute("SELECT weights_hash, probe_hash, temperature, top_k, top_p, seed, "
                                           "sample_index, max_tokens, completion, n_tokens FROM samples WHERE "
                                           "weights_hash = ?", (first,))]
    left = journal.Journal(db, "dead", 1)
    left.write(journal.samples_record(done, len(done) // 2))
    left.close()                                                      # its job died: the lock is free
    got = evaluate([str(tiny_run)], db=str(db), suite=str(suite), bpb=False, progress=False, echo=lambda m: None,
                   **ARGS)
    total = len(_rows(reference)["samples"])
    assert got.samples_cached == len(done) and got.samples_written == total - len(done)
    assert _rows(db)["samples"] == _rows(reference)["samples"]
    assert not journal.folder_of(db).exists()



def test_stripes_of_a_text_add_up_to_the_whole(tiny_run):
    loaded = load(discover(tiny_run)[-1])
    docs = list(read_documents(CORPUS / "web_en.val.jsonl"))
    whole = score_documents(loaded.model, loaded.tokenizer, docs)
    parts = [score_documents(loaded.model, loaded.tokenizer, docs, stripes=(ks, 3)) for ks in ({0}, {1, 2})]
    assert 0 < parts[0].tokens < whole.tokens
    merged = merge_parts(parts)
    assert (merged.bytes, merged.tokens) == (whole.bytes, whole.tokens)
    assert merged.bpb == pytest.approx(whole.bpb, abs=1e-9)
    assert [d.bytes for d in merged.docs] == [d.bytes for d in whole.docs]


def test_lpt_balances_by_cost_and_keeps_each_unit_once():
    costs = [7, 7, 6, 6, 5, 4, 4, 2, 2, 1]
    units = [Unit(i % 3, "samples", i, c) for i, c in enumerate(costs)]
    plan = assign(units, 3, {})
    assert sorted(u.item for us in plan for u in us) == list(range(len(costs)))
    assert makespan(plan, {}) == 15 == math.ceil(sum(costs) / 3)     # optimal here; round-robin gives 18
    assert plan == assign(units, 3, {})                               # deterministic


def test_loads_keep_a_checkpoint_on_the_rank_that_holds_it():
    units = [Unit(0, "samples", i, 1.0) for i in range(4)] + [Unit(1, "samples", i, 1.0) for i in range(4)]
    plan = assign(units, 2, {0: 100.0, 1: 100.0}, held={0: 1, 1: 0})
    assert {u.checkpoint for u in plan[0]} == {1} and {u.checkpoint for u in plan[1]} == {0}
    cheap = assign(units, 2, {0: 0.1, 1: 0.1})                        # cheap loads: spread evenly
    assert len(cheap[0]) == len(cheap[1]) == 4


def test_only_large_domains_are_striped_and_batches_never():
    units = [Unit(0, "bpb", 0, 100.0), Unit(0, "bpb", 1, 1.0), Unit(0, "samples", 0, 50.0)]
    got = stripe(units, 4, {0: 1.0})
    big = [u for u in got if u.item == 0 and u.kind == "bpb"]
    assert [(u.stripe, u.stripes) for u in big] == [(k, 4) for k in range(4)] and big[0].cost == 25.0
    assert [u for u in got if u.kind == "samples"] == [units[2]] and units[1] in got


def test_journal_keeps_whole_lines_and_merges_once(tmp_path):
    db = tmp_path / "r.sqlite"
    j = journal.Journal(db, "L1", 0)
    sample = {"weights_hash": "w", "probe_hash": "p", "temperature": 0.8, "top_k": None, "top_p": None, "seed": 0,
              "sample_index": 0, "max_tokens": 8, "completion": "x = 1", "n_tokens": 3}
    j.write(journal.samples_record([sample], 1))
    assert journal.read_leftovers(db) == ([], [])                     # a live job's journal is not taken
    j.close()
    with open(j.path, "ab") as f:
        f.write(b'{"kind": "samples", "rows": 1, "rec')               # killed mid-line
    records, files = journal.read_leftovers(db)
    assert records == [journal.samples_record([sample], 1)] and files == [j.path]
    store = Store(db)
    try:
        parts = [journal.bpb_record("L1", "w", "web", "h", "bpb-1", p, s) for p, s in (
            (_part([[1.0, 4, 2], [0.0, 0, 0]]), ({0}, 2)), (_part([[0.5, 2, 1], [2.0, 8, 3]]), ({1}, 2)))]
        first = journal.merge(store, records + parts + [parts[0]])
        assert first.samples_written == 1 and len(first.bpb) == 1
        row = store.get_bpb("w", "web", "h", "bpb-1")
        assert (row["bytes"], row["tokens"]) == (14, 6) and row["bpb"] == pytest.approx(3.5 / (math.log(2) * 14))
        again = journal.merge(store, records + parts)                 # a journal merged twice: no change
        assert again.samples_written == 0 and again.bpb == []
        lone = journal.merge(store, [journal.bpb_record("L2", "w", "code", "h", "bpb-1", _part([[1.0, 4, 2]]),
                                                        ({0}, 2))])
        assert lone.stripes_dropped == 1 and store.get_bpb("w", "code", "h", "bpb-1") is None
    finally:
        store.close()
    journal.remove_files(files)
    assert not journal.folder_of(db).exists()


def _part(docs):
    return BpbResult(math.nan, 0.0, 0, 0, [DocScore(*d) for d in docs])
