"""A loss law that knows the learning-rate schedule: how much of a warmdown's drop is annealing, not data.

    gptlab report runs/demo --db results.sqlite          (the "Convergence" section)
    python bench/schedule_fit_check.py                   (fit on half a real CPU run, predict the other half)
    python -m pytest tests/test_schedule_fit.py

The law (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing"), with eta_i the learning-rate
multiplier of update i (gptlab/schedule.py, peak 1) and s the number of updates done:

    L(s) = L0 + A * S1(s)^-alpha - C * S2(s)
    S1(s) = sum_{i<=s} eta_i                        the forward area: how far the weights could travel
    S2(s) = sum_{i<=s} m_i,  m_i = lam * m_{i-1} + max(eta_{i-1} - eta_i, 0),  m_0 = 0, eta_0 = eta_1

S2 is the annealing area: each fall of the rate adds to a momentum that keeps lowering the loss for about
1/(1 - lam) steps. A rising rate (warmup) adds forward area but no annealing area (the rises are clipped to 0;
the paper leaves warmup out of S2). lam: the paper fixes 0.999 (a memory of ~1000 steps) on runs of tens of
thousands of steps. gptlab's runs are a few hundred to a few thousand steps, where such a memory is as long
as the whole warmdown and would carry its effect past the run's end; on a demo run (bench/
schedule_fit_check.py, docs/convergence.md) the fit's own error fell steadily from lam 0.999 to 0.5. So lam
is fitted too, from LAMBDAS = 0.5 ... 0.999 (memories of 2 to 1000 steps), by the same least squares.

The fit, numpy only: for each lam in LAMBDAS and each alpha on a log grid (0.02-3, then two finer grids
around the best alpha), (L0, A, C) solve least squares with L0 >= 0 (an entropy floor), A >= 0 (more area
never hurts) and C >= 0 (annealing lowers the loss) — exactly, by solving every subset of free coefficients
and keeping the best feasible one (three coefficients: seven subsets). The smallest squared error over
(lam, alpha) wins. S1 and S2 are scaled by their values at the last fitted point inside the fit; the
coefficients are reported unscaled.

Identifiability: C is only seen once the fitted points include annealing, so `fit_schedule_law` asks for
>= MIN_POINTS val points of which >= 2 lie after the warmdown began, and returns a reason otherwise.

Intervals: a residual bootstrap, B = BOOTSTRAP resamples drawn with numpy's default_rng(SEED) (deterministic):
the fitted curve plus residuals resampled with replacement, inflated by sqrt(n / (n - 5)) for the five fitted
numbers; each resample is refitted (lam from LAMBDAS again; alpha on one fine grid, 320 points); 95%
percentile intervals for the parameters, the predicted final bpb of this run, of a run `factor` times as
long with the same schedule shape (`Schedule.longer`: warmup steps as before, same warmdown fraction), of
that longer run at constant rate (no warmdown), and for the gain (this run's end minus the longer run's,
paired within each resample). The verdict built on them: gptlab/stats/trend.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations

import numpy as np

from gptlab.schedule import Schedule

LAMBDAS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
MIN_POINTS = 5
MIN_ANNEALED = 2
BOOTSTRAP = 200
SEED = 0
FACTOR = 2.0
ALPHA_GRID = np.geomspace(0.02, 3.0, 96)
BOOT_GRID = np.geomspace(0.02, 3.0, 320)       # the resamples' alphas: one fine grid, every resample at once
SUBSETS = [s for k in (1, 2, 3) for s in combinations(range(3), k)]


def areas(multipliers, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) after 1 .. len(multipliers) updates; entry k-1 belongs to s = k updates done."""
    eta = np.asarray(multipliers, dtype=float)
    drops = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0) if len(eta) else eta
    m = np.empty_like(drops)
    cur = 0.0
    for i, d in enumerate(drops):
        cur = lam * cur + d
        m[i] = cur
    return np.cumsum(eta), np.cumsum(m)


