"""Model families behind one narrow interface, used by everything that evaluates or samples.

    python -m pytest tests/test_models.py

Every model is a `torch.nn.Module` with
    vocab_size: int          rows of the output (may exceed the tokenizer's vocab: padding)
    sequence_len: int        the longest context it was trained for
    forward(idx, cache=None, logits_from=0) -> logits
                             idx (B, T) int64 -> (B, T - logits_from, vocab_size) float32; positions
                             before logits_from are context only and skip the output head
    new_cache(batch_size, max_len) -> KVCache   buffers for incremental decoding
    num_params() -> int
gptlab's own families (gpt.py, nanochat.py, gpt2.py) also split forward in two, forward = head(hidden(...)):
    hidden(idx, cache=None, logits_from=0) -> (B, T - logits_from, C)   final normalised states
    head(h) -> (..., vocab_size) float32                                 output head (+ soft-cap)
so bits-per-byte runs the head only on scored positions, a chunk at a time (evaluate/bpb.py token_nll).
With a cache, `forward` reads the positions already cached (cache.pos), appends the new keys/values, and
advances cache.pos by T; `cache.expand(n)` repeats each row n times so one prefill serves n samples.

Families: gpt.py (gptlab's own, nanochat style), nanochat.py (checkpoints written by nanochat), gpt2.py
(classic GPT-2: nanoGPT, llm.c, OpenAI weights), hf.py (any transformers causal LM). Readers in
gptlab/checkpoints/ build them from files.
"""

from gptlab.models.kv_cache import KVCache

__all__ = ["KVCache"]
