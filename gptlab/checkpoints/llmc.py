"""Model files written by karpathy/llm.c (`write_model` in train_gpt2.py, read by train_gpt2.c).

    gptlab models peers/llmc
    python -m pytest tests/test_checkpoints_llmc.py

Layout: a header of 256 int32 [20240326, version, max_seq_len, vocab_size, n_layer, n_head, n_embd,
padded_vocab_size, 0...], then the GPT-2 tensors, each stacked over layers, in this order: wte (Vp, C), wpe
(maxT, C), ln1w, ln1b, qkvw (L, 3C, C), qkvb, attprojw (L, C, C), attprojb, ln2w, ln2b, fcw (L, 4C, C), fcb,
fcprojw (L, C, 4C), fcprojb, lnfw, lnfb. Version 3 stores float32, version 5 bfloat16 (raw bit patterns);
any other magic or version is refused, and so is a header whose sizes do not add up to the file's real size
(before anything is read past the header). The padded vocab rows are dropped: llm.c's softmax runs over the real
vocab only. No step or token count is stored. The tokenizer is a `*tokenizer*.bin` beside the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from gptlab.checkpoints import CheckpointRef, LoadedModel, ModelInfo, file_hash
from gptlab.checkpoints.bpe_files import LLMC_TOKENIZER_MAGIC, read_llmc_tokenizer
from gptlab.checkpoints.skeleton import build_checked
from gptlab.errors import GptlabError
from gptlab.models.gpt2 import GPT2, GPT2Config

MODEL_MAGIC = 20240326
VERSIONS = {3: ("float32", 4), 5: ("bfloat16", 2)}
HEADER_BYTES = 256 * 4


def _header(path: Path) -> np.ndarray | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError:
        return None
    if len(raw) < 8:
        return None
    return np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4")


def detect(path: Path) -> list[CheckpointRef]:
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.bin"))
    refs = []
    for f in files:
        h = _header(f)
        if f.suffix == ".bin" and h is not None and h[0] == MODEL_MAGIC:
            refs.append(CheckpointRef("llmc", f, step=None, run=f.stem))
    return refs


def _shapes(maxT, V, Vp, L, C) -> list[tuple[str, tuple]]:
    return [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)), ("qkvw", (L, 3 * C, C)),
            ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)), ("ln2w", (L, C)),
            ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)), ("fcprojw", (L, C, 4 * C)),
            ("fcprojb", (L, C)), ("lnfw", (C,)), ("lnfb", (C,))]


def read_model(path: Path):
    """(GPT2Config, state dict in gptlab.models.gpt2 names as float32, header dict) from an llm.c .bin."""
    h = _header(path)
    if h is None or len(h) < 256:
        raise GptlabError(f"{path}: too short for an llm.c model header ({HEADER_BYTES} bytes)")
    if h[0] != MODEL_MAGIC:
        raise GptlabError(f"{path}: not an llm.c model file (magic {h[0]}, expected {MODEL_MAGIC})")
    if int(h[1]) not in VERSIONS:
        raise GptlabError(f"{path}: llm.c model version {h[1]} is unknown (this reader knows 3 = fp32, 5 = bf16)")
    maxT, V, L, NH, C, Vp = (int(v) for v in h[2:8])
    if min(maxT, V, L, NH, C) <= 0 or Vp < V or C % NH:
        raise GptlabError(f"{path}: implausible header (T={maxT}, V={V}, Vp={Vp}, L={L}, heads={NH}, C={C})")
    dtype, width = VERSIONS[int(h[1])]
    shapes = _shapes(maxT, V, Vp, L, C)
    n = sum(math.prod(s) for _, s in shapes)        # exact Python integers: no overflow for absurd headers
    size = path.stat().st_size
    if size != HEADER_BYTES + n * width:
        raise GptlabError(f"{path}: {size} bytes, but the header describes {HEADER_BYTES + n * width} "
                          f"({n} {dtype} parameters): the file is truncated or corrupt")
    raw = np.fromfile(path, dtype="<f4" if width == 4 else "<i2", offset=HEADER_BYTES)
    flat = torch.from_numpy(raw)
    flat = flat.view(torch.bfloat16).float() if width == 2 else flat
    t, off = {}, 0
    for name, shape in shapes:
        k = math.prod(shape)
        t[name] = flat[off:off + k].view(shape)
        off += k
    sd = {"transformer.wte.weight": t["wte"][:V], "transformer.wpe.weight": t["wpe"],
          "transformer.ln_f.weight": t["lnfw"], "transformer.ln_f.bias": t["lnfb"]}
    per_layer = {"ln_1.weight": "ln1w", "ln_1.bias": "ln1b", "attn.c_attn.weight": "qkvw",
                 "attn.c_attn.bias": "qkvb", "attn.c_proj.weight": "attprojw", "attn.c_proj.bias": "attprojb",
                 "ln_2.weight": "ln2w", "ln_2.bias": "ln2b", "mlp.c_fc.weight": "fcw", "mlp.c_fc.bias": "fcb",
                 "mlp.c_proj.weight": "fcprojw", "mlp.c_proj.bias": "fcprojb"}
    for i in range(L):
        for ours, theirs in per_layer.items():
            sd[f"transformer.h.{i}.{ours}"] = t[theirs][i]
    sd = {k: v.contiguous() for k, v in sd.items()}
    cfg = GPT2Config(vocab_size=V, sequence_len=maxT, n_layer=L, n_head=NH, n_embd=C, bias=True)
    return cfg, sd, {"block_size": maxT, "vocab_size": V, "padded_vocab_size": Vp, "n_layer": L, "n_head": NH,
                     "n_embd": C, "dtype": dtype}


def find_tokenizer(model_path: Path):
    for f in sorted(model_path.parent.glob("*tokenizer*.bin")):
        h = _header(f)
        if h is not None and h[0] == LLMC_TOKENIZER_MAGIC:
            return read_llmc_tokenizer(f)
    raise GptlabError(f"{model_path}: no llm.c tokenizer found: put its tokenizer file (e.g. gpt2_tokenizer.bin, "
                      f"written by llm.c's write_tokenizer) in {model_path.parent}")


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    cfg, sd, header = read_model(ref.path)
    # read_model sized everything from the header and the file's real size; the common check all readers make
    build_checked(lambda: GPT2(cfg), {k: tuple(v.shape) for k, v in sd.items()}, weights=ref.path, config="its header")
    model = GPT2.from_state_dict(cfg, sd)
    tok = find_tokenizer(ref.path)
    info = ModelInfo(
        format="llmc", path=str(ref.path), run=ref.run, step=None, family="gpt2", params=model.num_params(),
        vocab_size=cfg.vocab_size, context=cfg.sequence_len, tokens_seen=None,
        weights_hash=file_hash(ref.path), tokenizer_hash=tok.identity(), config=header)
    return LoadedModel(model.to(device), tok, info)
