"""One decoding step over a StaticKVCache, replayed from a CUDA graph: the Python and launch cost of a small
model's step (hundreds of kernels, each a few microseconds of work) is paid once, at capture.

    gptlab eval runs/d12 --device cuda          the engine decodes through this on CUDA (Engine decode="auto")
    python bench/gpu_acceptance.py              sampling throughput, graph against eager, on a GPU
    python -m pytest tests/test_static_cache.py

`DecodeStep(forward, cache, batch, mode)` holds a static (batch, 1) input; `step(tokens)` copies the tokens in
and returns the (batch, 1, V) logits of `forward(input)`, which must read and write only fixed buffers (a
StaticKVCache, whose device position the step advances itself). Modes:
  "static"    call `forward` eagerly on the static buffers (any device: the path the CPU tests take);
  "graph"     capture `forward` once as a CUDA graph, then replay it: after one warm-up step on a side
              stream (cuBLAS and the allocator set up outside the capture), rewound so that the real first
              step writes the same position again; the first replay is checked against the same step run
              eagerly (a mismatch raises, and `fixed_shape_step` falls back to "static");
  "compiled"  the same with `forward` compiled by torch.compile first (kernels fused; the compilation costs
              tens of seconds per new batch size, so it pays only over long generations).
The returned logits live in the graph's memory and are overwritten by the next step: use them before.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from gptlab.models.kv_cache import StaticKVCache

MODES = ("static", "graph", "compiled")


class DecodeStep:
    """See the module docstring."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], cache: StaticKVCache, batch: int,
                 mode: str = "graph"):
        if mode not in MODES:
            raise ValueError(f"decode mode {mode!r}: expected one of {', '.join(MODES)}")
        if not cache.static:
            raise ValueError("a decode step needs a StaticKVCache (fixed shapes, position on the device)")
        self.forward, self.cache, self.mode = forward, cache, mode
        self.x = torch.zeros((batch, 1), dtype=torch.long, device=cache.k.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None
        if mode != "static":
            if self.x.device.type != "cuda":
                raise ValueError(f"decode mode {mode!r} needs a CUDA device, not {self.x.device}")
            fn = forward
            if mode == "compiled":
                fn = torch.compile(forward, dynamic=False)
            self._capture(fn)

    def _capture(self, fn) -> None:
        pos = self.cache.pos
        side = torch.cuda.Stream(device=self.x.device)
        side.wait_stream(torch.cuda.current_stream(self.x.device))
        with torch.cuda.stream(side):
            for _ in range(2 if self.mode == "compiled" else 1):    # compiled: the first call compiles
                fn(self.x)
                self.cache.rewind(pos)
        torch.cuda.current_stream(self.x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.x)
        self.cache.rewind(pos)              # the capture ran no kernel, but Python advanced `pos`
        # once per capture, the replay against the same step run outside the graph (the same kernels, so the
        # same logits): a capture that recorded something else falls back to eager decoding, never wrong text
        # (to a few units of the weights' rounding: inside a capture cuBLAS may pick another algorithm)
        want = fn(self.x).float()
        self.cache.rewind(pos)
        self.graph.replay()
        self.cache.rewind(pos)
        off = (self.out.float() - want).abs().max().item()
        tol = max(1e-3, 4 * torch.finfo(self.cache.k.dtype).eps) * (1 + want.abs().max().item())
        if not off <= tol:
            raise RuntimeError(f"the captured step's logits differ from the eager step's by up to {off:.3g}")

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 1, V) of the next position, given each row's token (batch, 1) at the current one."""
        self.x.copy_(tokens)
        if self.graph is None:
            return self.forward(self.x)
        self.graph.replay()                 # advances the cache's device position, as `forward` did
        self.cache.pos += 1                 # ... and this is the Python mirror of it
        return self.out


def has_static_cache(model) -> bool:
    """Whether the model's family builds a StaticKVCache (`new_cache(..., static=True)`)."""
    try:
        return "static" in inspect.signature(model.new_cache).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def fixed_shape_step(forward, cache: StaticKVCache, batch: int, mode: str, notes: list[str]) -> DecodeStep:
    """DecodeStep in `mode`; when a graph cannot be captured (a torch or a model that does something the
    capture refuses), the same step run eagerly ("static"), with one line about it appended to `notes`.
    Out of memory is not such a case: it goes through to the caller, which retries at half the batch."""
    pos = cache.pos
    try:
        return DecodeStep(forward, cache, batch, mode)
    except torch.OutOfMemoryError:
        raise
    except Exception as e:              # slower, still right: the static step computes the same logits
        if mode == "static":
            raise
        notes.append(f"decode {mode} unavailable ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}); "
                     f"decoding eagerly on the static cache")
        cache.rewind(pos)
        return DecodeStep(forward, cache, batch, "static")
