"""Hugging Face folders that `gptlab export` wrote for gptlab's and nanochat's families, read with gptlab's own
model classes: the modelling code shipped in the folder is never run.

    gptlab export runs/demo --format hf --out demo_hf && gptlab eval demo_hf --no-probes   # same bpb
    python -m pytest tests/test_export_hf.py

config.json says `model_type` "gptlab" (gptlab/models/gpt.py) or "gptlab_nanochat" (gptlab/models/nanochat.py)
and holds the architecture's fields; model.safetensors holds the tensors under the family's own names. Both are
checked as their native readers check them (sizes before anything is built, the model on the meta device
against the weights' header). The tokenizer is the folder's tokenizer.json; gptlab_export.json, when present,
gives the step and tokens seen of the checkpoint it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash, gptlab_run, nanochat
from gptlab.checkpoints.skeleton import build_checked, safetensors_shapes
from gptlab.errors import GptlabError
from gptlab.models.gpt import GPT, GPTConfig
from gptlab.models.nanochat import NanochatConfig, NanochatGPT
from gptlab.tokenizer import load_tokenizer

MODEL_TYPES = {"gptlab": "gptlab", "gptlab_nanochat": "nanochat"}     # model_type -> family
RECORD = "gptlab_export.json"


def exported_source(folder: Path) -> dict:
    """The `source` object of an export's gptlab_export.json ({} when absent or unreadable)."""
    try:
        source = json.loads((folder / RECORD).read_text(encoding="utf-8")).get("source")
    except (OSError, ValueError, AttributeError):
        return {}
    return source if isinstance(source, dict) else {}


def count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def load(ref: CheckpointRef, raw: dict, device: str | torch.device = "cpu") -> LoadedModel:
    """The model of an exported folder whose config.json (`raw`) names one of MODEL_TYPES."""
    folder = Path(ref.path)
    family = MODEL_TYPES[raw["model_type"]]
    where = folder / "config.json"
    if family == "gptlab":
        fields = {k: raw[k] for k in GPTConfig.__dataclass_fields__ if k in raw}
        cfg = gptlab_run._model_config({"model": fields}, where)
        make, cls = (lambda: GPT(cfg)), GPT
    else:
        fields = {k: raw[k] for k in NanochatConfig.__dataclass_fields__ if k in raw}
        cfg = nanochat.model_config(fields, where)
        make, cls = (lambda: NanochatGPT(cfg)), NanochatGPT
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise GptlabError(f"{folder}: no model.safetensors (a gptlab export writes one file of weights)")
    build_checked(make, safetensors_shapes([weights]), weights=weights, config="config.json", n_layer=cfg.n_layer)
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise GptlabError(f"{weights}: corrupt or truncated weights ({str(e).splitlines()[0]})") from None
    model = cls.from_state_dict(cfg, state)
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    source = exported_source(folder)
    step = ref.step if ref.step is not None else count(source.get("step"))
    tokens = ref.tokens_seen if ref.tokens_seen is not None else count(source.get("tokens_seen"))
    info = ModelInfo(
        format="hf", path=str(folder), run=ref.run, step=step, family=family, params=model.num_params(),
        vocab_size=cfg.vocab_size, context=cfg.sequence_len, tokens_seen=tokens, weights_hash=file_hash(weights),
        tokenizer_hash=tokenizer.identity(), config=dict(raw), meta={"exported_from": source} if source else {})
    return LoadedModel(model, tokenizer, info)
