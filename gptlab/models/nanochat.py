"""The model of checkpoints written by karpathy/nanochat @ 92d63d4e (its `nanochat/gpt.py`), re-derived.

    python -m pytest tests/test_checkpoints_nanochat.py     # reproduces nanochat's own logits, bpb, greedy text

What makes it different from GPT-2, in the order the forward pass meets it:
  * token embedding, then a parameter-free RMSNorm (F.rms_norm, eps = dtype's machine epsilon);
  * "smear": each position adds smear_lambda * sigmoid(smear_gate(x_t[:24])) * x_{t-1} (cheap bigram);
  * every layer first rescales its input: x = resid_lambdas[i] * x + x0_lambdas[i] * x0 (x0 = smeared input);
  * attention: rotary (base 100000, halves rotated as nanochat does) then QK-norm scaled by 1.2 on both q and
    k, grouped-query heads, and a per-layer window from `window_pattern` (L = full context, S = a quarter of it
    rounded up to 128; the last layer is always L);
  * value embeddings on alternating layers (the last always has one): v += 3 * sigmoid(ve_gate(x[:12])) * ve;
  * MLP relu(x)^2; no biases anywhere; pre-norm blocks with the same parameter-free RMSNorm;
  * "backout": before the final norm, subtract backout_lambda * (the residual after layer n_layer // 2);
  * untied lm_head over a vocab padded to a multiple of 64 (cropped), logits soft-capped: 15 * tanh(z / 15).
Shapes: B batch, T new tokens, S positions attended, C n_embd, H query heads, G kv heads, D head dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.models.kv_cache import KVCache

SOFTCAP = 15.0
QK_SCALE = 1.2
ROPE_BASE = 100_000
SMEAR_CHANNELS = 24
VE_GATE_CHANNELS = 12
ROTARY_PREBUILT = 8192      # rotary positions a loaded model starts with; more are added on demand


@dataclass
class NanochatConfig:
    sequence_len: int = 2048
    vocab_size: int = 32768
    n_layer: int = 12
    n_head: int = 6
    n_kv_head: int = 6
    n_embd: int = 768
    window_pattern: str = "SSSL"


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer: int, n_layer: int) -> bool:
    return layer % 2 == (n_layer - 1) % 2


def window_sizes(cfg: NanochatConfig) -> list[int]:
    """Keys each layer may look back (beyond the query itself), from the tiled window pattern."""
    pattern = cfg.window_pattern.upper()
    if not pattern or set(pattern) - set("SL"):
        raise ValueError(f"window_pattern {cfg.window_pattern!r}: use only S and L")
    short = -(-cfg.sequence_len // 4 // 128) * 128
    sizes = [cfg.sequence_len if pattern[i % len(pattern)] == "L" else short for i in range(cfg.n_layer)]
    sizes[-1] = cfg.sequence_len
    return sizes


def rotary_tables(cfg: NanochatConfig, device=None, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (1, length, 1, D/2) in float32, by default 10 * sequence_len positions: nanochat precomputes
    10x the training length; positions past that are refused, not extrapolated. A position's values do not
    depend on `length`, so the tables may be built short and extended."""
    head_dim = cfg.n_embd // cfg.n_head
    length = 10 * cfg.sequence_len if length is None else length
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, D); cos/sin (1, T, 1, D/2). nanochat rotates the two halves by -theta; only the relative
    angle between q and k matters, but the sign must match the checkpoint."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class NanochatCache(KVCache):
    """KVCache plus the last position's normalised embedding, which smear needs when decoding one token.
    Its attention (sliding windows) reads `update`'s keys itself, so prompts are not shared (`share`)."""

    share = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prev_embedding = None          # (B, 1, C)

    def expand(self, n):
        out = super().expand(n)
        out.__class__ = NanochatCache       # the base builds a plain KVCache; its buffers are what we want
        out.prev_embedding = None if self.prev_embedding is None else \
            self.prev_embedding.repeat_interleave(n, dim=0)
        return out

    def select(self, rows):
        super().select(rows)
        if self.prev_embedding is not None:
            self.prev_embedding = self.prev_embedding[rows]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: NanochatConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.n_kv_head = layer, cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.ve_gate = nn.Linear(VE_GATE_CHANNELS, cfg.n_kv_head, bias=False) \
            if has_value_embedding(layer, cfg.n_layer) else None

    def forward(self, x, ve, cos_sin, window: int, cache: KVCache | None):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)               # (B, T, H, D)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)            # (B, T, G, D)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)            # (B, T, G, D)
        if ve is not None:
            gate = 3 * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))  # (B, T, G), in (0, 3)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        cos, sin = cos_sin
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k = norm(q) * QK_SCALE, norm(k) * QK_SCALE
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)     # (B, H|G, T, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)                             # (B, G, S, D)
        y = attend(q, k, v, window)                                           # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


def attend(q, k, v, window: int) -> torch.Tensor:
    """Causal attention of the T newest positions over S keys, each query seeing at most `window` earlier
    keys plus itself (FlashAttention's window_size=(window, 0), which nanochat uses)."""
    T, S = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if T == S and window >= T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if T == 1:
        k, v = k[:, :, max(0, S - window - 1):], v[:, :, max(0, S - window - 1):]
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    row = torch.arange(S - T, S, device=q.device)[:, None]                  # absolute query positions
    col = torch.arange(S, device=q.device)[None, :]
    mask = (col <= row) & (row - col <= window)                               # (T, S)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


