"""nanochat's GPT (karpathy/nanochat @ 92d63d4e) as a transformers causal LM, shipped by `gptlab export`.

    gptlab export base_dir/base_checkpoints/d20 --format hf --out d20_hf
    python -m pytest tests/test_export_hf.py          # logits equal gptlab's (and nanochat's) to 1e-4

Self-contained (torch + transformers); the forward pass computes what gptlab/models/nanochat.py computes:
token embedding then a parameter-free RMSNorm; "smear" (each position adds smear_lambda *
sigmoid(smear_gate(x_t[:24])) * x_{t-1}); each layer first mixes x = resid_lambdas[i] * x + x0_lambdas[i] * x0;
attention with rotary (base 100000) then QK-norm scaled by 1.2, grouped-query heads, a per-layer sliding
window from window_pattern (L = the full context, S = a quarter of it rounded up to 128; the last layer L);
value embeddings on alternating layers, gated 3 * sigmoid(ve_gate(x[:12])); MLP relu(x)^2; "backout" subtracts
backout_lambda * (the residual after layer n_layer // 2) before the final norm; an untied head over the vocab
padded to a multiple of 64 (cropped), logits soft-capped 15 * tanh(z / 15). The weights keep nanochat's names.
There is no KV cache: `generate` recomputes the whole sequence at each step. `attention_mask` may mark padding.
Shapes: B batch, T tokens, C width, H query heads, G key/value heads, D head dim.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_gptlab_nanochat import GptlabNanochatConfig

SOFTCAP, QK_SCALE, ROPE_BASE = 15.0, 1.2, 100_000
SMEAR_CHANNELS, VE_GATE_CHANNELS = 24, 12


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def has_value_embedding(layer, n_layer):
    return layer % 2 == (n_layer - 1) % 2


def window_sizes(cfg):
    pattern = cfg.window_pattern.upper()
    short = -(-cfg.sequence_len // 4 // 128) * 128
    sizes = [cfg.sequence_len if pattern[i % len(pattern)] == "L" else short for i in range(cfg.n_layer)]
    sizes[-1] = cfg.sequence_len
    return sizes


def rotary(positions, head_dim, dtype):
    """cos, sin (B, T, 1, D/2) for integer positions (B, T)."""
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
                                   / head_dim)
    freqs = positions.float()[..., None] * inv_freq
    return freqs.cos()[:, :, None].to(dtype), freqs.sin()[:, :, None].to(dtype)


def apply_rotary(x, cos, sin):
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.n_embd // cfg.n_head
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.ve_gate = nn.Linear(VE_GATE_CHANNELS, cfg.n_kv_head, bias=False) \
            if has_value_embedding(layer, cfg.n_layer) else None

    def forward(self, x, ve, cos, sin, mask):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)                      # (B, T, H, D)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)                   # (B, T, G, D)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:
            gate = 3 * torch.sigmoid(self.ve_gate(x[..., :VE_GATE_CHANNELS]))       # (B, T, G)
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k = norm(q) * QK_SCALE, norm(k) * QK_SCALE
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)            # (B, H|G, T, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_head != self.n_kv_head)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = MLP(cfg)

    def forward(self, x, ve, cos, sin, mask):
        x = x + self.attn(norm(x), ve, cos, sin, mask)
        return x + self.mlp(norm(x))


class GptlabNanochatForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = GptlabNanochatConfig
    base_model_prefix = "nanochat"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def __init__(self, config: GptlabNanochatConfig):
        super().__init__(config)
        padded = -(-config.vocab_size // 64) * 64
        kv_dim = config.n_kv_head * (config.n_embd // config.n_head)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(padded, config.n_embd),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer))))
        self.lm_head = nn.Linear(config.n_embd, padded, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        self.smear_gate = nn.Linear(SMEAR_CHANNELS, 1, bias=False)
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.backout_lambda = nn.Parameter(torch.zeros(1))
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(padded, kv_dim) for i in range(config.n_layer)
                                           if has_value_embedding(i, config.n_layer)})
        self.windows = window_sizes(config)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, value):
        self.transformer.wte = value

    def get_output_embeddings(self):
        return self.lm_head

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}     # no cache: the whole sequence

    def _masks(self, keep, T, device):
        """Per layer: the (B, 1, T, T) boolean mask of its window (and of padding), or None for plain causal."""
        row = torch.arange(T, device=device)[:, None]
        col = torch.arange(T, device=device)[None, :]
        eye = row == col                                                   # padded rows attend to themselves
        out = []
        for w in self.windows:
            if keep is None and w >= T:
                out.append(None)
                continue
            m = (col <= row) & (row - col <= w)                                  # (T, T)
            m = m[None] if keep is None else (m[None] & keep[:, None, :]) | eye[None]
            out.append(m[:, None])
        return out

    def forward(self, input_ids, attention_mask=None, labels=None, logits_to_keep=0, return_dict=None,
                **kwargs):
        """input_ids (B, T) -> logits (B, T, vocab_size) float32 (the last `logits_to_keep` when > 0)."""
        B, T = input_ids.shape
        cfg = self.config
        dtype = self.lm_head.weight.dtype
        keep = None
        positions = torch.arange(T, device=input_ids.device).expand(B, T)
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()                                               # (B, T)
            positions = (keep.long().cumsum(-1) - 1).clamp(min=0)
        masks = self._masks(keep, T, input_ids.device)
        cos, sin = rotary(positions, cfg.n_embd // cfg.n_head, dtype)

        x = norm(self.transformer.wte(input_ids).to(dtype))                           # (B, T, C)
        prev = x[:, :-1] if keep is None else x[:, :-1] * keep[:, :-1, None]          # a pad smears nothing
        gate = self.smear_lambda.to(dtype) * torch.sigmoid(self.smear_gate(x[..., :SMEAR_CHANNELS]))
        x = torch.cat([x[:, :1], x[:, 1:] + gate[:, 1:] * prev], dim=1)
        x0, backout_at, x_backout = x, cfg.n_layer // 2, None
        for i, block in enumerate(self.transformer.h):
            x = self.resid_lambdas[i].to(dtype) * x + self.x0_lambdas[i].to(dtype) * x0
            ve = self.value_embeds[str(i)](input_ids).to(dtype) if str(i) in self.value_embeds else None
            mask = masks[i]
            if mask is None:           # full causal attention: the same as nanochat's window >= T
                mask = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
            x = block(x, ve, cos, sin, mask)
            if i == backout_at:
                x_backout = x
        x = norm(x - self.backout_lambda.to(dtype) * x_backout)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(x)[..., :cfg.vocab_size].float()
        logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)
