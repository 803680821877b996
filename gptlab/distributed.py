"""Process-group plumbing for DDP training, kept outside the model (the model file stays single-device).

    torchrun --nproc_per_node=2 -m gptlab train demo --out runs/ddp      # gloo on CPU, NCCL on CUDA
    python -m pytest tests/test_train.py

`Dist.from_env()` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; without them it is a world of one where
every collective is a no-op. Rank 0 is the only writer (checkpoints, metrics, tokenizer, token caches).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as td
from torch.nn.parallel import DistributedDataParallel

from gptlab.devices import pick_device


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        dev = pick_device(device)
        if dev.type == "cuda" and world > 1:
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if world > 1 and not td.is_initialized():
            td.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return cls(rank, world, local, dev)

    def barrier(self) -> None:
        if self.world > 1:
            td.barrier()

    def all_reduce(self, t: torch.Tensor, average: bool = False) -> None:
        if self.world > 1:
            td.all_reduce(t)
            if average:
                t /= self.world

    def wrap(self, model):
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, model, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.world > 1 and not last:
            return model.no_sync()
        return contextlib.nullcontext()

    def close(self) -> None:
        if self.world > 1 and td.is_initialized():
            td.destroy_process_group()
