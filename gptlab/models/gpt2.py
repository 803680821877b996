"""Classic GPT-2: the architecture behind nanoGPT checkpoints, llm.c .bin files and OpenAI's GPT-2 weights.

    python -m pytest tests/test_gpt2.py         # parity with transformers' GPT2LMHeadModel, full and cached

Learned absolute positions, pre-LayerNorm blocks (LayerNorm bias optional, as nanoGPT's `bias=False`),
fused qkv projection, GELU with the tanh approximation (GPT-2's `gelu_new`; nanoGPT alone uses the exact
form), and an output head tied to the token embedding. Weights use PyTorch (out, in) layout under nanoGPT's
names (`transformer.h.0.attn.c_attn...`); `from_hf_state_dict` converts transformers' Conv1D (in, out)
layout. Self-contained and single-device; implements `SplitHeadLM` (gptlab/models/__init__.py), the
interface every family shares.

Shapes: B batch, T new tokens, S positions attended (cached + new), C n_embd, H heads, D head dim, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gptlab.models.kv_cache import KVCache, StaticKVCache


@dataclass
class GPT2Config:
    vocab_size: int = 50257
    sequence_len: int = 1024        # learned positions: the model cannot see further back than this
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    bias: bool = True               # biases in Linear and LayerNorm (nanoGPT's `bias`; GPT-2 has them)
    layer_norm_eps: float = 1e-5
    gelu: str = "tanh"              # GPT-2, transformers and llm.c use the tanh approximation; nanoGPT's
                                    # nn.GELU() is the exact erf form ("none", in torch's spelling)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.layer, self.n_head = layer, cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)                              # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = cache.attend(self.layer, q, k, v)                             # over every cached position
        y = y.transpose(1, 2).reshape(B, T, C)                                # (B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.approximate = cfg.gelu

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate))   # (B, T, 4C) inside


class Block(nn.Module):
    def __init__(self, cfg: GPT2Config, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cache):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.config = cfg
        self.vocab_size, self.sequence_len = cfg.vocab_size, cfg.sequence_len
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.sequence_len, cfg.n_embd),
            h=nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer)),
            ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias),
        ))

    @classmethod
    def from_state_dict(cls, cfg: GPT2Config, state: dict) -> GPT2:
        """Build without a random init, then take `state` (our names; a tied `lm_head.weight` is dropped)."""
        state = dict(state)
        head = state.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, state.get("transformer.wte.weight", head)):
            raise ValueError("lm_head.weight differs from transformer.wte.weight: an untied head is not GPT-2")
        with torch.device("meta"):
            model = cls(cfg)
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, logits_from: int = 0) -> torch.Tensor:
        """idx (B, T) -> logits (B, T - logits_from, V) float32. `logits_from` skips the head for leading
        positions whose predictions the caller does not need (bits-per-byte's context-only positions)."""
        return self.head(self.hidden(idx, cache, logits_from))

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, logits_from: int = 0) -> torch.Tensor:
        """The final normalised states (B, T - logits_from, C) that `head` turns into logits."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.sequence_len:
            raise ValueError(f"{start + T} positions > the model's {self.sequence_len} learned positions")
        pos = torch.arange(T, device=idx.device) if cache is None else cache.positions(T)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)            # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x[:, logits_from:])                     # (B, T', C)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """States (..., C) -> logits (..., V) float32: the head tied to the token embedding."""
        return F.linear(h, self.transformer.wte.weight).float()

    def new_cache(self, batch_size: int, max_len: int, *, static: bool = False) -> KVCache:
        """Buffers for up to max_len positions (the learned ones at most); `static`: a StaticKVCache."""
        cfg, p = self.config, self.transformer.wte.weight
        kind = StaticKVCache if static else KVCache
        return kind(cfg.n_layer, batch_size, cfg.n_head, min(max_len, cfg.sequence_len),
                    cfg.n_embd // cfg.n_head, device=p.device, dtype=p.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())   # the tied head is the embedding: counted once

    @torch.no_grad()
    def init_random(self, seed: int = 0) -> GPT2:
        """GPT-2's initialisation (normal 0.02, residual projections scaled by 1/sqrt(2 n_layer))."""
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.ones_like(p) if "ln" in name and name.endswith("weight") else torch.zeros_like(p))
            else:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj.weight") else 0.02
                p.copy_(torch.randn(p.shape, generator=g) * std)
        return self


# transformers' GPT-2 stores these as Conv1D with (in, out) weights; ours are nn.Linear (out, in).
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def from_hf_state_dict(state: dict, cfg: GPT2Config | None = None) -> dict:
    """A transformers GPT2LMHeadModel/GPT2Model state dict in our names and layout (the head stays tied).
    `cfg` is accepted for symmetry with config_from_hf; the names alone determine the conversion."""
    out = {}
    for name, t in state.items():
        name = name.removeprefix("transformer.")
        if name.startswith("lm_head") or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if name.endswith(_CONV1D):
            t = t.t()
        out["transformer." + name] = t.contiguous()
    return out


def config_from_hf(hf_config) -> GPT2Config:
    """Our config from a transformers GPT2Config (or its dict)."""
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    return GPT2Config(vocab_size=c["vocab_size"], sequence_len=c.get("n_positions", 1024),
                      n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"], bias=True,
                      layer_norm_eps=c.get("layer_norm_epsilon", 1e-5))
