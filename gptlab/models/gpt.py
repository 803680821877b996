"""gptlab's own GPT, nanochat style — self-contained, single device, readable top to bottom.

    python -m pytest tests/test_gpt.py

Architecture (per block, pre-norm): x += attn(norm(x)); x += mlp(norm(x)), with
- norm: parameter-free RMSNorm;
- attention: rotary position embeddings, QK-norm (RMSNorm of queries and keys after rotary), optional
  grouped-query heads (n_kv_head), no biases, `scaled_dot_product_attention`;
- MLP: 4x width with ReLU^2;
- untied token embedding and output head; a final RMSNorm; logits soft-capped as cap * tanh(logits / cap).
The interface is `SplitHeadLM` in gptlab/models/__init__.py: forward(idx, cache=None, logits_from=0) -> float32
logits, plus the keyword-only `targets` that turns it into the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.models.kv_cache import KVCache, StaticKVCache

ROTARY_PREBUILT = 8192      # positions of rotary tables a loaded model starts with; more are added on demand


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 6
    n_kv_head: int = 6
    vocab_size: int = 32768
    sequence_len: int = 2048
    softcap: float = 15.0
    rope_base: float = 10000.0

    @classmethod
    def from_model_config(cls, m, vocab_size: int | None = None) -> "GPTConfig":
        """From gptlab.config.ModelConfig (depth presets)."""
        return cls(n_layer=m.depth, n_embd=m.width, n_head=m.n_head, n_kv_head=m.n_kv_head or m.n_head,
                   vocab_size=vocab_size or m.vocab_size, sequence_len=m.sequence_len, softcap=m.softcap,
                   rope_base=m.rope_base)


def rms_norm(x):
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x, cos, sin):
    # x: (B, H, T, D); rotate the two halves of the head dimension as complex pairs
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)      # (B, H, T, D)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)   # (B, Hkv, T, D)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        if cache is not None:
            y = cache.attend(self.layer, q, k, v)                                   # over every cached position
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache):
        x = x + self.attn(rms_norm(x), cos, sin, cache)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    family = "gptlab"

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.vocab_size, self.sequence_len = cfg.vocab_size, cfg.sequence_len
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # rotary tables cover twice the training context so sampling may run a little past it
        self.rotary_limit = 2 * cfg.sequence_len
        cos, sin = self._rotary(self.rotary_limit, cfg.n_embd // cfg.n_head, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)                        # (1, 1, 2T, D/2)
        self.register_buffer("sin", sin, persistent=False)

    @staticmethod
    def _rotary(length, head_dim, base, device=None):
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
        freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
        return freqs.cos()[None, None], freqs.sin()[None, None]

    @classmethod
    def from_state_dict(cls, cfg: GPTConfig, state: dict) -> GPT:
        """Build on the meta device (no random init, no memory), take the tensors of `state` as they are, then
        compute the rotary tables on their device for the first ROTARY_PREBUILT positions only: `hidden`
        extends them on demand, so a checkpoint's sequence_len alone allocates nothing."""
        with torch.device("meta"):
            model = cls(cfg)
        model.load_state_dict(state, strict=True, assign=True)
        model._grow_rotary(min(model.rotary_limit, ROTARY_PREBUILT), model.lm_head.weight.device)
        return model.eval()

    def _grow_rotary(self, length: int, device=None) -> None:
        """Rotary tables for `length` positions (the values of a position do not depend on the length)."""
        c = self.config
        self.cos, self.sin = self._rotary(length, c.n_embd // c.n_head, c.rope_base, device or self.cos.device)

    @torch.no_grad()
    def init_weights(self, seed: int = 0):
        """Embedding N(0, 1); input projections U(+-sqrt(3/n_embd)); output projections zero; head N(0, 1e-3)."""
        g = torch.Generator().manual_seed(seed)
        n = self.config.n_embd
        bound = (3 / n) ** 0.5
        self.transformer.wte.weight.copy_(torch.randn(self.transformer.wte.weight.shape, generator=g))
        self.lm_head.weight.copy_(torch.randn(self.lm_head.weight.shape, generator=g) * 1e-3)
        for block in self.transformer.h:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) * bound)
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()

    def forward(self, idx, cache: KVCache | None = None, logits_from: int = 0, *, targets=None):
        """idx (B, T) -> soft-capped logits (B, T - logits_from, V) float32; with `targets` (B, T), the mean
        cross-entropy instead (training; -1 targets are ignored)."""
        logits = self.head(self.hidden(idx, cache, logits_from))                    # (B, T', V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

    def hidden(self, idx, cache: KVCache | None = None, logits_from: int = 0) -> torch.Tensor:
        """The final normalised states (B, T - logits_from, C) that `head` turns into logits."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.cos.shape[2]:
            if start + T > self.rotary_limit:
                raise ValueError(f"sequence of {start + T} tokens exceeds the rotary table ({self.rotary_limit})")
            self._grow_rotary(min(self.rotary_limit, max(start + T, 2 * self.cos.shape[2])))
        at = slice(0, T) if cache is None else cache.positions(T)               # a static cache: a device tensor
        cos = self.cos[:, :, at].to(self.transformer.wte.weight.dtype)
        sin = self.sin[:, :, at].to(self.transformer.wte.weight.dtype)
        x = rms_norm(self.transformer.wte(idx))                                      # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cos, sin, cache)
        if cache is not None:
            cache.advance(T)
        # positions before logits_from are context only (bpb windows): skip the head there
        return rms_norm(x[:, logits_from:])                                          # (B, T', C)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """States (..., C) -> soft-capped logits (..., V) float32."""
        logits = self.lm_head(h).float()
        return self.config.softcap * torch.tanh(logits / self.config.softcap)

    def new_cache(self, batch_size: int, max_len: int, *, static: bool = False) -> KVCache:
        """Buffers for `max_len` positions; `static`: a StaticKVCache, with the rotary tables grown to
        max_len now (a captured graph keeps reading the tables it was captured with)."""
        w = self.transformer.wte.weight
        c = self.config
        if not static:
            return KVCache(c.n_layer, batch_size, c.n_kv_head, max_len, c.n_embd // c.n_head, w.device, w.dtype)
        if max_len > self.cos.shape[2]:
            self._grow_rotary(min(self.rotary_limit, max_len))
        return StaticKVCache(c.n_layer, batch_size, c.n_kv_head, max_len, c.n_embd // c.n_head, w.device, w.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per non-embedding weight, plus attention's 12 x layers x width x T."""
        c = self.config
        n = self.num_params() - self.transformer.wte.weight.numel()
        return 6 * n + 12 * c.n_layer * c.n_embd * c.sequence_len
