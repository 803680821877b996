"""Per-rank journals of an evaluation across ranks, and their merge into the results store in one transaction.

    torchrun --nproc_per_node=2 -m gptlab eval runs/demo --db results.sqlite
        (ranks write results.sqlite.ranks/<launch>-rank<R>.jsonl; rank 0 merges them and deletes them)
    python -m pytest tests/test_eval_distributed.py

Only rank 0 ever opens the store. Every other result is first a line of its rank's journal: one JSON object
per unit of work (a bpb domain or a stripe of one, a batch of samples), written with one `write` and
fsync'ed, so a rank killed at any moment leaves whole lines and at most one torn last line, which readers
drop. At the end of the job the ranks send their records to rank 0 (over the network: the nodes need not
share a disk), which merges them in one transaction and then lets every rank delete its journal.

A job that dies before that leaves its journals behind. The next job on the same store (any number of ranks,
also one) merges them first, so a rerun computes only what is missing. A journal is in use while its lock
file (`.lock` beside it) is flock'ed by the job writing it; `read_leftovers` passes over those, so two jobs
on one store never take each other's journals. Stripes of a bpb domain whose set is incomplete after a
crash are dropped: that domain is scored again (never half-written).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.evaluate.bpb import BpbResult, DocScore, merge_parts


def folder_of(db) -> Path:
    """Where the journals of jobs on store `db` live: `<db>.ranks/` beside it."""
    db = Path(db)
    return db.with_name(db.name + ".ranks")


def _try_lock(path: Path):
    """An open file holding an exclusive flock on `path`, or None when another process holds it."""
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


class Journal:
    """The journal of one rank of one job: `write(record)` makes a unit durable; `records` keeps them."""

    def __init__(self, db, launch: str, rank: int):
        folder = folder_of(db)
        self.launch = launch
        self.path = folder / f"{launch}-rank{rank}.jsonl"
        for attempt in range(3):        # another job may remove the folder when it finds it empty
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self._lock = _try_lock(self.path.with_suffix(".lock"))   # before the journal exists: see read_leftovers
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if self._lock is None:
            raise OSError(f"{self.path}: journal already in use")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self.records.append(record)

    def remove(self) -> None:
        """Delete the journal (once rank 0 has merged it) and release its lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)
        if self._lock is not None:
            self.path.with_suffix(".lock").unlink(missing_ok=True)
            self._lock.close()
            self._lock = None
        _remove_if_empty(self.path.parent)

    def close(self) -> None:
        """Stop writing but keep the file (a failed job: its units are merged by the next job)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def read_records(path: Path) -> list[dict]:
    """The complete lines of a journal; a torn last line (the writer was killed mid-write) is not one."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                out.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
    return out


def read_leftovers(db) -> tuple[list[dict], list[Path]]:
    """(records, files) of the journals beside store `db` that no running job holds."""
    folder = folder_of(db)
    if not folder.is_dir():
        return [], []
    records, files = [], []
    for path in sorted(folder.glob("*.jsonl")):
        lock = _try_lock(path.with_suffix(".lock"))
        if lock is None:
            continue                                        # a live job's journal
        try:
            records += read_records(path)
            files.append(path)
        except OSError:
            continue                                        # deleted meanwhile by a job that merged it
        finally:
            lock.close()
    return records, files


def remove_files(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)
        path.with_suffix(".lock").unlink(missing_ok=True)
    if files:
        _remove_if_empty(files[0].parent)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass                                                # not empty: another job's journals


def bpb_record(launch: str, weights_hash: str, domain: str, data_hash: str, protocol: str, result: BpbResult,
               stripes=None) -> dict:
    """A bpb unit: a whole domain (`stripes` None) or the part of stripes ([ks], n) of one job (`launch`:
    parts merge only with the parts of their own job, whose ranks' stripes are disjoint)."""
    return {"kind": "bpb", "launch": launch, "weights_hash": weights_hash, "domain": domain,
            "data_hash": data_hash, "protocol": protocol,
            "stripes": None if stripes is None else [sorted(stripes[0]), stripes[1]],
            "docs": [[d.nll, d.bytes, d.tokens] for d in result.docs]}


def samples_record(records: list[dict], rows: int) -> dict:
    """A batch of samples: the store's sample records of `rows` generations."""
    return {"kind": "samples", "rows": rows, "records": records}


@dataclass
class Merged:
    bpb: list[tuple[dict, BpbResult]] = field(default_factory=list)   # (key fields, result) stored now
    samples_written: int = 0
    generations: int = 0
    stripes_dropped: int = 0        # parts of bpb domains whose other stripes never came
    warnings: list[str] = field(default_factory=list)


def _result(docs) -> BpbResult:
    """A record's per-document sums as a (partial) result: merge_parts computes the totals."""
    return BpbResult(math.nan, math.nan, 0, 0, [DocScore(float(n), int(b), int(t)) for n, b, t in docs])


def merge(store, records: list[dict]) -> Merged:
    """Write the records of any number of journals into `store` in one transaction (see the module docstring).
    Records already stored are kept as they are, so merging the same journal twice changes nothing."""
    out = Merged()
    wholes: dict[tuple, dict] = {}
    parts: dict[tuple, dict[int, dict]] = defaultdict(dict)      # (key, n, launch) -> {stripe: record}
    batches = []
    for r in records:
        if r.get("kind") == "bpb":
            key = (r["weights_hash"], r["domain"], r["data_hash"], r["protocol"])
            if r["stripes"] is None:
                wholes.setdefault(key, r)
            else:
                ks, n = r["stripes"]
                for k in ks:
                    parts[key, n, r.get("launch")].setdefault(k, r)
        elif r.get("kind") == "samples":
            batches.append(r)
    sets = {key: [r] for key, r in wholes.items()}
    for (key, n, _), got in parts.items():
        if key not in sets and sorted(got) == list(range(n)):
            sets[key] = list({id(r): r for r in got.values()}.values())
    out.stripes_dropped = len({id(r) for (key, _, _), got in parts.items() if key not in sets for r in got.values()})
    results = {}
    for key, rs in sets.items():
        try:
            results[key] = merge_parts([_result(r["docs"]) for r in rs])
        except GptlabError as e:                        # e.g. no bytes to score in the whole text
            out.warnings.append(f"bpb domain {key[1]}: {e}; skipped")
    with store.transaction():
        for key, result in results.items():
            if store.get_bpb(*key) is None:
                store.put_bpb(*key, result)
                out.bpb.append((dict(zip(("weights_hash", "domain", "data_hash", "protocol"), key)), result))
        for b in batches:
            written = store.put_samples(b["records"])
            out.samples_written += written
            out.generations += b["rows"] if written else 0
    return out
