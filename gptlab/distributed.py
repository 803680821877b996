"""Process-group plumbing for DDP training, kept outside the model (the model file stays single-device).

    torchrun --nproc_per_node=2 -m gptlab train demo --out runs/ddp      # gloo on CPU, NCCL on CUDA
    python -m pytest tests/test_train.py

`Dist.from_env()` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK; without them it is a world of one where
every collective is a no-op. Rank 0 is the only writer (checkpoints, metrics, tokenizer, token caches).

Evaluation (`torchrun --nproc_per_node=2 -m gptlab eval runs/demo`, gptlab/evaluate/ranks.py) exchanges
Python objects, not tensors: `gather_objects` and `broadcast_object` run on a gloo group of their own (CPU,
whatever the device), whose timeout is long because a rank may wait for rank 0's diagnosis or `watch`'s
next poll.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as td
from torch.nn.parallel import DistributedDataParallel

from gptlab.devices import pick_device

OBJECTS_TIMEOUT = timedelta(hours=24)      # object collectives: see the module docstring


def launched_world() -> tuple[int, int]:
    """(rank, world size) as torchrun set them in the environment; (0, 1) outside torchrun. Initialises nothing."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    objects_group: object = field(default=None, repr=False)   # gloo group of the object collectives, made once
    owns_group: bool = field(default=True, repr=False)        # made the process group, so `close` destroys it

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
        owns = world > 1 and not td.is_initialized()
        if owns:
            td.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        return cls(rank, world, local, dev, owns_group=owns)

    def barrier(self) -> None:
        if self.world > 1:
            td.barrier()

    def all_reduce(self, t: torch.Tensor, average: bool = False) -> None:
        if self.world > 1:
            td.all_reduce(t)
            if average:
                t /= self.world

    def _objects(self):
        if self.objects_group is None:          # collective: every rank reaches this on its first object call
            self.objects_group = td.new_group(backend="gloo", timeout=OBJECTS_TIMEOUT)
        return self.objects_group

    def gather_objects(self, obj) -> list | None:
        """Every rank's picklable `obj`, in rank order, on rank 0; None on the other ranks."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.rank == 0 else None
        td.gather_object(obj, out, dst=0, group=self._objects())
        return out

    def all_gather_objects(self, obj) -> list:
        """Every rank's picklable `obj`, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        td.all_gather_object(out, obj, group=self._objects())
        return out

    def broadcast_object(self, obj):
        """Rank 0's picklable `obj` on every rank (the others pass anything, e.g. None)."""
        if self.world == 1:
            return obj
        box = [obj]
        td.broadcast_object_list(box, src=0, group=self._objects())
        return box[0]

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
        """Destroy the process group if this Dist made it: a training inside a process that already joined one
        (`gptlab ladder`'s rungs, one group for all of them) leaves it to its maker."""
        if self.world > 1 and self.owns_group and td.is_initialized():
            td.destroy_process_group()
            self.objects_group = None
