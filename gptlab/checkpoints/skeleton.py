"""The one rule every checkpoint reader follows: a config file never decides how much memory is allocated.

    python -m pytest tests/test_loaders_hostile.py tests/test_memory_bound.py tests/test_fuzz_loaders.py

A checkpoint's config (config.json, nanochat's meta_N.json, nanoGPT's model_args, an llm.c header) says how
big the model is; the weights say how big it really is. A reader therefore
  1. checks the config's size fields (`check_sizes`, `check_number`, `check_divides`): integers in
     [1, MAX_SIZE], positive finite numbers, the divisibilities the model needs;
  2. reads the shapes of the stored tensors from headers only: `safetensors_shapes` (the safetensors header)
     or `state_shapes` (a state dict that torch.load(weights_only=True, mmap=True) maps but does not read);
  3. builds the model on the meta device (`build_checked`: shapes only, no memory; the address space is
     capped meanwhile, for model classes that allocate regardless), after refusing a layer count no stored
     tensors could fill, and compares every parameter and persistent buffer with the stored tensors, naming
     the first that differs;
  4. only then copies the real tensors in (each family's `from_state_dict`: load_state_dict(assign=True)).
The memory a load takes is thus bounded by the weight files' real sizes (tests/test_memory_bound.py measures
the bound). Every failure is a GptlabError naming the file and the first differing tensor or field.
"""

from __future__ import annotations

import math
import resource
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open

from gptlab.errors import GptlabError

MAX_SIZE = 2**31 - 1            # any size field (layers, width, heads, vocab, context) beyond this is absurd
LAYER_ALLOWANCE = 256           # layers a config may claim before the count of stored tensors bounds it
BUFFER_ALLOWANCE = 64 << 20     # bytes of non-persistent buffers (masks, rotary tables) beyond the weights'
BUILD_ALLOWANCE = 1 << 30       # address space building on the meta device may take (see address_space_cap)

Shapes = dict[str, tuple[int, ...]]
_CAP_LOCK = threading.RLock()


def check_sizes(values: Mapping, keys: Iterable[str], where: str | Path) -> dict[str, int]:
    """{key: value} for size fields that must be integers in [1, MAX_SIZE] (bool is no integer here)."""
    if not isinstance(values, Mapping):
        raise GptlabError(f"{where}: expected a JSON object of model sizes, found {type(values).__name__}")
    out = {}
    for k in keys:
        v = values.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIZE:
            what = "missing" if k not in values else f"{v!r}"[:40]
            raise GptlabError(f"{where}: {k} is {what}: expected a positive integer (at most {MAX_SIZE})")
        out[k] = v
    return out


def check_number(values: Mapping, key: str, where: str | Path, default: float | None = None) -> float:
    """A field that must be a positive finite number (soft-cap, rotary base); `default` when absent."""
    v = values.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise GptlabError(f"{where}: {key} is {v!r:.40}: expected a positive finite number")
    return float(v)


def check_divides(where: str | Path, small: tuple[str, int], big: tuple[str, int]) -> None:
    """Refuse `big` not being a multiple of `small` (n_embd of n_head, n_head of n_kv_head)."""
    if big[1] % small[1]:
        raise GptlabError(f"{where}: {big[0]} {big[1]} is not divisible by {small[0]} {small[1]}")


def safetensors_shapes(files: Iterable[Path]) -> Shapes:
    """{tensor name: shape} from the headers of safetensors files; no tensor data is read. safetensors
    checks on opening that the header's offsets cover the file exactly, so a truncated file fails here."""
    shapes: Shapes = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    shapes[k] = tuple(int(n) for n in st.get_slice(k).get_shape())
        except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError/OSError variants
            raise GptlabError(f"{f}: cannot read weights, the file is truncated or corrupt ({_one_line(e)})") \
                from None
    return shapes


def state_shapes(state: Mapping, where: str | Path) -> Shapes:
    """{name: shape} of a (memory-mapped) state dict, which must hold tensors only."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise GptlabError(f"{where}: not a state dict of tensors")
    return {k: tuple(v.shape) for k, v in state.items()}


def model_tensors(model: nn.Module) -> Shapes:
    """{name: shape} of what a state dict of `model` must hold: parameters (a tied one under its first name)
    and persistent buffers, in the model's order."""
    seen, out = set(), {}
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = tuple(t.shape)
    return out


