"""Find and load checkpoints of every format our users have, behind one call.

    gptlab models PATH        lists what `discover(PATH)` finds

`discover(path)` accepts a checkpoint file, a checkpoint folder, or a whole run directory and returns every
checkpoint in it, oldest step first. `load(ref)` returns the model (see gptlab/models/__init__.py for its
interface), its tokenizer and a `ModelInfo`. Each format lives in its own module with two functions:
`detect(path) -> list[CheckpointRef]` (empty when the path is not in that format) and
`load(ref, device) -> LoadedModel`. Nothing here executes pickles: torch.load(weights_only=True),
safetensors, and a restricted unpickler (safe_pickle.py) for tokenizer pickles.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from gptlab.errors import GptlabError

# Tried in this order; the first format whose detect() finds something wins.
FORMATS = ("gptlab_run", "nanochat", "nanogpt", "llmc", "hf")


@dataclass
class CheckpointRef:
    format: str                 # one of FORMATS
    path: Path                  # the weights file or the checkpoint folder
    step: int | None = None
    run: str = ""               # a display name: the run directory's or the file's name
    tokens_seen: int | None = None
    extra: dict = field(default_factory=dict)   # format-specific hints for load() (tokenizer path, ...)

    @property
    def label(self) -> str:
        return f"{self.run}@{self.step}" if self.step is not None else self.run


@dataclass
class ModelInfo:
    format: str
    path: str
    run: str
    step: int | None
    family: str                 # "gptlab" | "nanochat" | "gpt2" | "hf:<model_type>"
    params: int
    vocab_size: int
    context: int
    tokens_seen: int | None
    weights_hash: str           # content hash of the weights: the store's key for every result
    tokenizer_hash: str
    config: dict = field(default_factory=dict)   # the architecture, as the checkpoint states it
    meta: dict = field(default_factory=dict)     # step metadata (train loss, val bpb ...) when known


@dataclass
class LoadedModel:
    model: object               # torch.nn.Module with the narrow interface
    tokenizer: object           # gptlab.tokenizer.Tokenizer
    info: ModelInfo


def _module(fmt: str):
    return importlib.import_module(f"gptlab.checkpoints.{fmt}")


def discover(path: str | Path) -> list[CheckpointRef]:
    path = Path(path)
    if not path.exists():
        raise GptlabError(f"{path}: no such file or directory")
    for fmt in FORMATS:
        refs = _module(fmt).detect(path)
        if refs:
            return sorted(refs, key=lambda r: (r.step is None, r.step or 0, str(r.path)))
    raise GptlabError(f"{path}: no checkpoint found (looked for gptlab runs, nanochat, nanoGPT ckpt.pt, "
                      f"llm.c .bin and Hugging Face folders)")


def load(ref: CheckpointRef, device: str = "cpu") -> LoadedModel:
    loaded = _module(ref.format).load(ref, device)
    tok_vocab = loaded.tokenizer.vocab_size
    if tok_vocab > loaded.info.vocab_size:
        raise GptlabError(f"{ref.path}: tokenizer has {tok_vocab} ids but the model only {loaded.info.vocab_size} "
                          f"rows: the tokenizer does not belong to this model")
    loaded.model.eval()
    return loaded


def load_path(path: str | Path, device: str = "cpu") -> list[LoadedModel]:
    return [load(r, device) for r in discover(path)]


def file_hash(*paths: Path, chunk: int = 1 << 22) -> str:
    """sha256 over the bytes of the given files (weights), first 16 hex digits."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while b := f.read(chunk):
                h.update(b)
    return h.hexdigest()[:16]


def tensors_hash(state_dict) -> str:
    """sha256 over tensor names, dtypes, shapes and bytes: for formats whose file also holds other state."""
    import torch
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
