"""What the store holds for some checkpoints, as tables for other tools: bits per byte, samples with their
findings, the roll-ups per (checkpoint, temperature, probe domain) and lm-evaluation-harness scores (one
record per task metric, gptlab/compare/benchmarks.py), written as JSON, CSV or Parquet.

    gptlab results runs/d12 --db results.sqlite                          one JSON document on stdout
    gptlab results runs/d12 --format csv --out d12_results               bpb.csv, samples.csv, rollup.csv
    gptlab results code prose --format parquet --out out --what rollup   out/rollup.parquet
    gptlab results runs/d12 --what benchmarks                            task, metric, value, stderr ...
    python -m pytest tests/test_results.py

PATHs are matched exactly as `gptlab report` matches them (select.select): a run directory or a run name is
every checkpoint of that run. Samples carry the findings of the detector version select.detector_version picks
(the one the report reads); a sample without findings of that version has null findings. Roll-ups are
gptlab.diagnose.rollup's numbers (the single definition of rates, pass@k and verdicts) over the diagnosed
samples of one checkpoint at one temperature, every length of a probe pooled: the report's per-step roll-up.

FIELDS is the stable contract (docs/compare.md, "Results out of the store"; tests/test_results.py pins it):
fields are added at the end, never renamed or dropped without raising EXPORT_VERSION. JSON is one document
{"export_version", "store", "detector_version", <table>: [records]}; CSV and Parquet are one file per table
(`<table>.csv`, `<table>.parquet`) in a folder, list and object fields as JSON text in CSV (and objects in
Parquet), an empty CSV cell for null. Every argument and PATH is checked before anything is written, and each
file is written beside its place and renamed into it: a failure never leaves a half-written file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from gptlab.compare.benchmarks import metric_records
from gptlab.compare.select import detector_version, select
from gptlab.diagnose.modes import MODES
from gptlab.diagnose.rollup import PASS_KS, rollup
from gptlab.errors import GptlabError
from gptlab.store import Store

EXPORT_VERSION = 1
TABLES = ("bpb", "samples", "rollup", "benchmarks")
FORMATS = ("json", "csv", "parquet")
MODEL_KEY = {"run": "str", "step": "int", "weights_hash": "str"}
# table -> field -> kind: str, int, float, bool, list (of strings), json (an object)
FIELDS: dict[str, dict[str, str]] = {
    "bpb": {**MODEL_KEY, "tokens_seen": "int", "domain": "str", "bpb": "float", "nll": "float", "bytes": "int",
            "tokens": "int", "data_hash": "str", "protocol": "str"},
    "samples": {**MODEL_KEY, "probe": "str", "probe_hash": "str", "domain": "str", "language": "str",
                "prompt": "str", "temperature": "float", "top_k": "int", "top_p": "float", "seed": "int",
                "sample_index": "int", "max_tokens": "int", "n_tokens": "int", "completion": "str",
                "detector_version": "str", "failures": "list", "passed": "bool", "metrics": "json",
                "evidence": "json"},
    "rollup": {**MODEL_KEY, "temperature": "float", "domain": "str", "detector_version": "str", "n": "int",
               "clean": "int", "clean_rate": "float", "tested": "int", "passed": "int",
               **{f"pass_at_{k}": "float" for k in PASS_KS}, "probes": "int", "probes_working": "int",
               "verdict": "str", "dominant": "list", "why": "str", **{f"rate_{m}": "float" for m in MODES}},
    "benchmarks": {**MODEL_KEY, "task": "str", "task_version": "str", "num_fewshot": "int", "limit": "float",
                   "protocol": "str", "metric": "str", "filter": "str", "value": "float", "stderr": "float",
                   "higher_is_better": "bool", "aggregation": "str", "n_docs": "int", "lm_eval_version": "str"},
}


def parse_what(text: str) -> tuple[str, ...]:
    """'bpb,rollup' -> ("bpb", "rollup") in TABLES order; an unknown or empty list is a one-line error."""
    asked = [w.strip() for w in str(text).split(",") if w.strip()]
    unknown = [w for w in asked if w not in TABLES]
    if unknown or not asked:
        raise GptlabError(f"--what {text!r}: expected comma-separated tables among {', '.join(TABLES)}")
    return tuple(t for t in TABLES if t in asked)


def destination(fmt: str, out) -> Path | None:
    """The checked --out: a file for json (None: stdout), a folder for csv and parquet."""
    if fmt not in FORMATS:
        raise GptlabError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if out is None:
        if fmt != "json":
            raise GptlabError(f"--format {fmt} writes one file per table into a folder: give --out FOLDER")
        return None
    path = Path(out)
    if fmt == "json" and path.is_dir():
        raise GptlabError(f"{path}: is a folder; --format json writes one file: give --out FILE")
    if fmt != "json" and path.exists() and not path.is_dir():
        raise GptlabError(f"{path}: exists and is not a folder; --format {fmt} writes one file per table into "
                          f"a folder")
    return path


# ---------------------------------------------------------------- reading the store


def _json(text, default=None):
    try:
        return json.loads(text) if text else default
    except (TypeError, json.JSONDecodeError):
        return default


def _typed(kind: str, v):
    if v is None:
        return None
    if kind == "int":
        return int(v)
    if kind == "float":
        v = float(v)
        return v if math.isfinite(v) else None          # JSON has no NaN or infinity
    if kind == "bool":
        return bool(v)
    if kind == "str":
        return str(v)
    return v                                            # list / json: already parsed


def _record(table: str, values: dict) -> dict:
    return {name: _typed(kind, values.get(name)) for name, kind in FIELDS[table].items()}


def _nk(v):
    """A sort key that puts None last among numbers."""
    return (v is None, v if v is not None else 0)


def bpb_records(store, models: list[dict]) -> list[dict]:
    order = {m["weights_hash"]: i for i, m in enumerate(models)}
    rows = store.bpb_rows(list(order)) if order else []
    rows = sorted(rows, key=lambda r: (order[r["weights_hash"]], r["domain"], r["data_hash"], r["protocol"]))
    return [_record("bpb", r) for r in rows]


def sample_records(store, models: list[dict], version: str | None) -> list[dict]:
    order = {m["weights_hash"]: i for i, m in enumerate(models)}
    rows = store.sample_rows(list(order), version) if order else []
    rows = sorted(rows, key=lambda r: (order[r["weights_hash"]], r["probe"], r["probe_hash"], r["temperature"],
                                       _nk(r["top_k"]), _nk(r["top_p"]), r["seed"], r["max_tokens"],
                                       r["sample_index"]))
    out = []
    for r in rows:
        diagnosed = r["failures_json"] is not None
        out.append(_record("samples", dict(
            r, detector_version=version if diagnosed else None, failures=_json(r["failures_json"]),
            metrics=_json(r["metrics_json"], {}) if diagnosed else None,
            evidence=_json(r["evidence_json"], {}) if diagnosed else None,
            passed=None if r["passed"] is None else bool(r["passed"]))))
    return out


def rollup_records(samples: list[dict], models: list[dict], version: str | None) -> list[dict]:
    """Per (checkpoint, temperature, probe domain): gptlab.diagnose.rollup over the diagnosed samples
    (`sample_records`), every length of a probe pooled as in the report's per-step roll-up."""
    groups = defaultdict(list)
    for s in samples:
        if s["failures"] is not None:
            groups[(s["weights_hash"], s["temperature"])].append(
                {"probe": s["probe"], "domain": s["domain"], "failures": s["failures"], "passed": s["passed"],
                 "max_tokens": None, "temperature": s["temperature"]})
    by_hash = {m["weights_hash"]: (i, m) for i, m in enumerate(models)}
    out = []
    for (h, temperature), rows in sorted(groups.items(), key=lambda kv: (by_hash[kv[0][0]][0], kv[0][1])):
        model = by_hash[h][1]
        for domain, entry in rollup(rows).domains.items():
            v = entry["verdict"]
            rates = entry["rates"]
            out.append(_record("rollup", {
                **model, "temperature": temperature, "domain": domain, "detector_version": version,
                "n": entry["n"], "clean": entry["clean"], "clean_rate": entry["clean_rate"],
                "tested": entry.get("tested", 0), "passed": entry.get("passed", 0),
                **{f"pass_at_{k}": entry.get(f"pass@{k}") for k in PASS_KS},
                "probes": entry["probes"], "probes_working": entry["probes_working"],
                "verdict": str(v.verdict), "dominant": list(v.dominant), "why": v.why,
                **{f"rate_{m}": rates.get(m, 0.0) for m in MODES}}))
    return out


