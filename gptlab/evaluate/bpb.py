"""Bits per byte: how well a model predicts held-out text, comparable across vocabularies.

    python -m pytest tests/test_bpb.py
    python bench/bpb_vs_transformers.py              # speed against transformers on the same windows

Definition (the one number every gptlab comparison uses):

    bits per byte = (sum over scored tokens of -ln p(token | left context)) / (ln 2 x UTF-8 bytes scored)

A per-token loss depends on the vocabulary (a char model predicts 1 byte per token, a 50k BPE ~4); dividing
the summed nats by the bytes those tokens stand for removes that, so a char-level nanoGPT and a 32k nanochat
are measured on the same scale. The protocol, decided once here:

  * Each document is scored on its own: it starts with the tokenizer's document separator
    (`tokenizer.bos_id`: <|bos|>, <|endoftext|>), which is context only, never a target, so the document's
    first real token is scored. A tokenizer without one (char-level) cannot do that: the first character
    is then context only, and its byte is not counted (the only bytes ever left out).
  * A document longer than the model's context is scored with sliding windows: the first window scores
    every token it sees; each later window ends `stride` tokens further (default: half the context) and
    scores only those new tokens, with the rest of the window as left context. Every token is scored
    exactly once, with at least context - stride tokens of left context once the document is that long.
  * Bytes are `tokenizer.token_bytes()` of the scored targets, which sums to the document's UTF-8 length.
    Targets worth 0 bytes (special tokens) add neither nats nor bytes, as in nanochat's `evaluate_bpb`.
  * Sums are float64; logits are float32 whatever the compute dtype.

Memory stays flat: documents stream through (read_documents is a generator), windows go into a bounded pool,
are sorted by shape, and are run `batch_size` at a time; per-document sums are kept (DocScore) because the
compare command bootstraps confidence intervals over documents. `batch_size=None` is CPU_BATCH windows on a
CPU and, on CUDA, as many (up to GPU_BATCH_CAP) as fit in the free memory (gptlab/batching.py); a batch that
runs out of memory is scored again in halves, and later batches stay at the smaller size.

Stripes (evaluation across ranks, gptlab/evaluate/ranks.py): `stripes=(ks, n)` scores only the windows whose
index j in the text (documents in order, windows in order) has j % n in ks, and returns per-document partial
sums; `merge_parts` adds the parts of a whole set into the same result, equal to one pass up to float
rounding (a window's batch neighbours differ).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from gptlab.batching import Halving, rows_that_fit
from gptlab.data import iter_documents
from gptlab.errors import GptlabError
from gptlab.models import SplitHeadLM

PROTOCOL_VERSION = "bpb-1"  # stored with every result: bump when anything in the protocol above changes
POOL_BATCHES = 8            # windows buffered (in batches) before sorting them by shape: bounds memory
ENCODE_CHUNK = 64           # documents tokenized per call
CE_ROWS = 1024              # positions per head/cross-entropy call: keeps (rows, vocab) temporaries small
CPU_BATCH = 16              # windows per forward pass on a CPU
GPU_BATCH_CAP = 64          # at most this many on CUDA, fewer when the free memory says so


@dataclass
class DocScore:
    nll: float              # nats summed over the document's scored tokens
    bytes: int              # UTF-8 bytes those tokens stand for
    tokens: int             # scored tokens


@dataclass
class BpbResult:
    bpb: float
    nll: float
    bytes: int
    tokens: int
    docs: list[DocScore]


def windows(n: int, context: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """Windows over a sequence of n tokens whose position 0 is context only.

    Yields (start, end, first): the model reads tokens[start:end] (at most `context`), its prediction at input
    offset j is for token start + j + 1, and offsets >= first are scored. Targets 1..n-1 are each scored once.
    """
    if not 1 <= stride <= context:
        raise GptlabError(f"stride {stride} must be between 1 and the context ({context})")
    done = 0                                     # targets 1..done are scored
    while done < n - 1:
        end = min(done + (context if done == 0 else stride), n - 1)
        start = max(0, end - context)
        yield start, end, done - start
        done = end


def score_documents(model, tokenizer, documents: Iterable[str], *, stride: int | None = None,
                    batch_size: int | None = None, device="cpu", dtype=None,
                    progress: Callable[[int], None] | None = None, stripes=None) -> BpbResult:
    """Bits per byte of `model` on `documents` (see the module docstring for the protocol).

    The model is moved to `device` (and cast to `dtype`, e.g. torch.bfloat16, when given) in place.
    """
    bos = tokenizer.bos_id

    def sequences():
        chunk = []
        for doc in documents:
            chunk.append(doc)
            if len(chunk) == ENCODE_CHUNK:
                yield from _with_bos(tokenizer.encode_batch(chunk), bos)
                chunk = []
        if chunk:
            yield from _with_bos(tokenizer.encode_batch(chunk), bos)

    return score_tokens(model, sequences(), tokenizer.token_bytes(), stride=stride, batch_size=batch_size,
                        device=device, dtype=dtype, progress=progress, stripes=stripes)


def _with_bos(batch: list[list[int]], bos: int | None) -> Iterator[list[int]]:
    for ids in batch:
        yield ids if bos is None else [bos, *ids]


def score_tokens(model, sequences: Iterable[list[int]], token_bytes, *, stride: int | None = None,
                 batch_size: int | None = None, device="cpu", dtype=None,
                 progress: Callable[[int], None] | None = None, stripes=None) -> BpbResult:
    """The same protocol on token sequences whose first token is context only (BOS, or a first token).
    `stripes=(ks, n)`: only windows j with j % n in ks, a part for `merge_parts` (module docstring)."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model.to(device=device, **({"dtype": dtype} if dtype is not None else {}))
    model.eval()
    context = int(model.sequence_len)
    stride = stride or max(1, context // 2)
    tb = torch.as_tensor(np.asarray(token_bytes), dtype=torch.int64)
    if tb.numel() > model.vocab_size:
        raise GptlabError(f"the tokenizer has {tb.numel()} ids but the model predicts only {model.vocab_size}: "
                          f"they do not belong together")
    takes_from = "logits_from" in inspect.signature(model.forward).parameters
    if batch_size is None:
        batch_size = rows_that_fit(context * _bytes_per_position(model), torch.device(device), GPU_BATCH_CAP,
                                   CPU_BATCH)
    halving = Halving(batch_size, device)

    docs: list[DocScore] = []
    pool: list[tuple[int, np.ndarray, int]] = []      # (document, tokens[start:end+1], first scored offset)

    def flush(pieces):
        ordered = [p for batch in _batches(pieces, max(1, len(pieces))) for p in batch]
        for batch, scored in halving.map(lambda b: _score_batch(model, b, tb, device, takes_from), ordered):
            n_tokens = 0
            for (doc_i, _, _), (nll, nbytes, ntok) in zip(batch, scored):
                d = docs[doc_i]
                d.nll += nll
                d.bytes += nbytes
                d.tokens += ntok
                n_tokens += ntok
            if progress is not None:
                progress(n_tokens)

    ks, n_stripes = (None, 1) if stripes is None else (frozenset(stripes[0]), int(stripes[1]))
    j = -1                                            # index of the window in the whole text
    with torch.inference_mode():
        for ids in sequences:
            ids = np.asarray(ids, dtype=np.int64)    # windows below are views of it, not copies
            doc_i = len(docs)
            docs.append(DocScore(0.0, 0, 0))
            for start, end, first in windows(len(ids), context, stride):
                j += 1
                if ks is not None and j % n_stripes not in ks:
                    continue
                pool.append((doc_i, ids[start:end + 1], first))
                if len(pool) >= POOL_BATCHES * batch_size:      # the first size: the same pools after an OOM
                    flush(pool)
                    pool = []
        flush(pool)
    return _result(docs, partial=stripes is not None)


def _result(docs: list[DocScore], partial: bool = False) -> BpbResult:
    nll = math.fsum(d.nll for d in docs)
    nbytes = sum(d.bytes for d in docs)
    if nbytes == 0 and not partial:
        raise GptlabError("nothing to score: the documents hold no bytes after their first token")
    bpb = nll / (math.log(2) * nbytes) if nbytes else math.nan
    return BpbResult(bpb, nll, nbytes, sum(d.tokens for d in docs), docs)


def merge_parts(parts: list[BpbResult]) -> BpbResult:
    """The result of a whole text from the parts of a set of stripes (each document's sums added up)."""
    if not parts or len({len(p.docs) for p in parts}) != 1:
        raise GptlabError("bpb parts of different texts cannot be merged")
    docs = [DocScore(math.fsum(p.docs[i].nll for p in parts), sum(p.docs[i].bytes for p in parts),
                     sum(p.docs[i].tokens for p in parts)) for i in range(len(parts[0].docs))]
    return _result(docs)


def _bytes_per_position(model) -> int:
    """A rough upper bound of the memory one window position takes in a forward pass without gradients: a
    dozen activations of the model's width in its dtype (the OOM retry covers a bad guess)."""
    cfg = getattr(model, "config", None) or getattr(getattr(model, "hf", None), "config", None)
    width = getattr(cfg, "n_embd", None) or getattr(cfg, "hidden_size", None) or 2048
    item = next(model.parameters()).element_size()
    return 16 * int(width) * item


def _batches(pieces, batch_size):
    """Pieces sorted so that a batch shares where scoring starts and has similar lengths (little padding)."""
    pieces = sorted(pieces, key=lambda p: (p[2], len(p[1])))
    for i in range(0, len(pieces), batch_size):
        yield pieces[i:i + batch_size]


def pack_pieces(batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Inputs x (B, W) and targets y (B, W) of a batch of pieces, y = -1 where a position is not scored,
    and the first position any row scores. A piece is (doc, tokens[start:end+1], first scored offset)."""
    width = max(len(p[1]) for p in batch) - 1
    first = min(p[2] for p in batch)
    x = torch.zeros(len(batch), width, dtype=torch.int64)
    y = torch.full((len(batch), width), -1, dtype=torch.int64)
    for r, (_, ids, f) in enumerate(batch):
        t = torch.as_tensor(ids)
        x[r, :len(ids) - 1] = t[:-1]
        y[r, f:len(ids) - 1] = t[f + 1:]          # right padding is harmless: attention is causal
    return x, y, first


def _score_batch(model, batch, token_bytes, device, takes_from) -> list[tuple[float, int, int]]:
    """[(nats, bytes, tokens)] per piece (see pack_pieces)."""
    x, y, first = pack_pieces(batch)
    nbytes = torch.where(y >= 0, token_bytes[y.clamp(min=0)], 0)
    y = torch.where(nbytes > 0, y, -1)[:, first:]  # 0-byte targets (specials) are not scored
    nbytes = nbytes[:, first:].sum(dim=1).tolist()
    ntok = (y >= 0).sum(dim=1).tolist()            # counted on the CPU: no device sync per row
    x = x.to(device)
    nll = token_nll(model, x, y, first, takes_from)
    nll = nll.view(y.shape).cpu().double().sum(dim=1)       # float64 sums (MPS has no float64)
    return [(float(nll[r]), nbytes[r], ntok[r]) for r in range(len(batch))]


def token_nll(model, x: torch.Tensor, y: torch.Tensor, first: int, takes_from: bool) -> torch.Tensor:
    """-ln p(y | x) (B, T - first) float32 at the positions from `first`, 0 where y < 0 (not scored).

    A model with `hidden` and `head` (gptlab's own families) runs its head only on the scored positions,
    CE_ROWS of them at a time, and each chunk's logits go straight into logsumexp - logit[target]: the
    (positions, vocab) logits never exist whole, which saves memory traffic as well as memory. Other models
    (transformers) return logits, then cross-entropy runs on them in CE_ROWS slices."""
    flat_y = y.reshape(-1).to(x.device)
    if isinstance(model, SplitHeadLM):
        out = torch.zeros(y.numel(), dtype=torch.float32, device=x.device)
        h = model.hidden(x, logits_from=first)
        keep = (flat_y >= 0).nonzero().squeeze(1)
        h, targets = h.reshape(-1, h.shape[-1])[keep], flat_y[keep]
        for i in range(0, len(keep), CE_ROWS):
            logits = model.head(h[i:i + CE_ROWS])                           # (rows, V) float32
            t = targets[i:i + CE_ROWS, None]
            out[keep[i:i + CE_ROWS]] = torch.logsumexp(logits, dim=-1) - logits.gather(1, t).squeeze(1)
        return out.view(y.shape)
    logits = model(x, logits_from=first) if takes_from else model(x)[:, first:]   # (B, T', V) float32
    flat_logits = logits.reshape(-1, logits.shape[-1])
    return torch.cat([F.cross_entropy(lg.float(), yy, ignore_index=-1, reduction="none")
                      for lg, yy in zip(flat_logits.split(CE_ROWS), flat_y.split(CE_ROWS))]).view(y.shape)


def read_documents(path: str | Path) -> Iterator[str]:
    """Documents of a bpb data file: `.txt` is one document; `.jsonl` has one JSON object per line whose
    `text` is a document; `.parquet` one per row of its `text` column (gptlab.data.iter_documents, which
    streams). Raises GptlabError naming the file (and line), also when the file holds no document."""
    count = 0
    for doc in iter_documents(path):
        count += 1
        yield doc
    if count == 0:
        raise GptlabError(f"{path}: the file is empty (no documents)")
