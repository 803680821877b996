"""The results store: one row per key even with NULL sampling parameters and concurrent writers; a v1 store
is migrated on open (duplicates merged, their findings re-pointed or dropped); a newer store is refused;
readers open a store on a read-only mount; a read-only store refuses writes in one line."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import older_store
from report_fixtures import add_run

from gptlab.errors import GptlabError
from gptlab.store import SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parent.parent

# The schema exactly as gptlab with SCHEMA_VERSION = 1 wrote it (its samples key let NULLs repeat).
SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE models (
    weights_hash TEXT PRIMARY KEY, format TEXT, path TEXT, run TEXT, step INTEGER, family TEXT,
    params INTEGER, vocab_size INTEGER, context INTEGER, tokens_seen INTEGER, tokenizer_hash TEXT,
    config_json TEXT, meta_json TEXT, updated_at REAL);
CREATE INDEX models_run ON models (run, step);
CREATE TABLE runs (
    run TEXT PRIMARY KEY, path TEXT, config_json TEXT, tokens_per_step INTEGER, updated_at REAL);
CREATE TABLE train_metrics (
    run TEXT, step INTEGER, tokens_seen INTEGER, train_loss REAL, lr REAL, tokens_per_s REAL, mfu REAL,
    val_bpb REAL, val_json TEXT, PRIMARY KEY (run, step));
CREATE TABLE bpb (
    weights_hash TEXT, domain TEXT, data_hash TEXT, protocol TEXT,
    bpb REAL, nll REAL, bytes INTEGER, tokens INTEGER, docs_json TEXT, created_at REAL,
    PRIMARY KEY (weights_hash, domain, data_hash, protocol));
CREATE TABLE probes (
    probe_hash TEXT PRIMARY KEY, suite TEXT, suite_version TEXT, name TEXT, domain TEXT, language TEXT,
    prompt TEXT, spec_json TEXT);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY, weights_hash TEXT, probe_hash TEXT, temperature REAL, top_k INTEGER,
    top_p REAL, seed INTEGER, sample_index INTEGER, max_tokens INTEGER, completion TEXT, n_tokens INTEGER,
    created_at REAL,
    UNIQUE (weights_hash, probe_hash, temperature, top_k, top_p, seed, sample_index, max_tokens));
CREATE TABLE findings (
    sample_id INTEGER REFERENCES samples(id), detector_version TEXT, failures_json TEXT, metrics_json TEXT,
    evidence_json TEXT, passed INTEGER, created_at REAL, PRIMARY KEY (sample_id, detector_version));
INSERT INTO meta VALUES ('schema_version', '1');
"""
KEY = "weights_hash, probe_hash, temperature, top_k, top_p, seed, sample_index, max_tokens"


def _row(i, max_tokens=8, top_k=None, top_p=None, text="x"):
    return {"weights_hash": "w", "probe_hash": "p", "temperature": 0.8, "top_k": top_k, "top_p": top_p, "seed": 0,
            "sample_index": i, "max_tokens": max_tokens, "completion": f"{text}{i}", "n_tokens": 3}


def _duplicate_keys(db) -> int:
    with sqlite3.connect(db) as c:
        return c.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM samples GROUP BY {KEY} HAVING COUNT(*) > 1)"
                         ).fetchone()[0]


# ---------------------------------------------------------------- exactly once


def test_samples_with_default_sampling_are_stored_once(tmp_path):
    """top_k/top_p NULL (the default sampling) used to make every INSERT OR IGNORE insert again."""
    store = Store(tmp_path / "s.sqlite")
    rows = [_row(0), _row(1), _row(0, top_k=5), _row(0, top_p=0.9)]
    assert store.put_samples(rows) == 4
    assert store.put_samples(rows) == 0
    assert store.put_samples([_row(0, text="other")]) == 0          # the first text stays
    n = store.query("SELECT COUNT(*) AS n FROM samples")[0]["n"]
    assert n == 4 and store.existing_samples("w", "p", 0.8, None, None, 0) == {(0, 8), (1, 8)}
    store.close()


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gptlab.store import Store

    db, barrier, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    real = Store.existing_samples

    def existing_then_wait(self, *a):
        # both processes have read what is stored before either writes: the race, every time
        got = real(self, *a)
        (barrier / me).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return got

    Store.existing_samples = existing_then_wait
    from gptlab.cli import main
    sys.exit(main(sys.argv[4:]))
