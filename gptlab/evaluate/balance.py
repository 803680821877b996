"""Which rank does which unit of an evaluation: longest-processing-time-first by estimated cost.

    torchrun --nproc_per_node=4 -m gptlab eval runs/d12        (gptlab/evaluate/ranks.py plans with this)
    python -m pytest tests/test_eval_distributed.py -k balance

Units are a bpb domain of a checkpoint and a batch of probe samples (the batches one process would form,
so that every text is the one it would generate). Each costs about tokens x parameters; a rank also pays
`load` (in the same units) once for each checkpoint it has to load. A domain much larger than a rank's
share of the job is cut into stripes of windows (gptlab/evaluate/bpb.py), at most one per rank; batches are
never cut.

Assignment (`assign`): units in decreasing cost, each to the rank that would finish it first, counting the
load of a checkpoint that rank has not loaded yet (a rank already holding one, from the planning pass,
loads it for free). LPT is within 4/3 of the best makespan when loads are negligible; with them it keeps a
checkpoint's units together unless spreading them pays. Deterministic in its inputs: ties go to the lower
rank and the earlier unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GRAIN = 3           # a domain costing more than 1/GRAIN of a rank's share is striped


@dataclass(frozen=True)
class Unit:
    checkpoint: int             # index of the checkpoint in the job
    kind: str                   # "bpb" or "samples"
    item: int                   # the domain's or the batch's index within the checkpoint
    cost: float
    stripe: int = 0             # bpb: which stripe of `stripes`
    stripes: int = 1


def stripe(units: list[Unit], world: int, load: dict[int, float]) -> list[Unit]:
    """`units` with every bpb domain costing more than 1/GRAIN of a rank's share cut into at most `world`
    stripes of equal cost. `load`: the load cost of each checkpoint that has units."""
    share = (sum(u.cost for u in units) + sum(load.values())) / max(1, world)
    out = []
    for u in units:
        n = 1 if u.kind != "bpb" or share <= 0 else min(world, math.ceil(u.cost * GRAIN / share))
        if n <= 1:
            out.append(u)
        else:
            out += [Unit(u.checkpoint, u.kind, u.item, u.cost / n, k, n) for k in range(n)]
    return out


def assign(units: list[Unit], world: int, load: dict[int, float],
           held: dict[int, int] | None = None) -> list[list[Unit]]:
    """One list of units per rank (see the module docstring); `held`: {rank: checkpoint it holds already}.
    A rank's list is ordered by checkpoint, the one it holds first, then bpb before samples."""
    held = held or {}
    busy = [0.0] * world
    loaded = [{held[r]} if r in held else set() for r in range(world)]
    out: list[list[Unit]] = [[] for _ in range(world)]
    order = sorted(range(len(units)), key=lambda i: (-units[i].cost, i))
    for i in order:
        u = units[i]
        finish = [busy[r] + u.cost + (0.0 if u.checkpoint in loaded[r] else load.get(u.checkpoint, 0.0))
                  for r in range(world)]
        r = min(range(world), key=lambda r: (finish[r], r))
        busy[r] = finish[r]
        loaded[r].add(u.checkpoint)
        out[r].append(u)
    for r in range(world):
        first = held.get(r)
        out[r].sort(key=lambda u: (u.checkpoint != first, u.checkpoint, u.kind != "bpb", u.item, u.stripe))
    return out


def makespan(plan: list[list[Unit]], load: dict[int, float], held: dict[int, int] | None = None) -> float:
    """The estimated time of the busiest rank of `plan`, loads included."""
    held = held or {}
    return max((sum(u.cost for u in units) + sum(load.get(c, 0.0) for c in {u.checkpoint for u in units}
                                                  if c != held.get(r)) for r, units in enumerate(plan)),
               default=0.0)