def build_checked(make: Callable[[], nn.Module], shapes: Shapes, *, weights: str | Path, config: str | Path,
                  n_layer: int | None = None, prefix: str = "", loose: bool = False,
                  buffer_budget: bool = False) -> nn.Module:
    """`make()` run on the meta device, checked against the stored `shapes` (see the module docstring).

    `n_layer`: the layer count the config claims, refused before building when above both LAYER_ALLOWANCE and
    the number of stored tensors. `prefix`: stored names may lack or carry it (default: the model's
    base_model_prefix, as transformers models have). `loose`: tensors missing from the file are left to the
    caller's loader to refuse (transformers renames some legacy names), as long as the model needs no more
    elements than the file holds; when none is missing, extra stored tensors are allowed unless named
    `*.weight`. `buffer_budget`: refuse buffers (which transformers allocates as they are) bigger than the
    weights plus BUFFER_ALLOWANCE."""
    if n_layer is not None and n_layer > max(LAYER_ALLOWANCE, len(shapes)):
        raise GptlabError(f"{weights}: {config} claims {n_layer} layers, but the file holds only {len(shapes)} "
                          f"tensors")
    try:
        with address_space_cap(BUILD_ALLOWANCE), torch.device("meta"):
            model = make()
    except GptlabError:
        raise
    except Exception as e:  # noqa: BLE001 - a config the model class cannot take raises anything
        raise GptlabError(f"{weights}: cannot build the model {config} describes ({_one_line(e)})") from None
    prefix = prefix or getattr(model, "base_model_prefix", "") or ""    # transformers models declare theirs
    compare(model, shapes, weights=weights, config=config, prefix=prefix, loose=loose)
    if buffer_budget:
        need = sum(b.numel() * b.element_size() for b in model.buffers())
        have = sum(math.prod(s) for s in shapes.values()) * 4
        if need > have + BUFFER_ALLOWANCE:
            raise GptlabError(f"{weights}: the model {config} describes needs {need / 2**20:.0f} MiB of buffers "
                              f"beside {have / 2**20:.0f} MiB of weights (an absurd context or size?)")
    return model


@contextmanager
def address_space_cap(extra: int):
    """Within the block, the process may grow its address space by at most `extra` bytes (RLIMIT_AS, Linux).
    Building on the meta device allocates nothing, but a few transformers classes create parameters with
    torch.FloatTensor(...), which ignores the meta device: with the cap, a config that sizes those absurdly
    fails to build (an allocator error, a GptlabError above) instead of growing the process. Where the limit
    cannot be read or set, the block runs uncapped. The limit is per process: one capped block at a time."""
    with _CAP_LOCK:
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/status", encoding="ascii") as f:
                size = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
        except (OSError, ValueError, StopIteration):
            soft = hard = size = None
        cap = None if size is None else size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
        if cap is None or (soft != resource.RLIM_INFINITY and soft <= cap):
            yield                               # unreadable, or already as tight
            return
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def compare(model: nn.Module, shapes: Shapes, *, weights, config, prefix: str = "", loose: bool = False) -> None:
    """Refuse, naming the first differing tensor, a model whose tensors are not exactly the stored ones."""
    need = model_tensors(model)
    stored = dict(shapes)
    absent, matched = [], set()
    for name, shape in need.items():
        key = _stored_name(name, stored, prefix)
        if key is None:
            absent.append(name)
            continue
        matched.add(key)
        if stored[key] != shape:
            raise GptlabError(f"{weights}: weights do not match {config}: {key} is {_shape(stored[key])} in the "
                              f"file, {_shape(shape)} by the config{_counts(need, stored)}")
    extra = [k for k in stored if k not in matched]
    if loose and not absent:    # leftover buffers (GPT-2's attn.bias masks) may stay; weights may not
        extra = [k for k in extra if k.endswith(".weight")]
    elif loose and sum(math.prod(need[n]) for n in absent) <= sum(math.prod(stored[k]) for k in extra):
        return              # the caller's loader names what it could not place (renamed legacy tensors)
    if absent:
        raise GptlabError(f"{weights}: weights do not match {config}: the file lacks {absent[0]} "
                          f"{_shape(need[absent[0]])}{_counts(need, stored)}")
    if extra:
        raise GptlabError(f"{weights}: weights do not match {config}: the config has no place for {extra[0]} "
                          f"{_shape(stored[extra[0]])}{_counts(need, stored)}")


def _stored_name(name: str, stored: Shapes, prefix: str) -> str | None:
    candidates = [name]
    if prefix:
        candidates += [name.removeprefix(prefix + "."), f"{prefix}.{name}"]
    return next((c for c in candidates if c in stored), None)


def _shape(s: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


def _counts(need: Shapes, stored: Shapes) -> str:
    n_need, n_stored = sum(math.prod(s) for s in need.values()), sum(math.prod(s) for s in stored.values())
    return (f" (config: {len(need)} tensors, {_human(n_need)} parameters; file: {len(stored)} tensors, "
            f"{_human(n_stored)})")


def _human(n: int) -> str:
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _one_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {' '.join(lines[:2])[:160]}" if lines else type(e).__name__
