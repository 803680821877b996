"""Checkpoints written by karpathy/nanoGPT's train.py: `<out_dir>/ckpt.pt` with `model`, `model_args`, `config`.

    gptlab models peers/nanogpt/out-pystdlib-char
    python -m pytest tests/test_checkpoints_nanogpt.py

Accepts a ckpt file, its out_dir, or a folder holding out_dirs. The architecture is GPT-2
(gptlab/models/gpt2.py); a `torch.compile`d model's `_orig_mod.` prefix is stripped. model_args is checked
against the stored tensors' shapes on the meta device before any weight is copied (skeleton.py). nanoGPT keeps no
tokenizer in the checkpoint, so it is looked for, in order:
  1. beside the ckpt: `meta.pkl` (char-level), `tokenizer.json`, `vocab.json` + `merges.txt`, or `*.tiktoken`;
  2. `data/<config.dataset>/meta.pkl` in the ckpt's folder or any folder above it (as sample.py finds it).
nanoGPT's own fallback, downloading OpenAI's GPT-2 BPE, is not taken: put one of those files beside the ckpt.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, tensors_hash
from gptlab.checkpoints.bpe_files import read_tiktoken_file, read_vocab_merges
from gptlab.checkpoints.safe_pickle import load_pickle, load_torch
from gptlab.checkpoints.skeleton import build_checked, check_divides, check_sizes, state_shapes
from gptlab.errors import GptlabError
from gptlab.models.gpt2 import GPT2, GPT2Config
from gptlab.tokenizer import CharTokenizer, HFTokenizer

REQUIRED_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def _peek(path: Path) -> dict | None:
    """The checkpoint dict if it looks like nanoGPT's (memory-mapped, so tensors are not read)."""
    ck = load_torch(path, mmap=True)
    if isinstance(ck, dict) and isinstance(ck.get("model_args"), dict) and isinstance(ck.get("model"), dict):
        return ck
    return None


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _ref(path: Path, ck: dict) -> CheckpointRef:
    step = _count(ck.get("iter_num"))
    cfg = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    per_iter = [_count(cfg.get(k)) for k in ("gradient_accumulation_steps", "batch_size", "block_size")]
    tokens = step * per_iter[0] * per_iter[1] * per_iter[2] \
        if step is not None and all(v is not None for v in per_iter) else None
    return CheckpointRef("nanogpt", path, step=step, run=path.parent.name, tokens_seen=tokens)


def detect(path: Path) -> list[CheckpointRef]:
    path = Path(path)
    if path.is_file():
        if path.suffix not in (".pt", ".pth"):
            return []
        ck = _peek(path)
        return [_ref(path, ck)] if ck else []
    candidates = [path / "ckpt.pt", *sorted(path.glob("*/ckpt.pt"))]
    refs = []
    for c in candidates:
        if c.is_file():
            try:
                ck = _peek(c)
            except GptlabError as e:    # an unreadable ckpt.pt is an error of its own; the others still list
                refs.append(CheckpointRef("nanogpt", c, run=c.parent.name, error=str(e)))
                continue
            if ck:
                refs.append(_ref(c, ck))
    return refs


def find_tokenizer(ckpt: Path, dataset: str | None):
    """The tokenizer for a nanoGPT checkpoint (see the module docstring for where it looks)."""
    here = ckpt.parent
    if (here / "meta.pkl").is_file():
        return read_char_meta(here / "meta.pkl")
    if (here / "tokenizer.json").is_file():
        return HFTokenizer.from_file(here / "tokenizer.json")
    if (here / "vocab.json").is_file() and (here / "merges.txt").is_file():
        return read_vocab_merges(here / "vocab.json", here / "merges.txt")
    tiktoken_files = sorted(here.glob("*.tiktoken"))
    if tiktoken_files:
        return read_tiktoken_file(tiktoken_files[0])
    if dataset:
        for d in [here, *here.parents]:
            meta = d / "data" / dataset / "meta.pkl"
            if meta.is_file():
                return read_char_meta(meta)
    where = f" or data/{dataset}/meta.pkl in a folder above it" if dataset else ""
    raise GptlabError(f"{ckpt}: no tokenizer found: put meta.pkl (char-level) beside it{where}; for GPT-2 BPE "
                      f"put tokenizer.json, vocab.json + merges.txt, or gpt2.tiktoken in {here}")


