"""The SQLite results store: every number a report shows is read from here, and nothing is computed twice.

    gptlab eval runs/demo --db results.sqlite      (writes)      gptlab report runs/demo --db results.sqlite (reads)

Keys. A model is its weights' content hash (`models.weights_hash`), so a moved or renamed checkpoint keeps its
results. bpb rows are keyed by (weights, domain, data hash, protocol version); samples by (weights, probe hash,
sampling parameters, seed, sample index, max_tokens); findings by (sample, detector version). Each unit of work
is written in one transaction (WAL journal), so a process killed at any moment leaves either the whole unit or
nothing: a restarted job finds exactly what is missing.

Exactly once. top_k and top_p are NULL for the default sampling, and SQL treats NULLs as distinct inside a
UNIQUE key, so the samples key is the unique index `samples_key` over IFNULL(top_k, -1), IFNULL(top_p, -1):
two writers racing on one store (two `gptlab eval --db same.sqlite`) store each sample once. The columns stay
NULL, so readers are unchanged.

Versions. SCHEMA_VERSION 2 added `samples_key`. A v1 store is migrated when a writer opens it, in one
transaction: of each set of samples with one key the first row (lowest id) is kept, a duplicate's findings move
to it for the detector versions it lacks and are dropped otherwise, then the duplicates are deleted. Version 3
added the `benchmarks` table (lm-evaluation-harness scores, keyed by weights, task, task version, n-shot,
document limit (0: all) and the adapter's protocol); a v2 store gains it when a writer opens it, and a reader
of a v2 store sees no benchmark rows. Version 4 added `ladder_rungs` (which runs form a `gptlab ladder`, and each
rung's axis value, parameters, tokens and budget), the same way. The tables and migrations are in
gptlab/store_schema.py. A store from a newer gptlab is refused in one line.

Readers. `Store(path, readonly=True)` (report, compare --no-eval, check) never writes: it opens the file with
SQLite's `mode=ro`, and, when that fails because the WAL index (-shm) cannot be created (a read-only folder or
mount) and no -wal file is there, as `immutable=1`. A read-only store refuses writes with a one-line error.

    python -m pytest tests/test_store.py tests/test_faults_eval.py
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.store_schema import (
    SAMPLES_KEY_INDEX,
    SCHEMA,
    SCHEMA_VERSION,
    duplicate_samples,
    migrate_v1,
    statements,
)

__all__ = ["SCHEMA_VERSION", "Store"]

def _row(cur, values):
    return {d[0]: v for d, v in zip(cur.description, values)}


class Store:
    """The results store at `path`. Writers (the default) create and migrate it; `readonly=True` (report,
    compare --no-eval, check) opens it without writing anything, also on a read-only file system."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.db = None
        try:
            if readonly:
                self._open_readonly()
            else:
                self._open_writable()
        except GptlabError:
            self.close()
            raise
        except sqlite3.DatabaseError as e:
            self.close()
            if not readonly and _read_only_location(self.path):
                raise GptlabError(f"{self.path}: cannot write the results store: the file or its folder is "
                                  f"read-only ({e})") from None
            raise GptlabError(f"{self.path}: not a usable SQLite results store ({e})") from None
        except OSError as e:
            self.close()
            raise GptlabError(f"{self.path}: cannot open results store ({e.strerror})") from None

    def _connect(self, target: str, uri: bool = False) -> None:
        self.db = sqlite3.connect(target, timeout=30, isolation_level=None, uri=uri)
        self.db.row_factory = _row

    def _open_writable(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _read_only_location(self.path):     # SQLite would open it read-only and fail at the first write
            raise sqlite3.OperationalError("a read-only file system, or no write permission")
        self._connect(str(self.path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            version = self._version()
            if version is not None and version > SCHEMA_VERSION:
                raise self._newer(version)
            for statement in statements(SCHEMA):
                self.db.execute(statement)
            if version is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif version < SCHEMA_VERSION:             # v2/v3 -> v4: SCHEMA above created the new tables
                if version < 2:                        # v1: merge the duplicate samples the old key let in
                    migrate_v1(self.db)
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            self.db.execute(SAMPLES_KEY_INDEX)

    def _open_readonly(self) -> None:
        if not self.path.is_file():
            raise GptlabError(f"{self.path}: no results store here")
        uri = self.path.resolve().as_uri()
        self._connect(uri + "?mode=ro", uri=True)
        try:
            version = self._version()                  # the first read opens the file (and its -shm)
        except sqlite3.OperationalError as e:
            # mode=ro needs the WAL index (-shm): in a read-only folder it cannot be created. Without a -wal
            # file every committed row is in the main file, which nothing can change here: read it immutable.
            wal = Path(f"{self.path}-wal")
            if getattr(e, "sqlite_errorname", "") != "SQLITE_CANTOPEN" or (wal.exists() and wal.stat().st_size):
                raise
            self.db.close()
            self._connect(uri + "?immutable=1", uri=True)
            version = self._version()
        self.db.execute("PRAGMA query_only=ON")
        if version is None:
            raise GptlabError(f"{self.path}: not a gptlab results store (no schema version)")
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        if version < 2 and duplicate_samples(self.db):
            raise GptlabError(f"{self.path}: written by an older gptlab (schema v{version}) and holds duplicate "
                              f"samples; any `gptlab eval ... --db {self.path}` migrates it (readers never write)")

    def _version(self) -> int | None:
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return None
        got = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if got is None:
            return None
        try:
            return int(got["value"])
        except (TypeError, ValueError):
            raise GptlabError(f"{self.path}: results store with an unreadable schema version "
                              f"{got['value']!r}") from None

    def _newer(self, version: int) -> GptlabError:
        return GptlabError(f"{self.path}: results store schema v{version}, this gptlab reads v{SCHEMA_VERSION}; "
                           f"upgrade gptlab or use a new --db file")

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    @contextmanager
    def transaction(self):
        """One unit of work: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (also KeyboardInterrupt).
        Inside another transaction it joins that one (a merge of many units commits them together)."""
        if self.readonly:
            raise GptlabError(f"{self.path}: opened read-only (a reader); nothing can be written to it")
        if self.db.in_transaction:
            yield self.db
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            name = getattr(e, "sqlite_errorname", "")
            if name.startswith("SQLITE_READONLY"):
                raise GptlabError(f"{self.path}: cannot write the results store ({e})") from None
            if name.startswith("SQLITE_BUSY"):
                raise GptlabError(f"{self.path}: another process kept the results store locked for 30 s "
                                  f"({e}); try again") from None
            raise

    def query(self, sql: str, params=()) -> list[dict]:
        return self.db.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ models and runs

    def put_model(self, info) -> None:
        """Record a gptlab.checkpoints.ModelInfo (idempotent; the newest path/run wins)."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (info.weights_hash, info.format, str(info.path), info.run, info.step, info.family, info.params,
                 info.vocab_size, info.context, info.tokens_seen, info.tokenizer_hash,
                 json.dumps(info.config, default=str), json.dumps(info.meta, default=str), time.time()))

    def put_run(self, run: str, path: str, config: dict, tokens_per_step: int | None,
                metrics: list[dict]) -> None:
        """A training run's config and its logged metrics (rows of metrics.jsonl), replacing older copies."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?)",
                            (run, str(path), json.dumps(config, default=str), tokens_per_step, time.time()))
            for m in metrics:
                val = m.get("val_bpb_domains")
                self.db.execute(
                    "INSERT OR REPLACE INTO train_metrics VALUES (?,?,?,?,?,?,?,?,?)",
                    (run, m["step"], m.get("tokens_seen"), m.get("train_loss"), m.get("lr"),
                     m.get("tokens_per_s"), m.get("mfu"), m.get("val_bpb"),
                     json.dumps(val) if val is not None else None))

    def models(self, run: str | None = None) -> list[dict]:
        if run is None:
            return self.query("SELECT * FROM models ORDER BY run, step")
        return self.query("SELECT * FROM models WHERE run=? ORDER BY step", (run,))

    def runs(self) -> list[dict]:
        return self.query("SELECT * FROM runs ORDER BY run")

    def train_metrics(self, run: str) -> list[dict]:
        return self.query("SELECT * FROM train_metrics WHERE run=? ORDER BY step", (run,))

    # ------------------------------------------------------------------ bits per byte

    def get_bpb(self, weights_hash, domain, data_hash, protocol) -> dict | None:
        return self.db.execute("SELECT * FROM bpb WHERE weights_hash=? AND domain=? AND data_hash=? AND "
                               "protocol=?", (weights_hash, domain, data_hash, protocol)).fetchone()

    def put_bpb(self, weights_hash, domain, data_hash, protocol, result) -> None:
        """`result`: gptlab.evaluate.bpb.BpbResult; per-document (nll, bytes) kept for bootstrap intervals."""
        docs = [[d.nll, d.bytes] for d in result.docs]
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO bpb VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (weights_hash, domain, data_hash, protocol, result.bpb, result.nll, result.bytes,
                             result.tokens, json.dumps(docs), time.time()))

    def bpb_rows(self, weights_hashes=None) -> list[dict]:
        sql = ("SELECT b.*, m.run, m.step, m.tokens_seen FROM bpb b JOIN models m USING (weights_hash)")
        if weights_hashes is None:
            return self.query(sql + " ORDER BY m.run, m.step, b.domain")
        marks = ",".join("?" * len(weights_hashes))
        return self.query(sql + f" WHERE b.weights_hash IN ({marks}) ORDER BY m.run, m.step, b.domain",
                          tuple(weights_hashes))

    # ------------------------------------------------------------------ probes, samples, findings

    def put_probe(self, probe_hash, suite, suite_version, name, domain, language, prompt, spec: dict) -> None:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO probes VALUES (?,?,?,?,?,?,?,?)",
                            (probe_hash, suite, suite_version, name, domain, language, prompt,
                             json.dumps(spec, default=str)))

    def existing_samples(self, weights_hash, probe_hash, temperature, top_k, top_p, seed) -> set:
        """{(sample_index, max_tokens)} already stored for this model, probe and sampling setup."""
        rows = self.db.execute(
            "SELECT sample_index, max_tokens FROM samples WHERE weights_hash=? AND probe_hash=? AND "
            "temperature=? AND top_k IS ? AND top_p IS ? AND seed=?",
            (weights_hash, probe_hash, temperature, top_k, top_p, seed)).fetchall()
        return {(r["sample_index"], r["max_tokens"]) for r in rows}

    def put_samples(self, rows: list[dict]) -> int:
        """rows: dicts with weights_hash, probe_hash, temperature, top_k, top_p, seed, sample_index,
        max_tokens, completion, n_tokens — all written in one transaction. A key already stored (by this job
        or a concurrent one) keeps its row; returns the number of rows inserted."""
        now = time.time()
        before = self.db.total_changes
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO samples (weights_hash, probe_hash, temperature, top_k, top_p, seed, "
                "sample_index, max_tokens, completion, n_tokens, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r["weights_hash"], r["probe_hash"], r["temperature"], r["top_k"], r["top_p"], r["seed"],
                  r["sample_index"], r["max_tokens"], r["completion"], r["n_tokens"], now) for r in rows])
        return self.db.total_changes - before

    def samples_without_findings(self, detector_version: str, weights_hashes=None) -> list[dict]:
        sql = ("SELECT s.*, p.name AS probe, p.domain, p.language, p.prompt, p.spec_json FROM samples s "
               "JOIN probes p USING (probe_hash) LEFT JOIN findings f ON f.sample_id = s.id AND "
               "f.detector_version = ? WHERE f.sample_id IS NULL")
        params = [detector_version]
        if weights_hashes is not None:
            sql += f" AND s.weights_hash IN ({','.join('?' * len(weights_hashes))})"
            params += list(weights_hashes)
        return self.query(sql + " ORDER BY s.id", tuple(params))

    def put_findings(self, rows: list[dict]) -> None:
        """rows: dicts with sample_id, detector_version, failures, metrics, evidence, passed (bool|None)."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO findings VALUES (?,?,?,?,?,?,?)",
                [(r["sample_id"], r["detector_version"], json.dumps(r["failures"]),
                  json.dumps(r["metrics"], default=str), json.dumps(r["evidence"], default=str),
                  None if r.get("passed") is None else int(bool(r["passed"])), now) for r in rows])

    def sample_rows(self, weights_hashes=None, detector_version: str | None = None) -> list[dict]:
        """Samples joined with their probe, model and (when a version is given) findings, for reports."""
        sql = ("SELECT s.*, p.name AS probe, p.domain, p.language, p.prompt, p.suite, p.suite_version, "
               "p.spec_json, m.run, m.step, f.failures_json, f.metrics_json, f.evidence_json, f.passed "
               "FROM samples s JOIN probes p USING (probe_hash) JOIN models m USING (weights_hash) "
               "LEFT JOIN findings f ON f.sample_id = s.id AND f.detector_version IS ?")
        params = [detector_version]
        if weights_hashes is not None:
            sql += f" WHERE s.weights_hash IN ({','.join('?' * len(weights_hashes))})"
            params += list(weights_hashes)
        return self.query(sql + " ORDER BY m.run, m.step, p.name, s.max_tokens, s.sample_index",
                          tuple(params))

    # ------------------------------------------------------------------ benchmarks (lm-evaluation-harness)

    def get_benchmark(self, weights_hash, task, task_version, num_fewshot, doc_limit, protocol) -> dict | None:
        if not self._has_table("benchmarks"):
            return None
        return self.db.execute("SELECT * FROM benchmarks WHERE weights_hash=? AND task=? AND task_version=? AND "
                               "num_fewshot=? AND doc_limit=? AND protocol=?",
                               (weights_hash, task, task_version, num_fewshot, doc_limit, protocol)).fetchone()

    def put_benchmark(self, row: dict) -> None:
        """One task's scores: the key columns, metrics (name -> value, stderr, ...), per-document values."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO benchmarks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (row["weights_hash"], row["task"], str(row["task_version"]), int(row["num_fewshot"]),
                             float(row["doc_limit"]), row["protocol"], json.dumps(row["metrics"]),
                             json.dumps(row["docs"]), int(row["n_docs"]), row["lm_eval_version"], time.time()))

    def benchmark_rows(self, weights_hashes=None) -> list[dict]:
        """Benchmark rows joined with their model's run and step (none in a v2 store opened read-only)."""
        if not self._has_table("benchmarks"):
            return []
        sql = "SELECT b.*, m.run, m.step FROM benchmarks b JOIN models m USING (weights_hash)"
        order = " ORDER BY m.run, m.step, b.task, b.num_fewshot, b.doc_limit, b.created_at"
        if weights_hashes is None:
            return self.query(sql + order)
        marks = ",".join("?" * len(weights_hashes))
        return self.query(sql + f" WHERE b.weights_hash IN ({marks})" + order, tuple(weights_hashes))

    # ------------------------------------------------------------------ ladders (gptlab ladder)

    def put_ladder_rung(self, row: dict) -> None:
        """One rung of a ladder: its run name (as in `runs` / `models.run`), the axis it varies and this rung's
        value on it, its position (0 = smallest), parameter counts, planned training tokens and FLOPs, and the
        budget it was given ({"tokens_per_param": 20} or {"flops": ...}). Replaces an older copy."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO ladder_rungs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (row["ladder"], row["run"], row["axis"], str(row["value"]), int(row["position"]),
                             int(row["params"]), int(row["non_embedding_params"]), int(row["tokens"]),
                             float(row["flops"]), json.dumps(row.get("budget", {})), time.time()))

    def ladder_rungs(self, ladder: str | None = None) -> list[dict]:
        """Rungs in ladder then position order (none in an older store opened read-only)."""
        if not self._has_table("ladder_rungs"):
            return []
        if ladder is None:
            return self.query("SELECT * FROM ladder_rungs ORDER BY ladder, position")
        return self.query("SELECT * FROM ladder_rungs WHERE ladder=? ORDER BY position", (ladder,))

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() \
            is not None


def _read_only_location(path: Path) -> bool:
    """Whether `path` (or, when it does not exist, its folder) cannot be written: a read-only mount or
    permission bits."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))
