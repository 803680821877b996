"""Key/value buffers for incremental decoding, shared by every self-contained model family.

    python -m pytest tests/test_models.py -k cache

Layout per layer: k, v of shape (B, H, max_len, D). A forward pass with T new tokens writes positions
pos..pos+T-1 in every layer, then the model calls `advance(T)` once.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int, batch_size: int, n_heads: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layers, batch_size, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0
        self.max_len = max_len

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H, T, D) at the current position; return all keys/values so far."""
        t = k.shape[2]
        end = self.pos + t
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > max_len {self.max_len}")
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.pos += t

    def expand(self, n: int) -> "KVCache":
        """A cache with each row repeated n times (row i -> rows i*n .. i*n+n-1)."""
        rows = torch.arange(self.batch_size, device=self.k.device).repeat_interleave(n)
        out = KVCache.__new__(KVCache)
        out.k, out.v = self._rows(self.k, rows), self._rows(self.v, rows)
        out.pos, out.max_len = self.pos, self.max_len
        return out

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (a 1-D index, repeats allowed): drops finished samples from a batch, or copies a
        prefilled prompt to each of its samples."""
        self.k, self.v = self._rows(self.k, rows), self._rows(self.v, rows)

    def _rows(self, buf: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """New buffers of the same capacity holding `rows`: only the filled positions are copied (at one
        prompt of 64 tokens in a 264-position cache, a quarter of the bytes)."""
        out = buf.new_empty((buf.shape[0], len(rows), *buf.shape[2:]))
        out[:, :, :, :self.pos] = buf[:, rows, :, :self.pos]
        return out


def causal_mask(t_new: int, t_total: int, device) -> torch.Tensor | None:
    """Boolean (t_new, t_total) mask for queries at the last t_new positions; None when SDPA's is_causal
    or no mask at all is exact (prefill from 0, or single-token decode)."""
    if t_new == 1:
        return None
    offset = t_total - t_new
    return torch.ones(t_new, t_total, dtype=torch.bool, device=device).tril(diagonal=offset)