def benchmark_records(store, models: list[dict]) -> list[dict]:
    """One record per (checkpoint, task setting, metric), every stored score (each protocol and setting)."""
    order = {m["weights_hash"]: i for i, m in enumerate(models)}
    rows = store.benchmark_rows(list(order)) if order else []
    rows = sorted(rows, key=lambda r: (order[r["weights_hash"]], r["task"], r["task_version"], r["num_fewshot"],
                                       r["doc_limit"], r["protocol"]))
    return [_record("benchmarks", r) for row in rows for r in metric_records(row)]


def collect(store, targets: list[str], what=TABLES) -> dict:
    """{"export_version", "store", "detector_version", <table>: [records] for each table in `what`}."""
    models = select(store, list(targets)).models
    if not models:
        raise GptlabError(f"{store.path}: holds no results; evaluate first: gptlab eval {' '.join(targets)} "
                          f"--db {store.path}")
    version = detector_version(store, [m["weights_hash"] for m in models])
    doc = {"export_version": EXPORT_VERSION, "store": str(store.path), "detector_version": version}
    if "bpb" in what:
        doc["bpb"] = bpb_records(store, models)
    if "samples" in what or "rollup" in what:
        samples = sample_records(store, models, version)
        if "samples" in what:
            doc["samples"] = samples
        if "rollup" in what:
            doc["rollup"] = rollup_records(samples, models, version)
    if "benchmarks" in what:
        doc["benchmarks"] = benchmark_records(store, models)
    return doc


