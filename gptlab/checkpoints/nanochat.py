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
from gptlab.checkpoints.skeleton import build_checked, check_divides, check_sizes, state_shapes
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


def _ref(model_path: Path) -> CheckpointRef | None:
    """The checkpoint of a model_N.pt with its meta_N.json beside it. In a nanochat folder, a missing or
    unreadable meta makes a ref carrying the error, so that listing shows it rather than passing over it;
    elsewhere a model_N.pt without one is not taken for nanochat's (None)."""
    if not MODEL_RE.search(model_path.name):
        return None
    step = int(MODEL_RE.search(model_path.name).group(1))
    tag_dir = model_path.parent
    phase = tag_dir.parent.name
    later = phase in PHASES and phase != "base_checkpoints"        # mid / sft / rl: not pretraining tokens
    run = f"{phase.removesuffix('_checkpoints')}/{tag_dir.name}" if later else tag_dir.name
    if not _meta_path(model_path).is_file():
        # in a nanochat folder (a phase folder above, or other steps' metadata beside) it is an unreadable step
        if phase in PHASES or any(tag_dir.glob("meta_*.json")):
            return CheckpointRef("nanochat", model_path, step=step, run=run, error=_no_meta(model_path))
        return None
    try:
        meta = _read_meta(_meta_path(model_path))
    except GptlabError as e:
        return CheckpointRef("nanochat", model_path, step=step, run=run, error=str(e))
    batch = meta.get("total_batch_size")                             # tokens per optimizer step
    ok = isinstance(batch, int) and not isinstance(batch, bool) and batch > 0
    tokens = step * batch if ok and not later else None
    return CheckpointRef("nanochat", model_path, step=step, run=run, tokens_seen=tokens)


def _no_meta(model_path: Path) -> str:
    return (f"{model_path}: no {_meta_path(model_path).name} beside it (nanochat writes the model config there; "
            f"without it the weights cannot be read)")


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
            raise GptlabError(_no_meta(path))
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
    meta_path = _meta_path(ref.path)
    meta = _read_meta(meta_path)
    mc = meta["model_config"]
    cfg = model_config(mc, meta_path)
    # memory-mapped: the shapes are checked against model_config on the meta device before anything is copied
    state = load_torch(ref.path, mmap=True)
    shapes = state_shapes(state, ref.path)
    shapes = {k.removeprefix("_orig_mod."): v for k, v in shapes.items()}
    build_checked(lambda: NanochatGPT(cfg), shapes, weights=ref.path, config="model_config", n_layer=cfg.n_layer)
    state = {k.removeprefix("_orig_mod."): v.to(torch.float32, copy=True) for k, v in state.items()}
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


def model_config(mc: dict, where: Path) -> NanochatConfig:
    """meta_N.json's model_config, every field checked (skeleton.py) before anything is built."""
    unknown = sorted(map(repr, set(mc) - set(NanochatConfig.__dataclass_fields__)))
    if unknown:
        raise GptlabError(f"{where}: model_config has keys this reader does not know: "
                          f"{', '.join(unknown)[:120]} (written by a newer nanochat?)")
    where = f"{where}: model_config"
    sizes = check_sizes(mc, CONFIG_KEYS, where)
    check_divides(where, ("n_head", sizes["n_head"]), ("n_embd", sizes["n_embd"]))
    check_divides(where, ("n_kv_head", sizes["n_kv_head"]), ("n_head", sizes["n_head"]))
    check_divides(where, ("2 (rotary halves)", 2), ("the head size", sizes["n_embd"] // sizes["n_head"]))
    # checkpoints from before sliding windows have no window_pattern: they attended over the full context
    pattern = mc.get("window_pattern", "L")
    if not isinstance(pattern, str) or not pattern or set(pattern.upper()) - set("SL"):
        raise GptlabError(f"{where}: window_pattern is {pattern!r:.40}: expected a string of S and L")
    return NanochatConfig(**sizes, window_pattern=pattern)


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return " ".join(lines[:2])[:200]
