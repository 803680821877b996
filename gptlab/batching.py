"""How many rows go into one batch: sized from the device's free memory, halved on out-of-memory.

    gptlab eval runs/d12 --device cuda         bpb windows and probe samples are batched through here
    python -m pytest tests/test_batching.py

`rows_that_fit(bytes_per_row, device, cap, default)`: on CUDA, the rows whose estimated memory fits in a
share of what `torch.cuda.mem_get_info` reports free, between 1 and `cap`; elsewhere `default` (a CPU has no
such number, and its batches are sized for speed). The estimate is rough on purpose: `Halving` catches
the error when it is wrong.

`Halving(size)` runs a function over a list a chunk at a time. When a chunk raises torch.OutOfMemoryError,
the device's cached blocks are released and the same chunk is tried again at half the size — and every
later chunk too: the size stays down. At one row, the error goes through (nothing smaller exists). The
function must be free of side effects until it returns (the callers accumulate after it), so a retried
chunk is never counted twice, and the results are the results of smaller batches: the same rows, computed
alone or in smaller company (float rounding aside).
"""

from __future__ import annotations

import gc
from typing import Callable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")
FREE_SHARE = 0.5            # of the free memory a batch may take: the rest is for the allocator's slack


def free_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device as the driver reports it; None for devices without that number."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def rows_that_fit(bytes_per_row: int, device: torch.device, cap: int, default: int,
                  free: int | None = None) -> int:
    """Rows of `bytes_per_row` that fit in FREE_SHARE of the free memory (CUDA), at least 1 and at most `cap`;
    `default` where free memory is unknown (CPU, MPS). `free` overrides the query (tests)."""
    free = free_bytes(device) if free is None else free
    if free is None:
        return default
    return max(1, min(cap, int(free * FREE_SHARE) // max(1, int(bytes_per_row))))


def release(device: torch.device | None = None) -> None:
    """Give back what an out-of-memory left behind: unreachable tensors, then CUDA's cached blocks."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()


class Halving:
    """Chunks of a list at `size` items, halving the size on out-of-memory (see the module docstring)."""

    def __init__(self, size: int, device: torch.device | None = None,
                 on_shrink: Callable[[int, int], None] | None = None):
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        self.size, self.device, self.on_shrink = int(size), device, on_shrink
        self.shrinks = 0

    def map(self, fn: Callable[[Sequence[T]], R], items: Sequence[T]) -> Iterator[tuple[Sequence[T], R]]:
        """(chunk, fn(chunk)) for consecutive chunks covering `items` in order."""
        i = 0
        while i < len(items):
            chunk = items[i:i + self.size]
            try:
                result = fn(chunk)
            except torch.OutOfMemoryError:
                if len(chunk) <= 1:
                    raise
                release(self.device)
                before, self.size = self.size, max(1, len(chunk) // 2)
                self.shrinks += 1
                if self.on_shrink is not None:
                    self.on_shrink(before, self.size)
                continue
            yield chunk, result
            i += len(chunk)

    def run(self, fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
        """fn over `items` in chunks, fn returning one result per item: the results in item order."""
        out: list[R] = []
        for _, got in self.map(fn, items):
            out.extend(got)
        return out
