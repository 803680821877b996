"""Find and load checkpoints of every format our users have, behind one call.

    gptlab models PATH        lists what `discover(PATH)` finds (eval, sample, compare and watch find the same)
    gptlab models openai-community/gpt2    a Hugging Face Hub id: its snapshot in the Hub cache (hub.py)
    python -m pytest tests/test_models_cli.py tests/test_checkpoints_*.py

`discover(path)` accepts a checkpoint file, a checkpoint folder, a whole run directory, or a folder holding
any of those (down to SEARCH_DEPTH levels), and returns every checkpoint found: each folder's oldest step
first, folders in name order. `load(ref)` returns the model (a `CausalLM`, gptlab/models/__init__.py), its
tokenizer and a `ModelInfo`. Each format lives in its own module with two functions:
`detect(path) -> list[CheckpointRef]` (empty when the path is not in that format) and
`load(ref, device) -> LoadedModel`; a checkpoint a reader recognises but cannot read comes back from `detect`
with its one-line `error`, which `discover_all` returns (`gptlab models` prints one line each) and `discover`
passes over. Nothing here executes pickles: torch.load(weights_only=True), safetensors, and a restricted
unpickler (safe_pickle.py) for tokenizer pickles. No config file decides how much memory is allocated: every
reader checks the model it describes against the weights' headers first (skeleton.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gptlab.checkpoints import hub
from gptlab.errors import GptlabError

if TYPE_CHECKING:
    import torch

    from gptlab.models import CausalLM
    from gptlab.tokenizer import Tokenizer

# Tried in this order; the first format whose detect() finds something in a folder wins.
FORMATS = ("gptlab_run", "nanochat", "nanogpt", "llmc", "hf")
SEARCH_DEPTH = 3            # subfolder levels discover() looks into when a folder itself is no checkpoint


@dataclass
class CheckpointRef:
    format: str                 # one of FORMATS
    path: Path                  # the weights file or the checkpoint folder
    step: int | None = None
    run: str = ""               # a display name: the run directory's or the file's name
    tokens_seen: int | None = None
    extra: dict = field(default_factory=dict)   # format-specific hints for load() (tokenizer path, ...)
    error: str = ""             # set when the checkpoint is recognised but unreadable: the one-line reason

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
    model: CausalLM             # a torch.nn.Module
    tokenizer: Tokenizer
    info: ModelInfo


def _readers() -> dict:
    """{format name: its module}, in FORMATS order."""
    from gptlab.checkpoints import gptlab_run, hf, llmc, nanochat, nanogpt  # deferred: heavy (torch); types stay light
    modules = {"gptlab_run": gptlab_run, "nanochat": nanochat, "nanogpt": nanogpt, "llmc": llmc, "hf": hf}
    return {fmt: modules[fmt] for fmt in FORMATS}


def discover(path: str | Path) -> list[CheckpointRef]:
    """Every readable checkpoint at `path`, else in its subfolders (see the module docstring). A checkpoint or
    folder a reader refuses (a truncated ckpt.pt, unreadable metadata) is passed over; its error is raised
    only when nothing at all is found. `discover_all` also returns the errors."""
    refs, errors = discover_all(path)
    if not refs:
        raise GptlabError(errors[0])
    return refs


def discover_all(path: str | Path) -> tuple[list[CheckpointRef], list[str]]:
    """(every readable checkpoint at `path` or in its subfolders, one line per checkpoint or folder that was
    recognised but cannot be read). Raises a GptlabError when `path` is missing or holds nothing at all. A
    `path` that does not exist but can be a Hugging Face Hub id is looked up there (hub.py)."""
    text, path = str(path), Path(path)
    if not path.exists():
        if not hub.is_hub_id(text):
            raise GptlabError(f"{path}: no such file or directory")
        snapshot, label = hub.resolve(text)
        refs, errors = discover_all(snapshot)
        for r in refs:
            r.run, r.extra["hub_id"] = label, text
        return refs, errors
    if not (path.is_file() or path.is_dir()):
        raise GptlabError(f"{path}: not a checkpoint file or folder")
    errors: list[str] = []
    refs = _find(path, SEARCH_DEPTH, errors)
    errors = list(dict.fromkeys(errors))        # a folder and its parent may both have seen the same file
    if refs or errors:
        return refs, errors
    where = " here or in its subfolders" if path.is_dir() else ""
    raise GptlabError(f"{path}: no checkpoint found{where} (looked for gptlab runs, nanochat, nanoGPT ckpt.pt, "
                      f"llm.c .bin and Hugging Face folders)")


def _find(path: Path, depth: int, errors: list[str]) -> list[CheckpointRef]:
    """What the first format that recognises `path` finds there, oldest step first; when that is no readable
    checkpoint, down to `depth` levels, what is found in its subfolders (in name order; hidden ones, like
    unfinished .tmp-* saves, skipped). Checkpoints found but unreadable, and folders a reader refuses, add
    to `errors`."""
    try:
        for reader in _readers().values():
            found = reader.detect(path)
            if found:           # this format recognises the path: no other is tried here
                errors += [r.error for r in found if r.error]
                refs = [r for r in found if not r.error]
                if refs:
                    return sorted(refs, key=lambda r: (r.step is None, r.step or 0, str(r.path)))
                break
    except GptlabError as e:
        errors.append(str(e))
    except OSError as e:        # unreadable folders and files (permissions, special files)
        errors.append(f"{e.filename or path}: cannot read ({e.strerror or type(e).__name__})")
    refs = []
    if depth > 0 and path.is_dir():
        try:
            subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as e:
            errors.append(f"{path}: cannot list the folder ({e.strerror or type(e).__name__})")
            subs = []
        for sub in subs:
            refs += _find(sub, depth - 1, errors)
    return refs


def load(ref: CheckpointRef, device: str | torch.device = "cpu") -> LoadedModel:
    """The model, tokenizer and info of `ref`. Every reader builds the model on the meta device and checks
    it against the weights' headers before allocating (skeleton.py); any bad input is a GptlabError."""
    if ref.error:
        raise GptlabError(ref.error)
    loaded = _readers()[ref.format].load(ref, device)
    tok_vocab = loaded.tokenizer.vocab_size
    if tok_vocab > loaded.info.vocab_size:
        raise GptlabError(f"{ref.path}: tokenizer has {tok_vocab} ids but the model only {loaded.info.vocab_size} "
                          f"rows: the tokenizer does not belong to this model")
    loaded.model.eval()
    return loaded


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
    import torch  # deferred: heavy (torch); importing gptlab.checkpoints stays light
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