""")

ONE_PROBE = '''name = "one"
version = "1"

[[probes]]
name = "water"
domain = "general"
prompt = "Water is a molecule made of"
'''
HF_TINY = ROOT / "tests" / "fixtures" / "peers" / "hf_gpt2" / "trained_200steps"


def test_two_concurrent_eval_processes_store_each_sample_once(tmp_path):
    """Two `gptlab eval` processes on one store, both reading before either writes: one row per key."""
    suite = tmp_path / "one.toml"
    suite.write_text(ONE_PROBE)
    db, barrier = tmp_path / "same.sqlite", tmp_path / "barrier"
    barrier.mkdir()
    args = ["eval", str(HF_TINY), "--db", str(db), "--suite", str(suite), "--samples", "2", "--max-tokens", "6,12",
            "--no-bpb", "--no-exec", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(barrier), name, *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "ab"]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(os.listdir(barrier)) == ["a", "b"]                # the race did happen
    with sqlite3.connect(db) as c:
        n = c.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        findings = c.execute("SELECT COUNT(*) FROM findings").fetchone()[0]
        orphans = c.execute("SELECT COUNT(*) FROM findings WHERE sample_id NOT IN (SELECT id FROM samples)"
                            ).fetchone()[0]
    assert n == 2 * 2 and _duplicate_keys(db) == 0                  # samples x lengths, once each
    assert findings == n and orphans == 0
    written = sum(int(out[1].split("samples ")[1].split(" written")[0]) for out in outs)
    assert written == n                                             # the summaries count real inserts


# ---------------------------------------------------------------- schema versions


def _v1_store_with_duplicates(path):
    c = sqlite3.connect(path)
    c.executescript(SCHEMA_V1)
    c.execute("PRAGMA journal_mode=WAL")
    ins = (f"INSERT INTO samples (id, {KEY}, completion, n_tokens, created_at) "
           "VALUES (?, 'w', 'p', 0.8, NULL, NULL, 0, ?, ?, ?, 2, 0)")
    c.executemany(ins, [(1, 0, 8, "a"), (2, 0, 8, "a"), (3, 0, 8, "a"),      # one key three times
                        (4, 1, 8, "b"), (5, 1, 8, "b"),                      # another twice
                        (6, 2, 8, "c")])                                     # a single one
    c.execute("INSERT INTO samples VALUES (7, 'w', 'p', 0.8, 5, NULL, 0, 0, 8, 'k', 2, 0)")   # top_k 5: distinct
    c.executemany("INSERT INTO findings VALUES (?, ?, '[]', '{}', '{}', NULL, 0)",
                  [(1, "6"), (2, "6"), (2, "5"), (3, "4"), (5, "6"), (6, "6"), (7, "6")])
    c.commit()
    c.close()


def test_a_v1_store_with_duplicates_is_migrated_on_open(tmp_path):
    db = tmp_path / "v1.sqlite"
    _v1_store_with_duplicates(db)
    assert _duplicate_keys(db) == 2
    before = db.read_bytes()
    with pytest.raises(GptlabError, match="older gptlab .* duplicate samples; any `gptlab eval"):
        Store(db, readonly=True)                                     # a reader never migrates
    assert db.read_bytes() == before
    store = Store(db)
    assert store.query("SELECT value FROM meta WHERE key='schema_version'")[0]["value"] == str(SCHEMA_VERSION)
    samples = store.query("SELECT id, sample_index, top_k, completion FROM samples ORDER BY id")
    assert [(r["id"], r["sample_index"], r["top_k"]) for r in samples] == [(1, 0, None), (4, 1, None),
                                                                           (6, 2, None), (7, 0, 5)]
    findings = {(r["sample_id"], r["detector_version"])
                for r in store.query("SELECT sample_id, detector_version FROM findings")}
    # the kept row keeps its own findings and takes over the versions only a duplicate had
    assert findings == {(1, "6"), (1, "5"), (1, "4"), (4, "6"), (6, "6"), (7, "6")}
    assert store.put_samples([_row(0), _row(1), _row(2)]) == 0       # the new key holds
    assert store.query("PRAGMA foreign_key_check") == []
    store.close()
    Store(db).close()                                                # opening again changes nothing
    assert _duplicate_keys(db) == 0


def test_a_store_from_a_newer_gptlab_is_refused_in_one_line(tmp_path):
    db = tmp_path / "new.sqlite"
    Store(db).close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(GptlabError, match=f"schema v{SCHEMA_VERSION + 1}, this gptlab reads") as e:
            Store(db, readonly=readonly)
        assert "\n" not in str(e.value)
    assert db.read_bytes() == before
    r = subprocess.run([sys.executable, "-m", "gptlab", "report", "x", "--db", str(db), "--out",
                        str(tmp_path / "rep")], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "schema v" in r.stderr, r.stderr


# ---------------------------------------------------------------- readers


def test_a_read_only_store_refuses_writes_in_one_line(tmp_path):
    db = tmp_path / "r.sqlite"
    store = Store(db)
    add_run(store, steps=[5000, 10000])
    store.close()
    before = db.read_bytes()
    ro = Store(db, readonly=True)
    assert len(ro.models()) == 2 and len(ro.sample_rows()) > 0
    with pytest.raises(GptlabError, match="read-only"):
        ro.put_samples([_row(0)])
    ro.close()
    assert db.read_bytes() == before
    with pytest.raises(GptlabError, match="no results store"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def _can_mount_read_only(tmp_path) -> bool:
    if shutil.which("unshare") is None:
        return False
    (tmp_path / "probe_src").mkdir()
    (tmp_path / "probe_mnt").mkdir()
    script = (f"mount --bind {tmp_path}/probe_src {tmp_path}/probe_mnt && "
              f"mount -o remount,bind,ro {tmp_path}/probe_mnt && ! touch {tmp_path}/probe_mnt/x")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, timeout=30, check=False)
    return r.returncode == 0


READER = textwrap.dedent("""
    import sys
    from gptlab.errors import GptlabError
    from gptlab.report import write_report
    from gptlab.store import Store

    db, out = sys.argv[1], sys.argv[2]
    try:
        Store(db)
    except GptlabError as e:
        print("writer:", e)
    store = Store(db, readonly=True)
    print("models:", len(store.models()), "samples:", len(store.sample_rows()))
    write_report(store, ["d12"], out)
    store.close()
