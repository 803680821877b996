"""Checkpoints written by karpathy/nanochat: `<base>/base_checkpoints/<tag>/model_NNNNNN.pt` + `meta_NNNNNN.json`.

    gptlab models peers/nanochat/base_dir        # every tag and step under the base dir
    python -m pytest tests/test_checkpoints_nanochat.py

Accepts a model file, a tag folder, a `*_checkpoints` folder, or nanochat's base dir (NANOCHAT_BASE_DIR). The
tokenizer is `tokenizer/tokenizer.pkl` (+ `token_bytes.pt`), found by walking up from the checkpoint to the base
dir; the pickle is read by the restricted unpickler in safe_pickle.py. Weights are cast to float32 (nanochat
stores embeddings in bf16 when it trained in bf16); the architecture is gptlab/models/nanochat.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash
from gptlab.checkpoints.safe_pickle import load_pickle, load_torch
from gptlab.errors import GptlabError
from gptlab.models.nanochat import NanochatConfig, NanochatGPT
from gptlab.tokenizer import BOS, TiktokenTokenizer

MODEL_RE = re.compile(r"model_(\d+)\.pt$")
PHASES = ("base_checkpoints", "mid_checkpoints", "chatsft_checkpoints", "chatrl_checkpoints")
CONFIG_KEYS = ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd")


def _meta_path(model_path: Path) -> Path:
    return model_path.with_name(f"meta_{MODEL_RE.search(model_path.name).group(1)}.json")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GptlabError(f"{path}: unreadable nanochat metadata ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model_config"), dict):
        raise GptlabError(f"{path}: nanochat metadata without a model_config")
    return meta


def _is_nanochat_meta(path: Path) -> bool:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8")).get("model_config", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(cfg, dict) and all(k in cfg for k in CONFIG_KEYS)


def _ref(model_path: Path) -> CheckpointRef | None:
    if not MODEL_RE.search(model_path.name) or not _is_nanochat_meta(_meta_path(model_path)):
        return None
    meta = _read_meta(_meta_path(model_path))
    step = int(MODEL_RE.search(model_path.name).group(1))
    tag_dir = model_path.parent
    phase = tag_dir.parent.name
    later = phase in PHASES and phase != "base_checkpoints"        # mid / sft / rl: not pretraining tokens
    run = f"{phase.removesuffix('_checkpoints')}/{tag_dir.name}" if later else tag_dir.name
    batch = meta.get("total_batch_size")                             # tokens per optimizer step
    tokens = step * batch if isinstance(batch, int) and not later else None
    return CheckpointRef("nanochat", model_path, step=step, run=run, tokens_seen=tokens)


def _tag_dirs(path: Path) -> list[Path]:
    if any(MODEL_RE.search(p.name) for p in path.glob("model_*.pt")):
        return [path]
    phases = [path / p for p in PHASES if (path / p).is_dir()] or [path]
    return sorted(d for ph in phases for d in ph.iterdir() if d.is_dir())


def detect(path: Path) -> list[CheckpointRef]:
    path = Path(path)
    if path.is_file():
        ref = _ref(path)
        if ref is None and MODEL_RE.search(path.name) and not _meta_path(path).is_file():
            raise GptlabError(f"{path}: no {_meta_path(path).name} beside it (nanochat writes the model config "
                              f"there; without it the weights cannot be read)")
        return [ref] if ref else []
    refs = [_ref(m) for d in _tag_dirs(path) for m in sorted(d.glob("model_*.pt"))]
    return [r for r in refs if r]


def find_tokenizer_dir(start: Path) -> Path:
    for d in [start, *start.parents]:
        if (d / "tokenizer" / "tokenizer.pkl").is_file():
            return d / "tokenizer"
    raise GptlabError(f"{start}: no nanochat tokenizer found: put tokenizer/tokenizer.pkl (and token_bytes.pt) "
                      f"in the base dir above the checkpoint")


def load_tokenizer(tok_dir: Path) -> TiktokenTokenizer:
    pkl = tok_dir / "tokenizer.pkl"
    state = load_pickle(pkl)
    if not hasattr(state, "ranks_and_specials"):
        raise GptlabError(f"{pkl}: expected a pickled tiktoken Encoding, found {type(state).__name__}")
    name, pat, ranks, special = state.ranks_and_specials(pkl)
    if BOS not in special:
        raise GptlabError(f"{pkl}: the tokenizer has no {BOS} token, which nanochat puts before every document")
    tok = TiktokenTokenizer(ranks, pat, special, BOS, name=f"nanochat-{name}")
    tb_path = tok_dir / "token_bytes.pt"
    if tb_path.is_file():   # nanochat's own byte counts: they must agree with ours or bpb would differ
        theirs = load_torch(tb_path)
        ours = tok.token_bytes()
        if tuple(theirs.shape) != ours.shape or (theirs.numpy() != ours).any():
            raise GptlabError(f"{tb_path}: byte counts disagree with tokenizer.pkl; the files do not belong together")
    return tok


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    meta = _read_meta(_meta_path(ref.path))
    known = set(NanochatConfig.__dataclass_fields__)
    mc = meta["model_config"]
    unknown = sorted(set(mc) - known)
    if unknown:
        raise GptlabError(f"{_meta_path(ref.path)}: model_config has keys this reader does not know: "
                          f"{', '.join(unknown)} (written by a newer nanochat?)")
    # checkpoints from before sliding windows have no window_pattern: they attended over the full context
    cfg = NanochatConfig(**{"window_pattern": "L", **mc})
    state = load_torch(ref.path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GptlabError(f"{ref.path}: not a nanochat state dict (expected a dict of tensors)")
    state = {k.removeprefix("_orig_mod."): v.float() for k, v in state.items()}
    try:
        model = NanochatGPT.from_state_dict(cfg, state)
    except (RuntimeError, ValueError) as e:
        raise GptlabError(f"{ref.path}: weights do not match model_config {mc} ({_first_line(e)})") from None
    tok = load_tokenizer(find_tokenizer_dir(ref.path.parent))
    info = ModelInfo(
        format="nanochat", path=str(ref.path), run=ref.run, step=ref.step, family="nanochat",
        params=model.num_params(), vocab_size=cfg.vocab_size, context=cfg.sequence_len,
        tokens_seen=ref.tokens_seen, weights_hash=file_hash(ref.path), tokenizer_hash=tok.identity(),
        config=dict(mc), meta={k: meta[k] for k in ("val_bpb", "loop_state", "user_config") if k in meta})
    return LoadedModel(model.to(device), tok, info)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:200]
