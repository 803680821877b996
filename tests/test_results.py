"""`gptlab results` (gptlab/compare/results.py): the store's bpb, samples with findings and roll-ups out as JSON,
CSV and Parquet — numbers equal to the store's and to gptlab.diagnose.rollup's (the report's), the field lists
pinned, bad input refused in one line with nothing written, and files replaced whole.

    python -m pytest tests/test_results.py
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
from compare_fixtures import BPB, HASH, PROBES, SAMPLES, build_store
from report_fixtures import add_run

from gptlab.cli import main
from gptlab.compare import results
from gptlab.compare.select import detector_version, select
from gptlab.diagnose.modes import MODES
from gptlab.diagnose.rollup import rollup
from gptlab.errors import GptlabError
from gptlab.report.context import build_context
from gptlab.store import Store

# The stable contract (docs/compare.md, "Results out of the store"): append only.
KEY = ["run", "step", "weights_hash"]
BPB_FIELDS = KEY + ["tokens_seen", "domain", "bpb", "nll", "bytes", "tokens", "data_hash", "protocol"]
SAMPLE_FIELDS = KEY + ["probe", "probe_hash", "domain", "language", "prompt", "temperature", "top_k", "top_p",
                       "seed", "sample_index", "max_tokens", "n_tokens", "completion", "detector_version",
                       "failures", "passed", "metrics", "evidence"]
ROLLUP_FIELDS = KEY + ["temperature", "domain", "detector_version", "n", "clean", "clean_rate", "tested", "passed",
                       "pass_at_1", "pass_at_5", "pass_at_10", "probes", "probes_working", "verdict", "dominant",
                       "why"] + [f"rate_{m}" for m in ("prompt_echo", "repetition_loop", "word_fixation",
                                                       "number_fixation", "topic_drift", "invented_words",
                                                       "no_code", "syntax_error",
                                                       "test_failure", "missing_requirement",
                                                       "hallucinated_section", "malformed_figure")]
BENCHMARK_FIELDS = KEY + ["task", "task_version", "num_fewshot", "limit", "protocol", "metric", "filter", "value",
                          "stderr", "higher_is_better", "aggregation", "n_docs", "lm_eval_version"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "r.sqlite"
    build_store(path).close()
    return path


@pytest.fixture(scope="module")
def doc(db):
    """The JSON export of all three fixture models."""
    return json.loads(results.export(db, ["code", "prose", "gpt2"]))


def _json_out(capsys, db, *targets, what="bpb,samples,rollup,benchmarks"):
    """The command's stdout, parsed: one JSON document."""
    assert main(["results", *targets, "--db", str(db), "--what", what]) == 0
    return json.loads(capsys.readouterr().out)


def _expected_rollup(store, hashes) -> dict:
    """(weights_hash, temperature, domain) -> rollup.rollup's domain entry, computed here from the store."""
    version = detector_version(store, hashes)
    groups = defaultdict(list)
    for r in store.sample_rows(hashes, version):
        if r["failures_json"] is not None:
            groups[(r["weights_hash"], r["temperature"])].append(
                {"probe": r["probe"], "domain": r["domain"], "failures": json.loads(r["failures_json"]),
                 "passed": None if r["passed"] is None else bool(r["passed"]), "max_tokens": None,
                 "temperature": r["temperature"]})
    return {(h, t, d): e for (h, t), rows in groups.items() for d, e in rollup(rows).domains.items()}


def _same_rollup(row: dict, entry: dict):
    assert row["n"] == entry["n"] and row["clean"] == entry["clean"] and row["clean_rate"] == entry["clean_rate"]
    assert row["tested"] == entry.get("tested", 0) and row["passed"] == entry.get("passed", 0)
    for k in (1, 5, 10):
        assert row[f"pass_at_{k}"] == entry.get(f"pass@{k}")
    assert {m: row[f"rate_{m}"] for m in MODES} == {m: entry["rates"].get(m, 0.0) for m in MODES}
    assert (row["verdict"], row["dominant"], row["why"]) == (entry["verdict"].verdict, entry["verdict"].dominant,
                                                             entry["verdict"].why)
    assert (row["probes"], row["probes_working"]) == (entry["probes"], entry["probes_working"])


# ---------------------------------------------------------------- the contract