def read_char_meta(path: Path) -> CharTokenizer:
    meta = load_pickle(path)
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not isinstance(itos, dict) or not itos or \
            not all(isinstance(i, int) and i >= 0 and isinstance(c, str) for i, c in itos.items()):
        raise GptlabError(f"{path}: not a char-level meta.pkl (expected an 'itos' dict of int -> str)")
    return CharTokenizer(itos)


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    # memory-mapped so the optimizer state (2x the weights) is never read; the weights are copied out below
    # because train.py rewrites ckpt.pt in place, which would pull pages from under a mapping
    ck = load_torch(ref.path, mmap=True)
    if not isinstance(ck, dict) or not isinstance(ck.get("model_args"), dict):
        raise GptlabError(f"{ref.path}: not a nanoGPT checkpoint (no model_args)")
    args, where = ck["model_args"], f"{ref.path}: model_args"
    sizes = check_sizes(args, REQUIRED_ARGS, where)
    check_divides(where, ("n_head", sizes["n_head"]), ("n_embd", sizes["n_embd"]))
    if not isinstance(args.get("bias", True), bool):
        raise GptlabError(f"{where}: bias is {args['bias']!r}: expected true or false")
    cfg = GPT2Config(vocab_size=sizes["vocab_size"], sequence_len=sizes["block_size"], n_layer=sizes["n_layer"],
                     n_head=sizes["n_head"], n_embd=sizes["n_embd"], bias=args.get("bias", True),
                     gelu="none")   # nanoGPT's MLP uses nn.GELU(): the exact form
    shapes = state_shapes(ck.get("model"), f"{ref.path}: 'model'")
    # nanoGPT without flash attention saved its causal-mask buffer as `attn.bias`: not a weight
    shapes = {k.removeprefix("_orig_mod."): v for k, v in shapes.items()}
    shapes = {k: v for k, v in shapes.items() if not k.endswith(".attn.bias")}
    head = shapes.pop("lm_head.weight", None)          # tied to the token embedding (checked equal below)
    if head is not None and head != shapes.get("transformer.wte.weight"):
        raise GptlabError(f"{ref.path}: lm_head.weight {head} is not the shape of transformer.wte.weight: "
                          f"an untied head is not GPT-2")
    build_checked(lambda: GPT2(cfg), shapes, weights=ref.path, config="its model_args", n_layer=cfg.n_layer)
    state = {k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()}
    state = {k: v.to(torch.float32, copy=True) for k, v in state.items() if not k.endswith(".attn.bias")}
    try:
        model = GPT2.from_state_dict(cfg, state)
    except (RuntimeError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise GptlabError(f"{ref.path}: weights do not match model_args ({' '.join(lines[:2])[:200]})") from None
    config = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), str) else None
    tok = find_tokenizer(ref.path, dataset)
    best = ck.get("best_val_loss")
    best = float(best) if isinstance(best, float) or (isinstance(best, torch.Tensor) and best.numel() == 1) \
        else None
    info = ModelInfo(
        format="nanogpt", path=str(ref.path), run=ref.run, step=ref.step, family="gpt2",
        params=model.num_params(), vocab_size=cfg.vocab_size, context=cfg.sequence_len,
        tokens_seen=ref.tokens_seen, weights_hash=tensors_hash(state), tokenizer_hash=tok.identity(),
        config=dict(args), meta={"best_val_loss": best} if best is not None else {})
    return LoadedModel(model.to(device), tok, info)