# ---------------------------------------------------------------- writing


def _csv_cell(kind: str, v):
    if v is None:
        return ""
    if kind == "bool":
        return "true" if v else "false"
    if kind in ("list", "json"):
        return json.dumps(v, default=str)
    return v


def _write_csv(path: Path, table: str, records: list[dict]) -> None:
    kinds = FIELDS[table]
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(kinds))
        for r in records:
            w.writerow([_csv_cell(kinds[k], r[k]) for k in kinds])


def _write_parquet(path: Path, table: str, records: list[dict]) -> None:
    import pyarrow as pa  # deferred: heavy (pyarrow), only for --format parquet
    import pyarrow.parquet as pq  # deferred: heavy (pyarrow), only for --format parquet
    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
             "list": pa.list_(pa.string()), "json": pa.string()}
    kinds = FIELDS[table]
    schema = pa.schema([(name, types[kind]) for name, kind in kinds.items()])
    columns = {name: [json.dumps(r[name], default=str) if kind == "json" and r[name] is not None else r[name]
                      for r in records] for name, kind in kinds.items()}
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), path)


def render_json(doc: dict) -> str:
    return json.dumps(doc, default=str) + "\n"


def _write_files(folder: Path, writers: dict) -> list[Path]:
    """{name: write(tmp_path)}: each written in a temporary folder inside `folder`, then renamed into place."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".results-") as tmp:
            for name, write in writers.items():
                write(Path(tmp) / name)
            for name in writers:
                os.replace(Path(tmp) / name, folder / name)
    except OSError as e:
        raise GptlabError(f"{folder}: cannot write the results ({e.strerror or e})") from None
    return [folder / name for name in writers]


def write(doc: dict, fmt: str, out: Path) -> list[Path]:
    """The tables of `doc` (collect) as `fmt` at `out` (destination): a file for json, a folder otherwise."""
    if fmt == "json":
        text = render_json(doc)
        return _write_files(out.parent, {out.name: lambda p: p.write_text(text, encoding="utf-8")})
    writer = _write_csv if fmt == "csv" else _write_parquet
    return _write_files(out, {f"{t}.{fmt}": (lambda p, t=t: writer(p, t, doc[t])) for t in TABLES if t in doc})


def export(db, targets: list[str], *, fmt: str = "json", out=None, what: str = ",".join(TABLES)) -> str | list[Path]:
    """`gptlab results`: the JSON text when `out` is None (json only), else the paths written. The store is
    opened read-only, and every argument is checked before it is."""
    tables = parse_what(what)
    path = destination(fmt, out)
    store = Store(db, readonly=True)
    try:
        doc = collect(store, targets, tables)
    finally:
        store.close()
    return render_json(doc) if path is None else write(doc, fmt, path)
