"""What every row of bench/gpu_acceptance.py shares: the shapes (full and --smoke), the device, timing with
synchronisation, peak GPU memory, and which attention kernel ran.

    python bench/gpu_acceptance.py --smoke          (tests/test_gpu_acceptance_smoke.py runs it)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# bf16 dense peak of the cards the device tool lends (H100 SXM and H200: 989 TFLOP/s, as nanochat's
# table says); MFU is printed only where the card is named here
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


@dataclass(frozen=True)
class Shapes:
    """Every size the acceptance rows use; FULL is what the GPU run measures, SMOKE the seconds-long CPU run."""
    depth: int                  # gptlab/nanochat training and the full-evaluation checkpoints
    width: int
    heads: int
    vocab: int
    seq: int
    rows: int                   # rows per micro-batch
    train_warmup: int
    train_steps: int
    gpt2: tuple                 # (layers, heads, width, positions) of the bpb and sampling rows
    bpb_tokens: int             # tokens scored in the bpb row (documents cycled to reach it)
    bpb_repeats: int
    prompts: int                # sampling row: prompts x samples rows, prompt_len tokens, new tokens each
    samples: int
    prompt_len: int
    new_tokens: int
    gen_repeats: int
    checkpoints: int            # full evaluation
    eval_samples: int
    eval_lengths: tuple
    eval_tok_vocab: int         # the BPE the evaluation checkpoints carry
    eval_tok_chars: int         # characters of the shipped corpus it is trained on
    eval_bpb_chars: int | None  # None: the 7 shipped validation files whole; else the first N characters of each
    compile_backend: str        # torch.compile's backend for the training rows


FULL = Shapes(depth=12, width=768, heads=6, vocab=32768, seq=2048, rows=32, train_warmup=3, train_steps=10,
              gpt2=(12, 12, 768, 1024), bpb_tokens=1_000_000, bpb_repeats=3, prompts=32, samples=8,
              prompt_len=64, new_tokens=200, gen_repeats=3, checkpoints=10, eval_samples=8,
              eval_lengths=(80, 200), eval_tok_vocab=32768, eval_tok_chars=3_000_000, eval_bpb_chars=None,
              compile_backend="inductor")
SMOKE = Shapes(depth=2, width=64, heads=2, vocab=512, seq=64, rows=4, train_warmup=1, train_steps=2,
               gpt2=(2, 2, 64, 64), bpb_tokens=1500, bpb_repeats=1, prompts=2, samples=2, prompt_len=8,
               new_tokens=8, gen_repeats=1, checkpoints=2, eval_samples=1, eval_lengths=(4, 8),
               eval_tok_vocab=300, eval_tok_chars=20_000, eval_bpb_chars=3000, compile_backend="eager")


def pick(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    """(seconds, fn()) with the device synchronised on both sides."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak memory torch allocated on the GPU since the last reset_peak, GiB; None on a CPU."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def sdpa_kernel(device: torch.device, heads: int, head_dim: int, seq: int, dtype=torch.bfloat16) -> str:
    """Which of PyTorch's attention kernels causal SDPA gets at this shape: flash-attention when it accepts
    the inputs (PyTorch tries it first), else the memory-efficient or math kernel."""
    if device.type != "cuda":
        return "CPU kernel"
    from torch.nn.attention import SDPBackend  # deferred: CUDA only; torch >= 2.3
    from torch.nn.attention import sdpa_kernel as only  # deferred: as above
    q = torch.zeros(1, heads, seq, head_dim, device=device, dtype=dtype)
    for backend, name in ((SDPBackend.FLASH_ATTENTION, "flash-attention"),
                          (SDPBackend.EFFICIENT_ATTENTION, "memory-efficient"), (SDPBackend.MATH, "math")):
        try:
            with only(backend):
                torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
            return f"{name} kernel"
        except RuntimeError:
            continue
    return "no kernel accepted the shape"