def test_field_lists_are_pinned():
    assert list(results.FIELDS["bpb"]) == BPB_FIELDS
    assert list(results.FIELDS["samples"]) == SAMPLE_FIELDS
    assert list(results.FIELDS["rollup"]) == ROLLUP_FIELDS
    assert list(results.FIELDS["benchmarks"]) == BENCHMARK_FIELDS
    assert results.TABLES == ("bpb", "samples", "rollup", "benchmarks") and results.EXPORT_VERSION == 1


def test_the_command_prints_the_document(db, doc, capsys):
    assert _json_out(capsys, db, "code", "prose", "gpt2") == doc


def test_json_document_holds_the_stores_numbers(db, doc):
    assert doc["export_version"] == 1 and doc["detector_version"]
    assert [list(r) for r in doc["bpb"]] == [BPB_FIELDS] * len(doc["bpb"])
    store = Store(db, readonly=True)
    try:
        stored = {(r["weights_hash"], r["domain"]): r for r in store.bpb_rows()}
        samples = store.sample_rows(None, doc["detector_version"])
    finally:
        store.close()
    assert len(doc["bpb"]) == len(stored) == sum(len(d) for d in BPB.values())
    for r in doc["bpb"]:
        s = stored[(r["weights_hash"], r["domain"])]
        assert (r["bpb"], r["nll"], r["bytes"], r["tokens"], r["run"], r["step"]) == \
            (s["bpb"], s["nll"], s["bytes"], s["tokens"], s["run"], s["step"])
    assert len(doc["samples"]) == len(samples) == len(BPB) * len(PROBES) * SAMPLES * 2
    by_key = {(s["weights_hash"], s["probe"], s["sample_index"], s["max_tokens"]): s for s in samples}
    for r in doc["samples"]:
        s = by_key[(r["weights_hash"], r["probe"], r["sample_index"], r["max_tokens"])]
        assert r["failures"] == json.loads(s["failures_json"]) and r["completion"] == s["completion"]
        assert r["passed"] == (None if s["passed"] is None else bool(s["passed"]))
        assert (r["metrics"], r["evidence"], r["temperature"], r["seed"]) == ({}, {}, 0.8, 0)
    quick = [r for r in doc["samples"] if r["weights_hash"] == HASH["code"] and r["probe"] == "code_quicksort_long"]
    assert sum(r["passed"] for r in quick) == 6 * 2                      # QUICKSORT_PASSES, both lengths


def test_rollup_is_the_diagnosis_rollup(db, doc):
    store = Store(db, readonly=True)
    try:
        expected = _expected_rollup(store, list(HASH.values()))
    finally:
        store.close()
    got = {(r["weights_hash"], r["temperature"], r["domain"]): r for r in doc["rollup"]}
    assert set(got) == set(expected) and len(got) == len(doc["rollup"])
    for key, row in got.items():
        _same_rollup(row, expected[key])
    code = got[(HASH["code"], 0.8, "code")]
    assert code["n"] == 4 * SAMPLES * 2 and code["tested"] == 2 * SAMPLES * 2


def test_rollup_equals_the_reports_numbers_per_checkpoint_and_temperature(tmp_path, capsys):
    """A ten-checkpoint run named by its run directory: every checkpoint is exported, and at the report's
    temperature each step's roll-up is the report's own."""
    store = Store(tmp_path / "r.sqlite")
    add_run(store, root=str(tmp_path))
    (tmp_path / "d12").mkdir()
    ctx = build_context(store, select(store, ["d12"]))
    expected = _expected_rollup(store, [m["weights_hash"] for m in ctx.models])
    store.close()
    got = _json_out(capsys, tmp_path / "r.sqlite", str(tmp_path / "d12"), what="bpb,rollup")
    assert "samples" not in got
    assert len({r["weights_hash"] for r in got["bpb"]}) == 10
    assert {(r["step"], r["temperature"]) for r in got["rollup"]} == {(45000, 0.8), (50000, 0.8), (50000, 1.0)}
    for r in got["rollup"]:
        _same_rollup(r, expected[(r["weights_hash"], r["temperature"], r["domain"])])
        if r["temperature"] == ctx.diagnosis.temperature:
            _same_rollup(r, ctx.diagnosis.by_step[r["step"]].domains[r["domain"]])


# ---------------------------------------------------------------- the other formats


