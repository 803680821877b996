"""gptlab's GPT as a transformers causal LM, shipped by `gptlab export PATH --format hf --out DIR`.

    gptlab export runs/demo --format hf --out demo_hf
    python -c "from transformers import AutoModelForCausalLM as A; A.from_pretrained('demo_hf', trust_remote_code=True)"
    python -m pytest tests/test_export_hf.py          # logits equal gptlab's to 1e-4

Self-contained (torch + transformers). The architecture, as gptlab/models/gpt.py computes it: token embedding,
parameter-free RMSNorm; per block x += attn(norm(x)); x += mlp(norm(x)) with rotary attention (the two halves of
each head rotated), QK-norm after rotary, grouped-query heads, no biases; MLP relu(x)^2 at 4x width; a final
RMSNorm and an untied head whose logits are soft-capped, cap * tanh(z / cap). The weights keep gptlab's names.
There is no KV cache: `generate` recomputes the whole sequence at each step (exact, slower on long outputs).
`attention_mask` may mark padding (left or right); `labels` gives the mean next-token cross-entropy.
Shapes: B batch, T tokens, C width, H query heads, G key/value heads, D head dim, V vocab.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_gptlab import GptlabConfig


def rms_norm(x):
    return F.rms_norm(x, (x.size(-1),))


def rotary(positions, head_dim, base, dtype):
    """cos, sin (B, 1, T, D/2) for integer positions (B, T)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[..., None] * inv_freq                    # (B, T, D/2)
    return freqs.cos()[:, None].to(dtype), freqs.sin()[:, None].to(dtype)


def apply_rotary(x, cos, sin):
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.n_embd // cfg.n_head
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)       # (B, H, T, D)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)    # (B, G, T, D)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = rms_norm(apply_rotary(q, cos, sin)), rms_norm(apply_rotary(k, cos, sin))
        gqa = self.n_kv_head != self.n_head
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(rms_norm(x), cos, sin, mask)
        return x + self.mlp(rms_norm(x))


class GptlabForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = GptlabConfig
    base_model_prefix = "gptlab"
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def __init__(self, config: GptlabConfig):
        super().__init__(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)])))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
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

    def forward(self, input_ids, attention_mask=None, labels=None, logits_to_keep=0, return_dict=None,
                **kwargs):
        """input_ids (B, T) -> logits (B, T, V) float32 (the last `logits_to_keep` positions when > 0)."""
        B, T = input_ids.shape
        cfg = self.config
        dtype = self.transformer.wte.weight.dtype
        mask = None
        positions = torch.arange(T, device=input_ids.device).expand(B, T)
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()                                               # (B, T)
            positions = (keep.long().cumsum(-1) - 1).clamp(min=0)
            causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
            eye = torch.eye(T, dtype=torch.bool, device=input_ids.device)   # padded rows attend to themselves
            mask = ((causal & keep[:, None, :]) | eye)[:, None]                        # (B, 1, T, T)
        cos, sin = rotary(positions, cfg.n_embd // cfg.n_head, cfg.rope_base, dtype)
        x = rms_norm(self.transformer.wte(input_ids))                                   # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cos, sin, mask)
        h = rms_norm(x[:, -logits_to_keep:] if logits_to_keep else x)
        logits = self.lm_head(h).float()
        logits = cfg.softcap * torch.tanh(logits / cfg.softcap)                        # (B, T', V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)
