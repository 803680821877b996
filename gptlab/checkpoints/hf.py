"""Hugging Face transformers folders: `config.json` + `*.safetensors` + `tokenizer.json`.

    gptlab models peers/hf_gpt2                  # both model folders under it
    python -m pytest tests/test_checkpoints_hf.py

Accepts a model folder (or a file in it) or a folder of model folders (e.g. a Trainer output_dir with
`checkpoint-N/` subfolders, whose N is the step; a Trainer's trainer_state.json also gives the tokens seen
when it counted them). The model config.json describes is first built on the meta device and checked against
the safetensors headers (skeleton.py): only a model the files can fill is loaded, by transformers, from the
local files only (gptlab/models/hf.py). The tokenizer is `tokenizer.json` (or `vocab.json` + `merges.txt`) in
the folder or the one above it. Only safetensors weights are read: a `pytorch_model.bin` would need an
unpickler. A folder `gptlab export` wrote for gptlab's or nanochat's family is read by hf_native.py, with
gptlab's own model classes (its shipped modelling code is never run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash, hf_native
from gptlab.checkpoints.bpe_files import read_vocab_merges
from gptlab.checkpoints.skeleton import MAX_SIZE, build_checked, safetensors_shapes
from gptlab.errors import GptlabError
from gptlab.models.hf import hf_config, hf_context, hf_skeleton, load_hf_causal_lm
from gptlab.tokenizer import HFTokenizer

STEP_RE = re.compile(r"checkpoint-(\d+)$")


def _is_model_dir(d: Path) -> bool:
    # pytorch_model.bin-only folders are claimed too, so that load() can say why they are not read
    return (d / "config.json").is_file() and (any(d.glob("*.safetensors")) or any(d.glob("pytorch_model*.bin")))


def _ref(d: Path) -> CheckpointRef:
    m = STEP_RE.search(d.name)
    step, tokens = (int(m.group(1)) if m else None), None
    try:   # the Trainer's record, when there: the step, and the tokens seen if it was asked to count them
        state = json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
        step = max(0, int(state.get("global_step") or 0)) or step
        tokens = max(0, int(state.get("num_input_tokens_seen") or 0)) or None
    except (OSError, ValueError, TypeError, AttributeError, OverflowError):
        pass
    source = hf_native.exported_source(d)        # a folder gptlab export wrote: its checkpoint's step
    step = step if step is not None else hf_native.count(source.get("step"))
    tokens = tokens if tokens is not None else hf_native.count(source.get("tokens_seen"))
    run = d.parent.name if m else d.name
    if d.parent.name == "snapshots" and d.parent.parent.name.startswith("models--"):   # in a Hub cache
        run = d.parent.parent.name.removeprefix("models--").replace("--", "/")
    return CheckpointRef("hf", d, step=step, run=run, tokens_seen=tokens)


def detect(path: Path) -> list[CheckpointRef]:
    path = Path(path)
    d = path.parent if path.is_file() else path
    if _is_model_dir(d):
        return [_ref(d)]
    if path.is_file():
        return []
    return [_ref(s) for s in sorted(path.iterdir()) if s.is_dir() and _is_model_dir(s)]


def find_tokenizer(folder: Path):
    for d in (folder, folder.parent):
        if (d / "tokenizer.json").is_file():
            return HFTokenizer.from_file(d / "tokenizer.json")
        if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            return read_vocab_merges(d / "vocab.json", d / "merges.txt")
    raise GptlabError(f"{folder}: no tokenizer found: save tokenizer.json (tokenizer.save_pretrained) in the folder")


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    folder = Path(ref.path)
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GptlabError(f"{folder / 'config.json'}: unreadable ({e})") from None
    if not isinstance(raw, dict):
        raise GptlabError(f"{folder / 'config.json'}: expected a JSON object, found {type(raw).__name__}")
    if isinstance(raw.get("model_type"), str) and raw["model_type"] in hf_native.MODEL_TYPES:   # gptlab export
        return hf_native.load(ref, raw, device)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise GptlabError(f"{folder}: only pytorch_model.bin weights, which would need unpickling; save the model "
                          f"as safetensors (model.save_pretrained(dir, safe_serialization=True))")
    shapes = safetensors_shapes(weights)            # headers only
    tok = find_tokenizer(folder)
    config = hf_config(folder)
    hf_context(config, folder / "config.json")
    # the model config.json describes is built on the meta device and checked against the headers: only a
    # model the files can fill is handed to transformers, which would allocate and randomly fill the rest
    build_checked(lambda: hf_skeleton(config), shapes, weights=weights[0] if len(weights) == 1 else folder,
                  config="config.json", n_layer=_layers(config, folder), loose=True, buffer_budget=True)
    model = load_hf_causal_lm(folder, device, config=config)
    info = ModelInfo(
        format="hf", path=str(folder), run=ref.run, step=ref.step, family=f"hf:{raw.get('model_type', '?')}",
        params=model.num_params(), vocab_size=model.vocab_size, context=model.sequence_len,
        tokens_seen=ref.tokens_seen,
        weights_hash=file_hash(*weights), tokenizer_hash=tok.identity(), config=raw)
    return LoadedModel(model, tok, info)


def _layers(config, folder: Path) -> int | None:
    """The layer count config.json claims, when it has one (checked to be a non-negative integer)."""
    n = getattr(config, "num_hidden_layers", None)
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SIZE:
        raise GptlabError(f"{folder / 'config.json'}: num_hidden_layers is {n!r:.40}: expected a non-negative "
                          f"integer")
    return n
