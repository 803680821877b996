"""Which torch device a command runs on (the one asked for, checked; else CUDA when present, else the CPU),
which dtype evaluation runs in there, and how host arrays reach it.

    gptlab sample PATH PROMPT --device cuda:1      (eval, compare, train and the benches take --device too)
    gptlab eval runs/d12 --dtype float32           (auto: bfloat16 weights on CUDA, float32 elsewhere)
    python -m pytest tests/test_devices.py

`pick_device(None)` is the default every command shares; a device that torch does not know or this machine
does not have is a one-line GptlabError naming the --device value, before any model is loaded.
`eval_dtype` is the weights' dtype for evaluation: bfloat16 on a CUDA device that has it (measured: bits per
byte within 1e-3 of float32, tests/test_eval_dtype.py), elsewhere the checkpoint's own. `host_to_device` copies a batch
through pinned memory without blocking the host when the device is CUDA (the training loader's copies).
"""

from __future__ import annotations

import numpy as np
import torch

from gptlab.errors import GptlabError

EXAMPLES = "cpu, cuda, cuda:1, mps"
EVAL_DTYPES = ("auto", "float32", "bfloat16")


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """`requested` as a torch.device once this machine is known to have it; None or "" picks cuda when
    available, else cpu. Only looks: nothing is allocated on the device (DDP ranks each pick their own)."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise GptlabError(f"--device {requested}: not a device torch knows (try {EXAMPLES})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise GptlabError(f"--device {requested}: CUDA is not available here (no GPU, or a torch build "
                              f"without CUDA); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise GptlabError(f"--device {requested}: this machine has {count} CUDA device"
                              f"{'s' * (count != 1)} (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise GptlabError(f"--device {requested}: MPS (Apple GPU) is not available here; use --device cpu")
    return dev


def eval_dtype(requested: str | None, device: torch.device) -> torch.dtype | None:
    """The dtype a model's weights take for evaluation: `requested` ("float32", "bfloat16"); for "auto" (and
    None) bfloat16 on a CUDA device that has it, and elsewhere None: the dtype the checkpoint was loaded in."""
    requested = requested or "auto"
    if requested not in EVAL_DTYPES:
        raise GptlabError(f"--dtype {requested}: expected one of {', '.join(EVAL_DTYPES)}")
    if requested != "auto":
        return getattr(torch, requested)
    if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def copy_options(device: torch.device) -> tuple[bool, bool]:
    """(pin the host buffer, copy without blocking) for host -> `device` copies: both only for CUDA, where a
    pinned buffer lets the copy run asynchronously while the host prepares the next batch."""
    cuda = torch.device(device).type == "cuda"
    return cuda, cuda


def host_to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """`array` as a tensor on `device`: through pinned memory and non-blocking on CUDA (the caching host
    allocator keeps the pinned block until the copy has run); elsewhere as before, a plain tensor."""
    pin, non_blocking = copy_options(device)
    if not pin:
        return torch.as_tensor(array, device=device)
    return torch.from_numpy(np.ascontiguousarray(array)).pin_memory().to(device, non_blocking=non_blocking)
