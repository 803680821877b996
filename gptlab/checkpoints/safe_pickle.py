"""Read the pickles other projects ship beside their weights, without letting a pickle run code.

    python -m pytest tests/test_safe_pickle.py

Two pickles occur in the checkpoints our users bring:
  * nanoGPT's `data/<dataset>/meta.pkl`: a dict of ints and strings (vocab_size, itos, stoi);
  * nanochat's `tokenizer/tokenizer.pkl`: a `tiktoken.core.Encoding`, pickled as the global
    `tiktoken.core.Encoding`, created empty (NEWOBJ) and filled by BUILD from a state dict
    {name, pat_str, mergeable_ranks: {bytes: int}, special_tokens: {str: int}}.
`load_pickle` admits plain data opcodes plus that one global, which it maps to `EncodingState`, an inert
record of the state: tiktoken's class is never imported through the pickle. Any other global (os.system,
builtins.eval, a __reduce__ of any kind) is refused with a GptlabError before anything is called. Weights go
through `load_torch` (torch.load with weights_only=True), never through pickle.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from gptlab.errors import GptlabError

MAX_PICKLE_BYTES = 64 << 20   # tokenizer/meta pickles are kilobytes to a few MB


class EncodingState:
    """What a pickled tiktoken Encoding holds, recorded without tiktoken."""

    def __setstate__(self, state):
        self.state = state

    def ranks_and_specials(self, path) -> tuple[str, str, dict[bytes, int], dict[str, int]]:
        s = getattr(self, "state", None)
        if isinstance(s, str):
            raise GptlabError(f"{path}: pickles tiktoken's registered encoding {s!r} by name only; its merges "
                              f"are not in the file (save the Encoding's ranks instead)")
        keys = ("name", "pat_str", "mergeable_ranks", "special_tokens")
        if not isinstance(s, dict) or any(k not in s for k in keys):
            raise GptlabError(f"{path}: not a tiktoken Encoding state (expected keys {', '.join(keys)})")
        ranks, special = s["mergeable_ranks"], s["special_tokens"]
        if not (isinstance(ranks, dict) and all(isinstance(b, bytes) and isinstance(i, int) for b, i in ranks.items())
                and isinstance(special, dict) and all(isinstance(t, str) and isinstance(i, int)
                                                      for t, i in special.items())
                and isinstance(s["pat_str"], str)):
            raise GptlabError(f"{path}: tiktoken Encoding state has fields of the wrong types")
        return str(s["name"]), s["pat_str"], ranks, special


_ALLOWED_GLOBALS = {("tiktoken.core", "Encoding"): EncodingState}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        cls = _ALLOWED_GLOBALS.get((module, name))
        if cls is None:
            raise GptlabError(f"{self._path}: refusing to unpickle {module}.{name}: only plain data and "
                              f"tiktoken's Encoding state are allowed (the file may try to run code)")
        return cls

    def persistent_load(self, pid):
        raise GptlabError(f"{self._path}: refusing a pickle with persistent references")


def load_pickle(path: str | Path):
    """Unpickle `path` admitting only plain data and tiktoken's Encoding state (see the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GptlabError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise GptlabError(f"{path}: {len(data)} bytes is too large for a tokenizer pickle")
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except GptlabError:
        raise
    except Exception as e:  # truncated or corrupt pickles raise many types (EOFError, UnpicklingError, ...)
        raise GptlabError(f"{path}: not a readable pickle ({type(e).__name__}: {str(e)[:100]})") from None


def load_torch(path: str | Path, mmap: bool = False):
    """torch.load(weights_only=True) with every failure as a one-line GptlabError naming the file. With `mmap`,
    tensors are mapped, not read (their shapes can be checked first); a file in torch's legacy format, which
    cannot be mapped, is read whole instead (at most its size)."""
    path = Path(path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not (mmap and "mmap can only be used with files saved with" in str(e)):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/UnpicklingError/EOFError/... for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in msg:
            msg = "it holds objects other than tensors and plain data (weights_only=True refused them)"
        raise GptlabError(f"{path}: cannot read weights, the file is truncated or corrupt ({msg[:160]})") \
            from None
