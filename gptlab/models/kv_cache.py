"""Key/value buffers for incremental decoding, shared by every self-contained model family.

    python -m pytest tests/test_kv_cache.py

Layout per layer: k, v of shape (B, H, max_len, D). A forward pass with T new tokens writes positions
pos..pos+T-1 in every layer, then the model calls `advance(T)` once. `attend(layer, q, k, v)` stores the
new keys/values and returns causal attention over everything cached (gpt.py and gpt2.py use it).

Shared prompts. When n samples continue one prompt, `share(owner)` turns a cache prefilled with U distinct
prompts into a SharedPrefixCache for B = len(owner) rows: the prompts' keys/values stay stored once per
prompt (U rows) and only positions after them are stored per sample. Decoding one token then reads each
prompt's keys once per step for all of its samples (their queries are batched against it) instead of once
per sample. The result is the same attention, computed in two parts joined by one softmax.

Static shapes. `StaticKVCache` keeps every shape fixed from its creation and its position in a device tensor
(`pos_t`, mirrored by the Python `pos`): keys/values are written with `index_copy_` at `positions(T)` and
attention reads all max_len positions, the unwritten ones masked. A one-token step then runs the same kernels
on the same buffers at every position, which is what a CUDA graph replays (models/decode_graph.py). Models
take their positions from `cache.positions(T)` (rotary tables, learned position embeddings), which both
caches provide. Tested on CPU: greedy tokens equal those of the dynamic cache (tests/test_static_cache.py).
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
import torch.nn.functional as F


class KVCache:
    static = False              # StaticKVCache: fixed shapes, position on the device

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

    def positions(self, t: int) -> torch.Tensor:
        """(t,) int64 on the cache's device: the positions of the next t tokens."""
        return torch.arange(self.pos, self.pos + t, device=self.k.device)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store k, v (B, Hkv, T, D) and return causal attention (B, H, T, D) of q over every cached position
        (H a multiple of Hkv: grouped-query attention)."""
        start = self.pos
        k, v = self.update(layer, k, v)
        gqa = q.shape[1] != k.shape[1]
        if start == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1, enable_gqa=gqa)
        mask = causal_mask(q.shape[2], k.shape[2], q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)

    def share(self, owner: list[int]) -> "SharedPrefixCache":
        """This cache's rows as shared prompts of len(owner) samples (sample i continues row owner[i])."""
        return SharedPrefixCache(self, owner)

    def expand(self, n: int) -> "KVCache":
        """A cache with each row repeated n times (row i -> rows i*n .. i*n+n-1)."""
        rows = torch.arange(self.batch_size, device=self.k.device).repeat_interleave(n)
        out = KVCache.__new__(KVCache)
        out.k, out.v = _copy_rows(self.k, rows, self.pos), _copy_rows(self.v, rows, self.pos)
        out.pos, out.max_len = self.pos, self.max_len
        return out

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (a 1-D index, repeats allowed): drops finished samples from a batch, or copies a
        prefilled prompt to each of its samples."""
        self.k, self.v = _copy_rows(self.k, rows, self.pos), _copy_rows(self.v, rows, self.pos)


def _copy_rows(buf: torch.Tensor, rows: torch.Tensor, filled: int) -> torch.Tensor:
    """A buffer of the same capacity holding `rows` of buf (dim 1): only the first `filled` positions are
    copied (at a 64-token prompt in a 264-position cache, a quarter of the bytes)."""
    out = buf.new_empty((buf.shape[0], len(rows), *buf.shape[2:]))
    out[:, :, :, :filled] = buf[:, rows, :, :filled]
    return out


def causal_mask(t_new: int, t_total: int, device) -> torch.Tensor | None:
    """Boolean (t_new, t_total) mask for queries at the last t_new positions; None when SDPA's is_causal
    or no mask at all is exact (prefill from 0, or single-token decode)."""
    if t_new == 1:
        return None
    offset = t_total - t_new
    return torch.ones(t_new, t_total, dtype=torch.bool, device=device).tril(diagonal=offset)


class SharedPrefixCache(KVCache):
    """Positions < prefix stored once per prompt (U rows), later positions per sample (B rows)."""

    def __init__(self, base: KVCache, owner: list[int]):
        n_layers, _, n_heads, max_len, head_dim = base.k.shape
        self.prefix = base.pos
        self.pk = base.k[:, :, :, :self.prefix].contiguous()             # (L, U, Hkv, P, D)
        self.pv = base.v[:, :, :, :self.prefix].contiguous()
        shape = (n_layers, len(owner), n_heads, max_len - self.prefix, head_dim)
        self.k, self.v = base.k.new_empty(shape), base.v.new_empty(shape)  # (L, B, Hkv, max_len - P, D)
        self.pos, self.max_len = base.pos, max_len
        self._group(list(owner))

    def _group(self, owner: list[int]) -> None:
        """Slots of a (prompt, sample) grid: row_slot[b] = owner * G + rank among its prompt's rows;
        slot_row lists each slot's row, or B (a zero query) where a prompt has fewer than G rows."""
        n_prompts, dev = self.pk.shape[1], self.k.device
        counts = [0] * n_prompts
        row_slot = []
        width = max(Counter(owner).values(), default=1)
        for u in owner:
            row_slot.append(u * width + counts[u])
            counts[u] += 1
        slot_row = [len(owner)] * (n_prompts * width)
        for b, slot in enumerate(row_slot):
            slot_row[slot] = b
        self.owner, self.width = owner, width
        self.row_slot = torch.tensor(row_slot, device=dev)
        self.slot_row = torch.tensor(slot_row, device=dev)

    def _store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> int:
        """Write the new positions after the prefix; return how many per-sample positions are filled."""
        t, a = k.shape[2], self.pos - self.prefix
        if self.pos + t > self.max_len:
            raise ValueError(f"KV cache full: {self.pos + t} positions > max_len {self.max_len}")
        self.k[layer, :, :, a:a + t] = k
        self.v[layer, :, :, a:a + t] = v
        return a + t

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new positions; return full (B, Hkv, S, D) keys/values (a copy: the slow path)."""
        a = self._store(layer, k, v)
        rows = torch.tensor(self.owner, device=k.device)
        return (torch.cat([self.pk[layer, rows], self.k[layer, :, :, :a]], dim=2),
                torch.cat([self.pv[layer, rows], self.v[layer, :, :, :a]], dim=2))

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.shape[2] != 1:                                 # several new positions: materialise, then as usual
            return super().attend(layer, q, k, v)
        a = self._store(layer, k, v)
        ko, vo = self.k[layer, :, :, :a], self.v[layer, :, :, :a]             # (B, Hkv, So, D)
        pk, pv = self.pk[layer], self.pv[layer]                               # (U, Hkv, P, D)
        B, H, _, D = q.shape
        U, Hkv, P, _ = pk.shape
        G, r = self.width, H // Hkv
        qr = q.reshape(B, Hkv, r, D) * D ** -0.5                                # a query per (kv head, group)
        s_own = qr @ ko.transpose(-1, -2)                                      # (B, Hkv, r, So)
        qg = torch.cat([qr, qr.new_zeros(1, Hkv, r, D)])[self.slot_row]        # (U*G, Hkv, r, D)
        qg = qg.view(U, G, Hkv, r, D).transpose(1, 2).reshape(U, Hkv, G * r, D)
        s_pre = qg @ pk.transpose(-1, -2)                                      # (U, Hkv, G*r, P)
        s_pre = s_pre.view(U, Hkv, G, r, P).transpose(1, 2).reshape(U * G, Hkv, r, P)[self.row_slot]
        p = torch.softmax(torch.cat([s_pre, s_own], dim=-1).float(), dim=-1).to(q.dtype)
        o_own = p[..., P:] @ vo                                                # (B, Hkv, r, D)
        pg = p.new_zeros(U * G, Hkv, r, P)
        pg[self.row_slot] = p[..., :P]
        pg = pg.view(U, G, Hkv, r, P).transpose(1, 2).reshape(U, Hkv, G * r, P)
        o_pre = (pg @ pv).view(U, Hkv, G, r, D).transpose(1, 2).reshape(U * G, Hkv, r, D)[self.row_slot]
        return (o_pre + o_own).view(B, H, 1, D)

    def select(self, rows: torch.Tensor) -> None:
        filled = self.pos - self.prefix
        self.k, self.v = _copy_rows(self.k, rows, filled), _copy_rows(self.v, rows, filled)
        self._group([self.owner[i] for i in rows.tolist()])

    def expand(self, n: int):
        raise NotImplementedError("a shared-prefix cache is built by KVCache.share; expand the prefill cache")

    def share(self, owner):
        raise NotImplementedError("this cache already shares its prefix")


class StaticKVCache(KVCache):
    """Fixed shapes, the position on the device (see the module docstring). Rows are selected or expanded as
    in KVCache (a new batch size is a new graph); prompts are copied per sample, never shared."""

    static = True
    share = None

    def __init__(self, n_layers: int, batch_size: int, n_heads: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        super().__init__(n_layers, batch_size, n_heads, max_len, head_dim, device, dtype)
        self.pos_t = torch.zeros((), dtype=torch.long, device=self.k.device)
        self.cols = torch.arange(max_len, device=self.k.device)          # (max_len,) every position

    def positions(self, t: int) -> torch.Tensor:
        return self.pos_t + self.cols[:t]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, Hkv, T, D) at positions(T); return the whole (B, Hkv, max_len, D) buffers."""
        t = k.shape[2]
        if self.pos + t > self.max_len:
            raise ValueError(f"KV cache full: {self.pos + t} positions > max_len {self.max_len}")
        at = self.positions(t)
        self.k[layer].index_copy_(2, at, k)
        self.v[layer].index_copy_(2, at, v)
        return self.k[layer], self.v[layer]

    def advance(self, t: int) -> None:
        self.pos += t
        self.pos_t += t                     # on the device: a replayed graph advances it too

    def rewind(self, pos: int) -> None:
        """Set the position back to `pos` (after a graph's warm-up steps); later positions are overwritten."""
        self.pos = pos
        self.pos_t.fill_(pos)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        at = self.positions(q.shape[2])                                      # (T,)
        k, v = self.update(layer, k, v)                                      # (B, Hkv, max_len, D)
        mask = self.cols[None, :] <= at[:, None]                             # (T, max_len): itself and before
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])

    def select(self, rows: torch.Tensor) -> None:
        # zeros after the filled positions, never uninitialised memory: a masked NaN would still poison
        # attention (0 x NaN), and the static path reads every position
        for name in ("k", "v"):
            buf = getattr(self, name)
            out = buf.new_zeros((buf.shape[0], len(rows), *buf.shape[2:]))
            out[:, :, :, :self.pos] = buf[:, rows, :, :self.pos]
            setattr(self, name, out)

    def expand(self, n: int) -> "StaticKVCache":
        out = copy.copy(self)
        out.pos_t = self.pos_t.clone()
        out.select(torch.arange(self.batch_size, device=self.k.device).repeat_interleave(n))
        return out
