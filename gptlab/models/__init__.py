"""Model families behind one narrow interface, used by everything that evaluates or samples.

    python -m pytest tests/test_model_interface.py      # every family against the protocols below

The interface is code: `CausalLM` (every family), `SplitHeadLM` (families whose forward is head(hidden(...)))
and `Cache` (what `new_cache` hands out). Every model is a `torch.nn.Module` with
    vocab_size: int          rows of the output (may exceed the tokenizer's vocab: padding)
    sequence_len: int        the longest context it was trained for
    forward(idx, cache=None, logits_from=0) -> logits
                             idx (B, T) int64 -> (B, T - logits_from, vocab_size) float32; positions
                             before logits_from are context only and skip the output head
    new_cache(batch_size, max_len) -> Cache   buffers for incremental decoding
    num_params() -> int
gptlab's own families (gpt.py, nanochat.py, gpt2.py) also split forward in two, forward = head(hidden(...)):
    hidden(idx, cache=None, logits_from=0) -> (B, T - logits_from, C)   final normalised states
    head(h) -> (..., vocab_size) float32                                 output head (+ soft-cap)
so bits-per-byte runs the head only on scored positions, a chunk at a time (evaluate/bpb.py token_nll).
With a cache, `forward` reads the positions already cached (cache.pos), appends the new keys/values, and
advances cache.pos by T; `cache.expand(n)` repeats each row n times so one prefill serves n samples, and
`cache.select(rows)` keeps only the given rows. Parameters beyond the interface's (gpt.py's training
`targets`, gpt.py's and gpt2.py's `new_cache(..., static=True)`: a StaticKVCache that a CUDA graph can replay,
decode_graph.py) are keyword-only, so positional calls mean the same thing for every family. gptlab's caches
give `positions(T)`, the next T positions as a device tensor, which their models index tables with.

Families: gpt.py (gptlab's own, nanochat style), nanochat.py (checkpoints written by nanochat), gpt2.py
(classic GPT-2: nanoGPT, llm.c, OpenAI weights), hf.py (any transformers causal LM). Readers in
gptlab/checkpoints/ build them from files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from gptlab.models.kv_cache import KVCache

if TYPE_CHECKING:
    import torch

__all__ = ["Cache", "CausalLM", "KVCache", "SplitHeadLM"]


@runtime_checkable
class Cache(Protocol):
    """Decoding state of a batch: KVCache (and its subclasses) for gptlab's families, HFCache for transformers."""

    pos: int                    # positions already cached (the same for every row)
    max_len: int
    batch_size: int

    def advance(self, t: int) -> None: ...

    def expand(self, n: int) -> Cache: ...

    def select(self, rows: torch.Tensor) -> None: ...


@runtime_checkable
class CausalLM(Protocol):
    """What every model family provides (see the module docstring for the shapes)."""

    vocab_size: int
    sequence_len: int

    def forward(self, idx: torch.Tensor, cache: Cache | None = None, logits_from: int = 0) -> torch.Tensor: ...

    def new_cache(self, batch_size: int, max_len: int) -> Cache: ...

    def num_params(self) -> int: ...


@runtime_checkable
class SplitHeadLM(CausalLM, Protocol):
    """A CausalLM whose forward is head(hidden(...)): bits-per-byte calls the two parts itself."""

    def hidden(self, idx: torch.Tensor, cache: Cache | None = None, logits_from: int = 0) -> torch.Tensor: ...

    def head(self, h: torch.Tensor) -> torch.Tensor: ...
