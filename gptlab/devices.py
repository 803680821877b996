"""Which torch device a command runs on: the one asked for (checked), else CUDA when present, else the CPU.

    gptlab sample PATH PROMPT --device cuda:1      (eval, compare, train and the benches take --device too)
    python -m pytest tests/test_devices.py

`pick_device(None)` is the default every command shares; a device that torch does not know or this machine
does not have is a one-line GptlabError naming the --device value, before any model is loaded.
"""

from __future__ import annotations

import torch

from gptlab.errors import GptlabError

EXAMPLES = "cpu, cuda, cuda:1, mps"


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
