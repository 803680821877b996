"""Hugging Face transformers folders: `config.json` + `*.safetensors` + `tokenizer.json`.

    gptlab models peers/hf_gpt2                  # both model folders under it
    python -m pytest tests/test_checkpoints_hf.py

Accepts a model folder (or a file in it) or a folder of model folders (e.g. a Trainer output_dir with
`checkpoint-N/` subfolders, whose N is the step; a Trainer's trainer_state.json also gives the tokens seen
when it counted them). The model is loaded by transformers from the local files only
(gptlab/models/hf.py); the tokenizer is `tokenizer.json` (or `vocab.json` + `merges.txt`) in the folder or the
one above it. Only safetensors weights are read: a `pytorch_model.bin` would need an unpickler.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash
from gptlab.checkpoints.bpe_files import read_vocab_merges
from gptlab.errors import GptlabError
from gptlab.models.hf import load_hf_causal_lm
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
        step = int(state.get("global_step") or 0) or step
        tokens = int(state.get("num_input_tokens_seen") or 0) or None
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    run = d.parent.name if m else d.name
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
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GptlabError(f"{folder / 'config.json'}: unreadable ({e})") from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise GptlabError(f"{folder}: only pytorch_model.bin weights, which would need unpickling; save the model "
                          f"as safetensors (model.save_pretrained(dir, safe_serialization=True))")
    _check_safetensors(weights)
    tok = find_tokenizer(folder)
    model = load_hf_causal_lm(folder, device)
    info = ModelInfo(
        format="hf", path=str(folder), run=ref.run, step=ref.step, family=f"hf:{config.get('model_type', '?')}",
        params=model.num_params(), vocab_size=model.vocab_size, context=model.sequence_len,
        tokens_seen=ref.tokens_seen,
        weights_hash=file_hash(*weights), tokenizer_hash=tok.identity(), config=config)
    return LoadedModel(model, tok, info)


def _check_safetensors(files: list[Path]) -> None:
    """Name the bad file ourselves: transformers' own message for a truncated shard does not."""
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                keys = list(st.keys())
                if keys:
                    st.get_slice(keys[-1])      # the last tensor: beyond the end of a truncated file
        except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError/OSError variants
            raise GptlabError(f"{f}: cannot read weights, the file is truncated or corrupt ({str(e)[:120]})") from None
