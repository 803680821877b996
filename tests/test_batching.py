"""Batch sizes from free memory, and out-of-memory retried at half size: the helper (gptlab/batching.py), then
bits-per-byte and sampling with a real torch.OutOfMemoryError injected into their first batch — the retry runs
at half the size and the results equal those of a run that never ran out."""

import json
from pathlib import Path

import pytest
import torch

import gptlab.evaluate.bpb as bpb
from gptlab.batching import Halving, rows_that_fit
from gptlab.checkpoints import discover, load
from gptlab.engine import Engine

PEERS = Path(__file__).parent / "fixtures" / "peers"
VAL = (PEERS / "text" / "val.txt").read_text()
DOCS = [VAL[f["start"]:f["end"]] for f in json.loads((PEERS / "text" / "manifest.json").read_text())["val"]]


def oom_once(fn, sizes, arg=0):
    """fn, recording the size of each call's batch (its argument `arg`); the first call raises
    torch.OutOfMemoryError instead."""
    def wrapped(*args):
        sizes.append(len(args[arg]))
        if len(sizes) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return fn(*args)
    return wrapped


def test_rows_from_free_memory():
    cpu = torch.device("cpu")
    assert rows_that_fit(10**6, cpu, cap=512, default=64) == 64                     # no such number on a CPU
    assert rows_that_fit(10**6, cpu, cap=512, default=64, free=100 * 10**6) == 50    # half of what is free
    assert rows_that_fit(10**6, cpu, cap=16, default=64, free=100 * 10**6) == 16     # the cap
    assert rows_that_fit(10**9, cpu, cap=16, default=64, free=10**6) == 1            # never 0


def test_halving_retries_the_same_chunk_at_half_size_and_stays_there():
    sizes, shrinks = [], []
    h = Halving(8, on_shrink=lambda a, b: shrinks.append((a, b)))
    got = h.run(oom_once(lambda b: [x * x for x in b], sizes), list(range(20)))
    assert got == [x * x for x in range(20)]
    assert sizes == [8, 4, 4, 4, 4, 4] and shrinks == [(8, 4)] and h.size == 4


def test_halving_gives_up_at_one_row():
    def always(batch):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    h = Halving(4)
    with pytest.raises(torch.OutOfMemoryError):
        h.run(always, [1, 2, 3, 4])
    assert h.size == 1 and h.shrinks == 2
    with pytest.raises(ZeroDivisionError):                  # other errors are not retried
        Halving(4).run(lambda b: [1 / 0], [1, 2])


def test_bpb_retries_an_out_of_memory_batch_at_half_size(monkeypatch):
    loaded = load(discover(PEERS / "nanochat" / "base_dir" / "base_checkpoints" / "d2")[0])
    want = bpb.score_documents(loaded.model, loaded.tokenizer, DOCS, batch_size=8)
    sizes = []
    monkeypatch.setattr(bpb, "_score_batch", oom_once(bpb._score_batch, sizes, arg=1))
    got = bpb.score_documents(loaded.model, loaded.tokenizer, DOCS, batch_size=8)
    assert sizes[:2] == [8, 4] and max(sizes[1:]) == 4
    assert got.bytes == want.bytes and got.tokens == want.tokens
    assert got.bpb == pytest.approx(want.bpb, abs=1e-6)
    assert [d.bytes for d in got.docs] == [d.bytes for d in want.docs]


def test_sampling_retries_an_out_of_memory_batch_at_half_size(monkeypatch):
    loaded = load(discover(PEERS / "nanochat" / "base_dir" / "base_checkpoints" / "d2")[0])
    tok = loaded.tokenizer
    ps = [[tok.bos_id] + tok.encode(t) for t in ("def f(x):", "The cat", "import os", "SELECT *")] * 2
    n = len(ps)
    want = Engine(loaded.model, tok).run_batch(ps, [0.8] * n, list(range(n)), 16)
    engine = Engine(loaded.model, tok)
    sizes = []
    monkeypatch.setattr(engine, "_run_rows", oom_once(engine._run_rows, sizes))
    got = engine.run_batch(ps, [0.8] * n, list(range(n)), 16)
    assert sizes == [8, 4, 4] and engine.fits == 4
    assert [c.tokens for c in got] == [c.tokens for c in want]
    later = engine.run_batch(ps, [0.8] * n, list(range(n)), 16)   # the engine keeps the smaller size
    assert sizes[3:] == [4, 4] and [c.tokens for c in later] == [c.tokens for c in want]