""")


def test_reports_read_a_store_on_a_read_only_mount(tmp_path):
    """A store on a read-only file system (root ignores permission bits, so a real read-only bind mount
    in a private mount namespace): closed cleanly (no -wal: read as immutable) and left by a killed writer
    (-wal and -shm: read with mode=ro, so the WAL's rows are seen)."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no read-only bind mount here (unshare -rm / mount)")
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    clean = Store(src / "clean.sqlite")
    add_run(clean, steps=[5000, 10000])
    clean.close()
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from report_fixtures import add_run
        from gptlab.store import Store
        add_run(Store({str(src / 'killed.sqlite')!r}), steps=[5000, 10000])
        os._exit(0)                       # like SIGKILL: no close, no checkpoint
    """)], capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == 0, killed.stderr
    assert (src / "killed.sqlite-wal").exists() and not (src / "clean.sqlite-wal").exists()
    listing = sorted(os.listdir(src))
    script = 'mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && exec "$3" -c "$4" "$2/$5.sqlite" "$6"'
    for name in ("clean", "killed"):
        r = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(src), str(mnt), sys.executable, READER,
                            name, str(tmp_path / f"report_{name}")],
                           capture_output=True, text=True, timeout=180, check=False)
        assert r.returncode == 0, r.stderr
        assert "models: 2 samples:" in r.stdout and "samples: 0" not in r.stdout, r.stdout
        writer = [ln for ln in r.stdout.splitlines() if ln.startswith("writer:")]
        assert len(writer) == 1 and "read-only" in writer[0], r.stdout
        assert (tmp_path / f"report_{name}" / "index.html").is_file()
    assert sorted(os.listdir(src)) == listing                        # nothing created beside the store


def test_ladder_rungs_round_trip_and_a_v3_store_gains_the_table(tmp_path):
    db = tmp_path / "v3.sqlite"
    older_store(db, 3, "ladder_rungs")
    reader = Store(db, readonly=True)
    assert reader.ladder_rungs() == []                           # an older store read as it is
    reader.close()
    store = Store(db)
    rung = dict(ladder="l", run="l-depth4", axis="model.depth", value=4, position=1, params=1000,
                non_embedding_params=600, tokens=20000, flops=1.2e8, budget={"tokens_per_param": 20})
    store.put_ladder_rung(rung)
    store.put_ladder_rung(dict(rung, run="l-depth2", value=2, position=0))
    store.put_ladder_rung(dict(rung, tokens=30000))              # the same (ladder, run) replaced
    rows = store.ladder_rungs("l")
    assert [(r["run"], r["value"], r["tokens"]) for r in rows] == [("l-depth2", "2", 20000), ("l-depth4", "4", 30000)]
    assert json.loads(rows[0]["budget_json"]) == {"tokens_per_param": 20} and store.ladder_rungs("other") == []
    store.close()
