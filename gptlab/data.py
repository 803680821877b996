"""Domain-tagged corpora: read documents (txt, jsonl, parquet), tokenize once, and serve packed batches.

    gptlab train demo          (tokenizes the demo corpus into RUN_DIR/tokens/, then samples batches)
    python -m pytest tests/test_data.py tests/test_faults_train.py

Sources: `.txt` is one document; `.jsonl` is one document per line in its `text` field; `.parquet` is one
document per row of its `text` column (FineWeb-style shards). Each domain's documents are tokenized into one
stream, `<|bos|>` before every document, cached as RUN_DIR/tokens/<domain>.<split>.<sources>-<tokenizer>.npy: the
name records what made the cache (content hash of the source files, the tokenizer's identity), so a change of
either makes a new one; it is written whole or not at all (temporary file, fsync, rename), and one that does not
read back whole is rebuilt. `write_error` is the one-line message of a failed write (ENOSPC named).

Batches are a pure function of (seed, step): the global batch of step s is drawn by an RNG seeded with
(seed, s) — for each row a domain by mixture weight, then a random window of sequence_len + 1 tokens of that
domain's stream. Rank r of a W-process run takes rows r, r+W, ...; so resuming, or changing the number of
processes at the same total batch, sees exactly the same data, and the loader's state is just the step.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gptlab.errors import GptlabError


def iter_documents(path: str | Path) -> Iterator[str]:
    """Yield the documents of one source file; bad files raise GptlabError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise GptlabError(f"{path}: corpus file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_documents(path)
        return
    if suffix not in (".txt", ".jsonl", ".md", ".text"):
        raise GptlabError(f"{path}: unknown corpus format '{suffix}' (use .txt, .jsonl or .parquet)")
    try:
        yield from _text_documents(path) if suffix != ".jsonl" else _jsonl_documents(path)
    except OSError as e:
        raise GptlabError(f"{path}: cannot read the corpus file ({e.strerror})") from None


def _text_documents(path: Path) -> Iterator[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise GptlabError(f"{path}: not UTF-8 text at line {line}, byte {e.start}") from None
    if text.strip():
        yield text


def _jsonl_documents(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:            # line by line: memory stays flat however large the file
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise GptlabError(f"{path}:{n}: not UTF-8 text (byte {e.start} of the line)") from None
            except json.JSONDecodeError as e:
                raise GptlabError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise GptlabError(f"{path}:{n}: not valid JSON (nested too deeply)") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise GptlabError(f'{path}:{n}: no "text" string in this line')
            if obj["text"]:
                yield obj["text"]


def _parquet_documents(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq  # deferred: heavy (pyarrow, ~0.5 s to import), only for parquet corpora
    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise GptlabError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from None
    if "text" not in f.schema_arrow.names:
        raise GptlabError(f"{path}: parquet file has no 'text' column (columns: {', '.join(f.schema_arrow.names)})")
    for batch in f.iter_batches(columns=["text"], batch_size=1024):
        for t in batch.column(0).to_pylist():
            if t:
                yield t


def source_hash(paths: list[str]) -> str:
    """Content hash of a list of source files: the data identity stored with checkpoints and results.
    Remembered per (file, size, mtime) within a process: a run hashes its sources once, not per artefact."""
    try:
        stamp = tuple((str(p), st.st_size, st.st_mtime_ns, st.st_ino) for p in paths for st in [os.stat(p)])
    except OSError:
        stamp = None
    if stamp is not None and stamp in _HASHES:
        return _HASHES[stamp]
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        try:
            with open(p, "rb") as f:
                while b := f.read(1 << 22):
                    h.update(b)
        except FileNotFoundError:
            raise GptlabError(f"{p}: corpus file not found") from None
        except OSError as e:
            raise GptlabError(f"{p}: cannot read the corpus file ({e.strerror})") from None
    if stamp is not None:
        _HASHES[stamp] = h.hexdigest()[:16]
    return h.hexdigest()[:16]


_HASHES: dict[tuple, str] = {}


def require_writable(folder: str | Path, what: str) -> None:
    """Create `folder` and prove a file can be written in it, before any work whose output would be lost:
    a one-line error `FOLDER: cannot write WHAT there (not writable: reason)` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise GptlabError(f"{folder}: cannot write {what} there (not writable: {e.strerror})") from None


def write_error(path: str | Path, e: Exception) -> GptlabError:
    """A failed write as one line naming the file and the cause: `RUN/x: no space left on device (ENOSPC)`.
    Works for OSError and for the libraries that wrap it in their own messages ('... (os error 28)')."""
    code = getattr(e, "errno", None)
    if not isinstance(code, int):
        m = re.search(r"os error (\d+)", str(e))
        code = int(m.group(1)) if m else None
    if isinstance(code, int) and code in errno.errorcode:
        cause = f"{os.strerror(code).lower()} ({errno.errorcode[code]})"
    else:
        cause = " ".join(str(e).split())[:160] or type(e).__name__
    return GptlabError(f"{path}: cannot write it: {cause}")


def write_whole(path: Path, text: str) -> None:
    """A text file through a temporary file, synced and renamed: `path` is whole (old or new), never torn."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None


def save_array(path: Path, arr: np.ndarray) -> None:
    """np.save through a temporary file, synced and renamed: `path` is whole or absent, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None


def iter_training_text(data_cfg, max_chars: int) -> Iterator[str]:
    """Documents of every domain's train sources, round-robin across domains, up to max_chars (BPE training)."""
    iters = [iter(_chain(d.train)) for d in data_cfg.domains if d.train]
    used = 0
    while iters and used < max_chars:
        for it in list(iters):
            doc = next(it, None)
            if doc is None:
                iters.remove(it)
                continue
            yield doc
            used += len(doc)


def _chain(paths):
    for p in paths:
        yield from iter_documents(p)


def tokenize_stream(paths: list[str], tokenizer, where: str) -> np.ndarray:
    """All documents of `paths` as one id stream with BOS before every document."""
    docs = list(_chain(paths))
    if not docs:
        raise GptlabError(f"{where}: the sources {', '.join(paths)} contain no text")
    bos = tokenizer.bos_id
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    parts = []
    for i in range(0, len(docs), 256):
        for ids in tokenizer.encode_batch(docs[i:i + 256]):
            parts.append(np.asarray(([bos] if bos is not None else []) + ids, dtype=dtype))
    return np.concatenate(parts)


@dataclass
class DomainData:
    name: str
    weight: float
    train: np.ndarray | None
    val: np.ndarray | None
    train_hash: str | None = None   # source_hash of the train files: the data identity of checkpoints


def prepare_domains(data_cfg, tokenizer, cache_dir: Path, is_writer: bool = True, warn=None) -> list[DomainData]:
    """Tokenize every domain once and load the streams. A cache file's name records what made it (the content
    hash of its sources and the tokenizer's identity): a changed source or tokenizer is a new file; a cache that
    does not read back whole (truncated, not ids of this vocabulary) is rebuilt, said through `warn`."""
    if is_writer:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(cache_dir, e) from None
    out = []
    for d in data_cfg.domains:
        streams, hashes = {}, {}
        for split, paths in (("train", d.train), ("val", d.val)):
            if not paths:
                streams[split] = hashes[split] = None
                continue
            hashes[split] = source_hash(paths)
            f = cache_dir / f"{d.name}.{split}.{hashes[split]}-{tokenizer.identity()}.npy"
            arr = _read_cache(f, tokenizer.vocab_size, warn) if f.exists() else None
            if arr is None:
                arr = tokenize_stream(paths, tokenizer, f"domain '{d.name}' ({split})")
                if is_writer:
                    save_array(f, arr)
                    _remove_stale(cache_dir, d.name, split, keep=f)
            streams[split] = arr
        out.append(DomainData(d.name, d.weight, streams["train"], streams["val"], hashes["train"]))
    return out


def _read_cache(f: Path, vocab_size: int, warn) -> np.ndarray | None:
    try:
        arr = np.load(f)
        whole = arr.ndim == 1 and arr.dtype.kind == "u" and arr.size > 0 and int(arr.max()) < vocab_size
        why = "" if whole else "not token ids of this vocabulary"
    except (OSError, ValueError, EOFError) as e:
        arr, why = None, " ".join(str(e).split())[:80] or type(e).__name__
    if why:
        if warn:
            warn(f"{f}: damaged token cache ({why}); rebuilding it")
        return None
    return arr


def _remove_stale(cache_dir: Path, name: str, split: str, keep: Path) -> None:
    """Caches of this domain and split made from other sources or another tokenizer (and leftover temporaries)."""
    pattern = re.compile(re.escape(f"{name}.{split}.") + r"[0-9a-f]{16}-[0-9a-f]{16}\.npy(\.tmp)?")
    for f in cache_dir.iterdir():
        if f != keep and pattern.fullmatch(f.name):
            f.unlink(missing_ok=True)


class BatchSampler:
    """Deterministic mixture batches: `batch(step, micro)` -> (x, y) int64 arrays (rows, seq_len)."""

    def __init__(self, domains: list[DomainData], seq_len: int, rows_per_micro: int, micro_steps: int,
                 seed: int, rank: int = 0, world: int = 1):
        self.domains = [d for d in domains if d.weight > 0 and d.train is not None]
        for d in self.domains:
            if len(d.train) < seq_len + 2:
                raise GptlabError(f"domain '{d.name}': {len(d.train)} training tokens, fewer than one "
                                  f"sequence of {seq_len + 1}")
        w = np.array([d.weight for d in self.domains], dtype=np.float64)
        self.probs = w / w.sum()
        self.seq_len, self.rows, self.micro_steps = seq_len, rows_per_micro, micro_steps
        self.seed, self.rank, self.world = seed, rank, world

    def global_rows(self) -> int:
        return self.rows * self.micro_steps * self.world

    def batch(self, step: int, micro: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.Generator(np.random.PCG64([self.seed, step]))
        n = self.global_rows()
        which = rng.choice(len(self.domains), size=n, p=self.probs)
        u = rng.random(n)
        # row order within the step: micro-step major, then rank, so each rank gets an interleaved slice
        start = (micro * self.world + self.rank) * self.rows
        idx = range(start, start + self.rows)
        out = np.empty((self.rows, self.seq_len + 1), dtype=np.int64)
        for j, i in enumerate(idx):
            stream = self.domains[which[i]].train
            off = int(u[i] * (len(stream) - self.seq_len - 1))
            out[j] = stream[off: off + self.seq_len + 1]
        return out[:, :-1], out[:, 1:]

    def domain_shares(self) -> dict[str, float]:
        return {d.name: float(p) for d, p in zip(self.domains, self.probs)}