def _fit_many(u: np.ndarray, v: np.ndarray, ys: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """The same fit for many curves at once, ys (n, B), on one grid of alpha: rows (L0, A_s, C_s, alpha, sse)."""
    g, b = len(alphas), ys.shape[1]
    cols = np.stack([np.ones((g, len(u))), np.exp(-np.outer(alphas, np.log(u))),
                     np.broadcast_to(-v, (g, len(u)))], axis=2)                     # (g, n, 3)
    yy = np.einsum("nb,nb->b", ys, ys)
    best_sse = np.broadcast_to(yy, (g, b)).copy()
    best = np.zeros((g, 3, b))
    for s in SUBSETS:
        x = cols[:, :, s]
        gram = np.einsum("gni,gnj->gij", x, x)
        gram += np.eye(len(s)) * (1e-12 * np.trace(gram, axis1=1, axis2=2))[:, None, None]
        rhs = np.einsum("gni,nb->gib", x, ys)                                       # (g, k, b)
        try:
            coef = np.linalg.solve(gram, rhs)
        except np.linalg.LinAlgError:
            continue
        sse = yy - np.einsum("gib,gib->gb", coef, 2 * rhs - gram @ coef)             # |y - x coef|^2
        ok = np.all(coef >= 0, axis=1) & (sse < best_sse)
        best_sse = np.where(ok, sse, best_sse)
        full = np.zeros((g, 3, b))
        full[:, list(s), :] = coef
        best = np.where(ok[:, None, :], full, best)
    i = np.argmin(best_sse, axis=0)                                                  # per curve
    coef = best[i, :, np.arange(b)]                                                  # (b, 3)
    return np.column_stack([coef, alphas[i], best_sse[i, np.arange(b)]])


def _fit(u: np.ndarray, v: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """(L0, A_scaled, C_scaled, alpha, sse) for y ~ L0 + A u^-alpha - C v, over a grid of alpha refined twice."""
    alphas = ALPHA_GRID
    for _ in range(3):
        best = _fit_many(u, v, y[:, None], alphas)[0]
        i = int(np.searchsorted(alphas, best[3]))
        alphas = np.linspace(alphas[max(i - 1, 0)], alphas[min(i + 1, len(alphas) - 1)], 25)
    return tuple(float(x) for x in best)


@dataclass
class ScheduleLaw:
    L0: float
    A: float                     # on S1 counted in steps at the peak rate
    C: float                     # per unit of S2 (steps x multiplier)
    alpha: float
    lam: float
    schedule: Schedule
    steps: list[int]             # the fitted points' updates done
    rmse: float
    factor: float = FACTOR
    final: float = 0.0           # predicted bpb at the end of this run's schedule
    longer: float = 0.0          # ... of a run `factor` x as long, same shape
    constant: float = 0.0        # ... of that longer run at the peak rate throughout (no warmdown)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.steps)

    @property
    def gain(self) -> float:
        """bpb a run `factor` x as long with the same schedule shape would end below this run."""
        return self.final - self.longer

    def curve(self, schedule: Schedule | None = None) -> np.ndarray:
        """Predicted bpb after 1 .. steps updates under `schedule` (default: the fitted run's)."""
        s1, s2 = areas((schedule or self.schedule).multipliers(), self.lam)
        return self.L0 + self.A * s1 ** -self.alpha - self.C * s2

    def __call__(self, steps, schedule: Schedule | None = None) -> np.ndarray:
        c = self.curve(schedule)
        return c[np.clip(np.asarray(steps, dtype=int), 1, len(c)) - 1]

    def annealing_drop(self) -> float:
        """How much of this run's final bpb the law credits to the warmdown: C * S2 at the end."""
        return self.C * float(areas(self.schedule.multipliers(), self.lam)[1][-1])


class _Design:
    """One lambda's scaled areas at the fitted points, and the (S1, S2) at the end of this run, of the longer
    run and of the longer run at constant rate."""

    def __init__(self, schedule: Schedule, steps: np.ndarray, lam: float, factor: float):
        s1, s2 = areas(schedule.multipliers(), lam)                 # why_not: no point is past the schedule
        s1, s2 = s1[steps - 1], s2[steps - 1]
        self.lam, self.r1, self.r2 = lam, float(s1[-1]), max(float(s2.max()), 1e-12)
        self.u, self.v = s1 / self.r1, s2 / self.r2
        self.ends = []
        for sch in (schedule, schedule.longer(factor), schedule.longer(factor).constant()):
            e1, e2 = areas(sch.multipliers(), lam)
            self.ends.append((float(e1[-1]) / self.r1, float(e2[-1]) / self.r2))

    def predict(self, L0, As, Cs, alpha) -> list:
        """bpb at the three ends (works on arrays of coefficients as well)."""
        return [L0 + As * e1 ** -alpha - Cs * e2 for e1, e2 in self.ends]

    def unscaled(self, L0, As, Cs, alpha) -> list:
        """(L0, A, C, alpha) for S1 and S2 in steps."""
        return [L0, As * self.r1 ** alpha, Cs / self.r2, alpha]


@lru_cache(maxsize=8)
def _designs(schedule: Schedule, steps: tuple[int, ...], lams: tuple[float, ...], factor: float) -> list[_Design]:
    """One _Design per lambda; cached, because a report fits every domain's curve of a run at the same steps
    under the same schedule, and the areas of a long run are the costly part."""
    return [_Design(schedule, np.array(steps), lm, factor) for lm in lams]


def why_not(steps, schedule: Schedule | None) -> str | None:
    """The reason the law cannot be fitted to val points at these `steps`, or None when it can."""
    if schedule is None:
        return "the run's stored config has no learning-rate schedule"
    if not schedule.anneals:
        return "the run's schedule has no warmdown (a constant rate: the plain fit describes it)"
    steps = [s for s in steps if s is not None and s > 0]
    if len(steps) < MIN_POINTS:
        return f"it needs at least {MIN_POINTS} val points after step 0, the curve has {len(steps)}"
    if max(steps) > schedule.steps:
        return (f"val points run past the {schedule.steps:,} steps the stored config names (step "
                f"{max(steps):,}), so the schedule does not describe the run")
    start = schedule.steps - schedule.warmdown_steps
    if sum(s > start for s in steps) < MIN_ANNEALED:
        return (f"fewer than {MIN_ANNEALED} val points lie in the warmdown (after step {start}), so the "
                f"annealing term cannot be told from the data term")
    return None


def fit_schedule_law(steps, y, schedule: Schedule | None, *, lam: float | None = None, factor: float = FACTOR,
                     bootstrap: int = BOOTSTRAP, seed: int = SEED) -> tuple[ScheduleLaw | None, str | None]:
    """The law fitted to val bpb `y` measured after `steps` updates of a run with `schedule`:
    (law, None), or (None, the reason it could not be fitted). `lam` fixes lambda (default: fitted on LAMBDAS)."""
    pts = sorted((int(s), float(v)) for s, v in zip(steps, y)
                 if s is not None and s > 0 and v is not None and math.isfinite(v))
    reason = why_not([s for s, _ in pts], schedule)
    if reason:
        return None, reason
    st = np.array([s for s, _ in pts])
    yv = np.array([v for _, v in pts])
    designs = _designs(schedule, tuple(int(s) for s in st), (lam,) if lam is not None else LAMBDAS, factor)
    fits = [_fit(d.u, d.v, yv) for d in designs]
    k = min(range(len(fits)), key=lambda j: fits[j][4])                  # the first of equals: the smaller lambda
    d, (L0, As, Cs, alpha, sse) = designs[k], fits[k]
    fitted = L0 + As * d.u ** -alpha - Cs * d.v
    law = ScheduleLaw(*d.unscaled(L0, As, Cs, alpha), lam=d.lam, schedule=schedule, steps=[int(s) for s in st],
                      rmse=math.sqrt(sse / len(st)), factor=factor)
    law.final, law.longer, law.constant = d.predict(L0, As, Cs, alpha)
    n, free = len(st), 4 + (len(designs) > 1)
    resid = (yv - fitted) * math.sqrt(n / max(n - free, 1))
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        ys = fitted[:, None] + resid[rng.integers(0, n, size=(n, bootstrap))]
        per_lam = []
        for j, dj in enumerate(designs):
            b = _fit_many(dj.u, dj.v, ys, np.union1d(BOOT_GRID, [fits[j][3]])).T     # (5, B)
            p = dj.predict(*b[:4])
            per_lam.append(np.column_stack([*dj.unscaled(*b[:4]), np.full(bootstrap, dj.lam), *p, p[0] - p[1],
                                            b[4]]))
        stack = np.stack(per_lam)                                                    # (lambdas, B, 10)
        draws = stack[np.argmin(stack[:, :, -1], axis=0), np.arange(bootstrap)]      # each resample's best lambda
        lo, hi = np.percentile(draws[:, :-1], [2.5, 97.5], axis=0)
        names = ["L0", "A", "C", "alpha", "lambda", "final", "longer", "constant", "gain"]
        law.intervals = {k: (float(a), float(b)) for k, a, b in zip(names, lo, hi)}
    return law, None
