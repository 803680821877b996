"""Any transformers causal LM behind gptlab's narrow model interface (transformers is an optional dependency).

    gptlab models peers/hf_gpt2                  # lists folders with config.json + *.safetensors
    python -m pytest tests/test_checkpoints_hf.py

`hf_skeleton(hf_config(folder))` builds the model a folder's config.json describes on the meta device, for
gptlab/checkpoints/hf.py to check against the weights' headers; only then does `load_hf_causal_lm(folder)`
read the weights. Both read a local folder only (never the Hub); the model is wrapped as a `CausalLM`
(gptlab/models/__init__.py): `forward(idx, cache, logits_from)` returns float32 logits and `new_cache` hands
out an `HFCache`, a thin wrapper over transformers' DynamicCache with the `Cache` surface the evaluators use
(pos, advance, expand, select).
"""

from __future__ import annotations

import copy
import inspect
import os
from pathlib import Path

import torch
import torch.nn as nn

from gptlab.errors import GptlabError

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")   # the first one set is the context


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")       # a local folder must never turn into a download
    try:
        import transformers  # deferred: optional extra [hf]; gptlab runs without transformers installed
    except ImportError:
        raise GptlabError("reading Hugging Face checkpoints needs transformers: pip install 'gptlab[hf]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


class HFCache:
    """transformers' DynamicCache with the KVCache surface: pos, max_len, advance, expand, select."""

    def __init__(self, past, batch_size: int, max_len: int):
        self.past, self.max_len, self._batch = past, max_len, batch_size
        self.pos = 0

    @property
    def batch_size(self) -> int:
        return self._batch

    def advance(self, t: int) -> None:
        self.pos += t

    def expand(self, n: int) -> HFCache:
        out = HFCache(copy.deepcopy(self.past), self._batch * n, self.max_len)
        out.past.batch_repeat_interleave(n)
        out.pos = self.pos
        return out

    def select(self, rows: torch.Tensor) -> None:
        self.past.batch_select_indices(rows)
        self._batch = len(rows)


class HFCausalLM(nn.Module):
    def __init__(self, hf_model):
        super().__init__()
        self.hf = hf_model
        cfg = hf_model.config
        self.vocab_size = hf_model.get_output_embeddings().weight.shape[0]
        # most causal LMs take logits_to_keep (skip the head on positions nobody reads); older ones do not
        self._keeps = "logits_to_keep" in inspect.signature(hf_model.forward).parameters
        self.sequence_len = hf_context(cfg)

    def forward(self, idx: torch.Tensor, cache: HFCache | None = None, logits_from: int = 0) -> torch.Tensor:
        """idx (B, T) -> logits (B, T - logits_from, V) float32."""
        T = idx.shape[1]
        # transformers keeps the last `logits_to_keep` positions (0 would mean all)
        kw = {"logits_to_keep": T - logits_from} if self._keeps and logits_from else {}
        if cache is None:
            logits = self.hf(input_ids=idx, use_cache=False, **kw).logits
        else:
            if cache.pos + T > cache.max_len:
                raise ValueError(f"KV cache full: {cache.pos + T} positions > max_len {cache.max_len}")
            out = self.hf(input_ids=idx, past_key_values=cache.past, use_cache=True, **kw)
            cache.past = out.past_key_values
            cache.advance(T)
            logits = out.logits
        return logits[:, logits.shape[1] - (T - logits_from):].float()

    def new_cache(self, batch_size: int, max_len: int) -> HFCache:
        return HFCache(_transformers().DynamicCache(config=self.hf.config), batch_size, max_len)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.hf.parameters())


def hf_context(config, where: str | Path = "config.json") -> int:
    """The context a transformers config states (its first context field that is set; 2048 when none is),
    which must be a positive integer."""
    key = next((k for k in CONTEXT_KEYS if getattr(config, k, None) is not None), None)
    if key is None:
        return 2048
    v = getattr(config, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise GptlabError(f"{where}: {key} is {v!r:.40}: expected a positive integer")
    return v


def hf_config(folder: str | Path):
    """The transformers config of a local folder; one transformers refuses is a GptlabError naming the file."""
    transformers = _transformers()
    folder = Path(folder)
    try:
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError/... for bad configs
        raise GptlabError(f"{folder / 'config.json'}: transformers cannot read this config ({_first_line(e)})") \
            from None


def hf_skeleton(config) -> nn.Module:
    """The causal LM `config` describes, built on the meta device: shapes only, no memory. The model class's
    own errors propagate (the caller names the file)."""
    with torch.device("meta"):
        return _transformers().AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def load_hf_causal_lm(folder: str | Path, device: str = "cpu", config=None) -> HFCausalLM:
    """The causal LM in a local transformers folder (config.json + safetensors), float32, in eval mode.
    Callers check `hf_skeleton(config)` against the weights' headers first (gptlab/checkpoints/hf.py does):
    transformers allocates and randomly fills whatever the config describes and the file lacks."""
    transformers = _transformers()
    folder = Path(folder)
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), config=config, local_files_only=True, trust_remote_code=False, dtype=torch.float32,
            output_loading_info=True)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError/... for bad folders
        raise GptlabError(f"{folder}: transformers cannot load this model ({_first_line(e)})") from None
    # transformers fills absent tensors with random values and only warns: an evaluator must refuse that.
    bad = list(info.get("missing_keys") or []) + [str(k[0] if isinstance(k, tuple) else k)
                                                  for k in info.get("mismatched_keys") or []]
    if bad:
        raise GptlabError(f"{folder}: the weights file lacks or misshapes {len(bad)} tensors the config needs "
                          f"(e.g. {', '.join(sorted(bad)[:3])})")
    return HFCausalLM(model.to(device).eval())


def _first_line(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]
