"""The learning-rate schedule as pure arithmetic: nanochat's warmup, constant, linear warmdown.

    gptlab train demo                                   (gptlab/optim.py's set_schedule calls `lr_multiplier`)
    gptlab report runs/demo --db results.sqlite         (the Convergence section rebuilds it from the store)
    python -m pytest tests/test_schedule_fit.py tests/test_train.py

`lr_multiplier(step, tc)` is the factor on every group's base learning rate at 0-indexed update `step`:
(step + 1) / warmup_steps during warmup, 1.0 until the last `warmdown_frac` of the steps, then a linear
fall to `final_lr_frac` at the last step. `tc` is anything with the four attributes (the train config, or a
`Schedule`). No torch and nothing from gptlab: the training loop and the report (which never imports torch)
use this one function, so the schedule the report fits is the one the optimizer ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def lr_multiplier(step: int, tc) -> float:
    """Linear warmup, constant, then linear warmdown over the last warmdown_frac of steps to final_lr_frac."""
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    warmdown = round(tc.warmdown_frac * tc.steps)
    if warmdown <= 0 or step <= tc.steps - warmdown:
        return 1.0
    progress = (tc.steps - step) / warmdown
    return progress + (1 - progress) * tc.final_lr_frac


@dataclass(frozen=True)
class Schedule:
    steps: int
    warmup_steps: int = 0
    warmdown_frac: float = 0.0
    final_lr_frac: float = 0.0

    @classmethod
    def from_config(cls, config: dict) -> Schedule | None:
        """From a stored run config's `train` table (store `runs.config_json`); None unless it names the run's
        steps and warmdown fraction (a config from elsewhere may not describe nanochat's schedule)."""
        tc = (config or {}).get("train") or {}
        try:
            if int(tc["steps"]) < 1:
                return None
            return cls(steps=int(tc["steps"]), warmup_steps=int(tc.get("warmup_steps") or 0),
                       warmdown_frac=float(tc["warmdown_frac"]), final_lr_frac=float(tc.get("final_lr_frac") or 0.0))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def warmdown_steps(self) -> int:
        return round(self.warmdown_frac * self.steps)

    @property
    def anneals(self) -> bool:
        """The rate falls at the end (a warmdown to below the peak)."""
        return self.warmdown_steps > 0 and self.final_lr_frac < 1.0

    def multipliers(self, steps: int | None = None) -> np.ndarray:
        """The multiplier at updates 0 .. steps-1 (default: the whole run)."""
        return np.array([lr_multiplier(i, self) for i in range(self.steps if steps is None else steps)], dtype=float)

    def longer(self, factor: float) -> Schedule:
        """The same shape `factor` times as long: warmup in steps as before, the same warmdown fraction."""
        return replace(self, steps=max(1, round(self.steps * factor)))

    def constant(self) -> Schedule:
        """The same run without the warmdown: warmup, then the peak rate to the end."""
        return replace(self, warmdown_frac=0.0)