def test_csv_round_trip(db, doc, tmp_path):
    out = tmp_path / "csv"
    assert main(["results", "code", "prose", "gpt2", "--db", str(db), "--format", "csv", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["benchmarks.csv", "bpb.csv", "rollup.csv", "samples.csv"]
    for table in results.TABLES:
        with open(out / f"{table}.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        assert reader.fieldnames == list(results.FIELDS[table]) and len(rows) == len(doc[table])
        for got, want in zip(rows, doc[table]):
            for name, kind in results.FIELDS[table].items():
                cell, value = got[name], want[name]
                if value is None:
                    assert cell == ""
                elif kind in ("list", "json"):
                    assert json.loads(cell) == value
                elif kind == "bool":
                    assert cell == ("true" if value else "false")
                elif kind == "float":
                    assert float(cell) == value
                elif kind == "int":
                    assert int(cell) == value
                else:
                    assert cell == value


def test_parquet_round_trip(db, doc, tmp_path):
    out = tmp_path / "pq"
    assert main(["results", "code", "prose", "gpt2", "--db", str(db), "--format", "parquet", "--out", str(out)]) == 0
    for table in results.TABLES:
        t = pq.read_table(out / f"{table}.parquet")
        assert t.column_names == list(results.FIELDS[table])
        rows = t.to_pylist()
        for r in rows:
            for name, kind in results.FIELDS[table].items():
                if kind == "json" and r[name] is not None:
                    r[name] = json.loads(r[name])
        assert rows == doc[table]
    assert str(pq.read_schema(out / "bpb.parquet").field("bytes").type) == "int64"


def test_json_to_a_file_equals_stdout(db, doc, tmp_path):
    out = tmp_path / "sub" / "all.json"
    assert main(["results", "code", "prose", "gpt2", "--db", str(db), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == doc
    assert [p.name for p in out.parent.iterdir()] == ["all.json"]


def test_the_command_prints_only_json_on_stdout(db):
    res = subprocess.run([sys.executable, "-m", "gptlab", "results", "code", "--db", str(db), "--what", "bpb"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert {r["domain"] for r in json.loads(res.stdout)["bpb"]} == set(BPB["code"])


def test_the_store_is_opened_read_only(db, monkeypatch):
    opened = []
    real = results.Store

    def spy(path, **kw):
        opened.append(kw)
        return real(path, **kw)
    monkeypatch.setattr(results, "Store", spy)
    results.export(db, ["code"], what="bpb")
    assert opened == [{"readonly": True}]


# ---------------------------------------------------------------- bad input and faults


@pytest.mark.parametrize("args", [
    ["code", "--what", "bpb,nonsense"],                     # unknown table
    ["code", "--what", ","],                                # no table
    ["code", "--format", "xml", "--out", "{tmp}/x"],        # unknown format
    ["code", "--format", "csv"],                            # csv without --out
    ["code", "--format", "parquet"],                        # parquet without --out
    ["code", "--format", "csv", "--out", "{tmp}/afile"],    # --out is a file
    ["code", "--out", "{tmp}/adir"],                        # json into a folder
    ["nothing", "--format", "csv", "--out", "{tmp}/x"],     # a PATH not in the store
    ["code", "--format", "csv", "--out", "{tmp}/x", "--db", "{tmp}/none.sqlite"],   # no store
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(db, tmp_path, capsys, args):
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "adir").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = ["results", *[a.format(tmp=tmp_path) for a in args]]
    if "--db" not in argv:
        argv += ["--db", str(db)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("gptlab: error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "afile").read_text() == "mine"


def test_an_empty_store_is_an_error(tmp_path):
    Store(tmp_path / "empty.sqlite").close()
    with pytest.raises(GptlabError, match="holds no results"):
        results.export(tmp_path / "empty.sqlite", ["anything"])


def test_a_failed_write_leaves_the_previous_files_whole(db, tmp_path, monkeypatch):
    out = tmp_path / "csv"
    results.export(db, ["code"], fmt="csv", out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = results._write_csv

    def failing(path, table, records):
        real(path, table, records)
        if table == "rollup":
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(results, "_write_csv", failing)
    with pytest.raises(GptlabError, match="No space left"):
        results.export(db, ["prose"], fmt="csv", out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before     # no temporary folder left either
