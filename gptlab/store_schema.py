"""The results store's tables, their version, and the migrations of older stores (used by gptlab/store.py).

    gptlab eval runs/demo --db results.sqlite      (creates or migrates the store)
    python -m pytest tests/test_store.py
"""

from __future__ import annotations

SCHEMA_VERSION = 4      # v2: the samples key `samples_key` (NULL top_k/top_p count as one value); v3: benchmarks;
                        # v4: ladder_rungs

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
CREATE TABLE IF NOT EXISTS benchmarks (
    weights_hash TEXT, task TEXT, task_version TEXT, num_fewshot INTEGER, doc_limit REAL, protocol TEXT,
    metrics_json TEXT, docs_json TEXT, n_docs INTEGER, lm_eval_version TEXT, created_at REAL,
    PRIMARY KEY (weights_hash, task, task_version, num_fewshot, doc_limit, protocol));
CREATE TABLE IF NOT EXISTS ladder_rungs (
    ladder TEXT, run TEXT, axis TEXT, value TEXT, position INTEGER, params INTEGER,
    non_embedding_params INTEGER, tokens INTEGER, flops REAL, budget_json TEXT, updated_at REAL,
    PRIMARY KEY (ladder, run));
"""
# The samples key since v2. The table's UNIQUE above is v1's, kept so that a new and a migrated store have one
# table definition; it lets rows with NULL top_k/top_p repeat, this index does not. Created after a v1 store's
# duplicates are merged (migrate_v1).
SAMPLE_KEY = "weights_hash, probe_hash, temperature, IFNULL(top_k, -1), IFNULL(top_p, -1), seed, sample_index, max_tokens"
SAMPLES_KEY_INDEX = f"CREATE UNIQUE INDEX IF NOT EXISTS samples_key ON samples ({SAMPLE_KEY})"


def duplicate_samples(db) -> list[dict]:
    """Sets of samples with one key (only a v1 store can hold them): {"keep": lowest id, "ids": "1,2,3"}."""
    return db.execute(f"SELECT MIN(id) AS keep, GROUP_CONCAT(id) AS ids FROM samples GROUP BY {SAMPLE_KEY} "
                      f"HAVING COUNT(*) > 1").fetchall()


def migrate_v1(db) -> int:
    """v1 -> v2, inside the caller's transaction: keep the first row (lowest id) of each duplicate set; a
    duplicate's findings move to it for the detector versions it lacks (lowest duplicate first) and are dropped
    otherwise; then the duplicates go. Returns the number of rows removed."""
    dups = sorted((int(i), g["keep"]) for g in duplicate_samples(db) for i in g["ids"].split(",")
                  if int(i) != g["keep"])
    for dup, keep in dups:
        db.execute("UPDATE OR IGNORE findings SET sample_id=? WHERE sample_id=?", (keep, dup))
        db.execute("DELETE FROM findings WHERE sample_id=?", (dup,))
        db.execute("DELETE FROM samples WHERE id=?", (dup,))
    return len(dups)


def statements(script: str):
    return [s.strip() for s in script.split(";") if s.strip()]
