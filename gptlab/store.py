"""The SQLite results store: every number a report shows is read from here, and nothing is computed twice.

    gptlab eval runs/demo --db results.sqlite      (writes)      gptlab report runs/demo --db results.sqlite (reads)

Keys. A model is its weights' content hash (`models.weights_hash`), so a moved or renamed checkpoint keeps its
results. bpb rows are keyed by (weights, domain, data hash, protocol version); samples by (weights, probe hash,
sampling parameters, seed, sample index, max_tokens); findings by (sample, detector version). Each unit of work
is written in one transaction (WAL journal), so a process killed at any moment leaves either the whole unit or
nothing: a restarted job finds exactly what is missing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from gptlab.errors import GptlabError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS models (
    weights_hash TEXT PRIMARY KEY, format TEXT, path TEXT, run TEXT, step INTEGER, family TEXT,
    params INTEGER, vocab_size INTEGER, context INTEGER, tokens_seen INTEGER, tokenizer_hash TEXT,
    config_json TEXT, meta_json TEXT, updated_at REAL);
CREATE INDEX IF NOT EXISTS models_run ON models (run, step);
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY, path TEXT, config_json TEXT, tokens_per_step INTEGER, updated_at REAL);
CREATE TABLE IF NOT EXISTS train_metrics (
    run TEXT, step INTEGER, tokens_seen INTEGER, train_loss REAL, lr REAL, tokens_per_s REAL, mfu REAL,
    val_bpb REAL, val_json TEXT, PRIMARY KEY (run, step));
CREATE TABLE IF NOT EXISTS bpb (
    weights_hash TEXT, domain TEXT, data_hash TEXT, protocol TEXT,
    bpb REAL, nll REAL, bytes INTEGER, tokens INTEGER, docs_json TEXT, created_at REAL,
    PRIMARY KEY (weights_hash, domain, data_hash, protocol));
CREATE TABLE IF NOT EXISTS probes (
    probe_hash TEXT PRIMARY KEY, suite TEXT, suite_version TEXT, name TEXT, domain TEXT, language TEXT,
    prompt TEXT, spec_json TEXT);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, weights_hash TEXT, probe_hash TEXT, temperature REAL, top_k INTEGER,
    top_p REAL, seed INTEGER, sample_index INTEGER, max_tokens INTEGER, completion TEXT, n_tokens INTEGER,
    created_at REAL,
    UNIQUE (weights_hash, probe_hash, temperature, top_k, top_p, seed, sample_index, max_tokens));
CREATE TABLE IF NOT EXISTS findings (
    sample_id INTEGER REFERENCES samples(id), detector_version TEXT, failures_json TEXT, metrics_json TEXT,
    evidence_json TEXT, passed INTEGER, created_at REAL, PRIMARY KEY (sample_id, detector_version));
"""


def _row(cur, values):
    return {d[0]: v for d, v in zip(cur.description, values)}


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db.row_factory = _row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                for statement in _statements(SCHEMA):
                    self.db.execute(statement)
                got = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if got is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(got["value"]) != SCHEMA_VERSION:
                    raise GptlabError(f"{self.path}: results store schema v{got['value']}, this gptlab reads "
                                      f"v{SCHEMA_VERSION}; use a new --db file")
        except sqlite3.DatabaseError as e:
            raise GptlabError(f"{self.path}: not a usable SQLite results store ({e})") from None
        except OSError as e:
            raise GptlabError(f"{self.path}: cannot open results store ({e.strerror})") from None

    def close(self):
        self.db.close()

    @contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

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

    def put_samples(self, rows: list[dict]) -> None:
        """rows: dicts with weights_hash, probe_hash, temperature, top_k, top_p, seed, sample_index,
        max_tokens, completion, n_tokens — all written in one transaction."""
        now = time.time()
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO samples (weights_hash, probe_hash, temperature, top_k, top_p, seed, "
                "sample_index, max_tokens, completion, n_tokens, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(r["weights_hash"], r["probe_hash"], r["temperature"], r["top_k"], r["top_p"], r["seed"],
                  r["sample_index"], r["max_tokens"], r["completion"], r["n_tokens"], now) for r in rows])

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


def _statements(script: str):
    return [s.strip() for s in script.split(";") if s.strip()]