class MLP(nn.Module):
    def __init__(self, cfg: NanochatConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: NanochatConfig, layer: int):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, ve, cos_sin, window, cache):
        x = x + self.attn(norm(x), ve, cos_sin, window, cache)
        return x + self.mlp(norm(x))


class NanochatGPT(nn.Module):
    def __init__(self, cfg: NanochatConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head or cfg.n_head % cfg.n_kv_head:
            raise ValueError(f"n_embd {cfg.n_embd}, n_head {cfg.n_head}, n_kv_head {cfg.n_kv_head} do not divide")
        self.config = cfg
        self.vocab_size, self.sequence_len = cfg.vocab_size, cfg.sequence_len
        padded = -(-cfg.vocab_size // 64) * 64
        head_dim = cfg.n_embd // cfg.n_head
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(padded, cfg.n_embd),
            h=nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, padded, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(cfg.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(cfg.n_layer))
        self.smear_gate = nn.Linear(SMEAR_CHANNELS, 1, bias=False)
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.backout_lambda = nn.Parameter(torch.zeros(1))
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(padded, cfg.n_kv_head * head_dim)
                                           for i in range(cfg.n_layer) if has_value_embedding(i, cfg.n_layer)})
        self.windows = window_sizes(cfg)
        self.rotary_limit = 10 * cfg.sequence_len
        cos, sin = rotary_tables(cfg)
        self.register_buffer("cos", cos, persistent=False)                  # (1, 10 T, 1, D/2)
        self.register_buffer("sin", sin, persistent=False)

    @classmethod
    def from_state_dict(cls, cfg: NanochatConfig, state: dict) -> NanochatGPT:
        """Build without a random init (on the meta device), then take the tensors of `state` as they are.
        The rotary tables start with ROTARY_PREBUILT positions and `hidden` extends them on demand (up to
        10 * sequence_len), so a checkpoint's sequence_len alone allocates nothing."""
        with torch.device("meta"):
            model = cls(cfg)
        model.load_state_dict(state, strict=True, assign=True)
        model.cos, model.sin = rotary_tables(cfg, model.lm_head.weight.device,
                                             min(model.rotary_limit, ROTARY_PREBUILT))
        return model.eval()

    def forward(self, idx: torch.Tensor, cache: NanochatCache | None = None, logits_from: int = 0):
        """idx (B, T) -> soft-capped logits (B, T - logits_from, vocab_size) float32."""
        return self.head(self.hidden(idx, cache, logits_from))

    def hidden(self, idx: torch.Tensor, cache: NanochatCache | None = None, logits_from: int = 0):
        """The final normalised states (B, T - logits_from, C) that `head` turns into logits."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cos.shape[1]:
            if start + T > self.rotary_limit:
                raise ValueError(f"{start + T} positions > the {self.rotary_limit} rotary positions nanochat allows")
            self.cos, self.sin = rotary_tables(self.config, self.cos.device,
                                               min(self.rotary_limit, max(start + T, 2 * self.cos.shape[1])))
        dtype = self.lm_head.weight.dtype
        cos_sin = (self.cos[:, start:start + T].to(dtype), self.sin[:, start:start + T].to(dtype))

        x = norm(self.transformer.wte(idx).to(dtype))                         # (B, T, C)
        x = self._smear(x, cache)
        x0, backout_at, x_backout = x, self.config.n_layer // 2, None
        for i, block in enumerate(self.transformer.h):
            x = self.resid_lambdas[i].to(dtype) * x + self.x0_lambdas[i].to(dtype) * x0
            ve = self.value_embeds[str(i)](idx).to(dtype) if str(i) in self.value_embeds else None
            x = block(x, ve, cos_sin, self.windows[i], cache)
            if i == backout_at:
                x_backout = x
        if cache is not None:
            cache.advance(T)
        x = x[:, logits_from:] - self.backout_lambda.to(dtype) * x_backout[:, logits_from:]
        return norm(x)                                                        # (B, T', C)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """States (..., C) -> soft-capped logits (..., vocab_size) float32 (the padded rows cropped)."""
        logits = self.lm_head(h)[..., :self.vocab_size].float()
        return SOFTCAP * torch.tanh(logits / SOFTCAP)

    def _smear(self, x: torch.Tensor, cache: NanochatCache | None) -> torch.Tensor:
        lam = self.smear_lambda.to(x.dtype)
        prev = None if cache is None else cache.prev_embedding               # (B, 1, C) from the last call
        if cache is not None:
            cache.prev_embedding = x[:, -1:]
        gate = lam * torch.sigmoid(self.smear_gate(x[..., :SMEAR_CHANNELS]))  # (B, T, 1)
        if prev is None:                                                      # position 0 has no predecessor
            return torch.cat([x[:, :1], x[:, 1:] + gate[:, 1:] * x[:, :-1]], dim=1)
        # nanochat's engine only prefills from 0 then decodes one token; a chunk after cached positions is
        # smeared with the cached predecessor too, so any chunking gives the same logits as one full pass.
        return x + gate * torch.cat([prev, x[:, :-1]], dim=1)

    def new_cache(self, batch_size: int, max_len: int) -> NanochatCache:
        cfg, p = self.config, self.lm_head.weight
        return NanochatCache(cfg.n_layer, batch_size, cfg.n_kv_head, max_len, cfg.n_embd // cfg.n_head,
                             device=p.device, dtype=p.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
