"""Is the loss curve still falling? The convergence maths behind the report's verdict.

    gptlab report runs/demo --db results.sqlite      (the "Convergence" section)
    python -m pytest tests/test_trend.py

`trend(x, y)` takes val bpb `y` at training progress `x` (tokens seen, or steps when tokens are unknown),
one point per checkpoint, and returns three measurements and a verdict:

* Recent slope: ordinary least squares of y on x over the last `window` points (default 5), with the
  textbook standard error of the slope, se = sqrt(SSE / (k - 2) / sum((x - mean x)^2)), defined for k >= 3.
  `drop` = -slope * (span of x in the window): how much bpb fell across the window.
* Plateau rule (documented in docs/report.md): the tolerance is `rel_tol` (0.5%) of the latest bpb.
    - plateau            |drop| <= tol: the curve moved less than 0.5% over the window;
    - still descending   drop > tol and drop > 2 * se * span (a fall beyond noise, ~95%);
    - rising             -drop > tol and beyond noise in the same way;
    - unclear            it moved more than tol but not beyond noise.
  With only two points there is no noise estimate; a move beyond tol is reported as is, flagged.
* Power law bpb(t) = a + b * t^-c, fitted without scipy: for each c on a log grid (then refined on two
  finer grids around the best c) a and b follow from linear least squares on the basis [1, t^-c]; b >= 0 and a >= 0
  are enforced (a falling curve, an entropy floor that cannot be negative), and the c with the smallest
  squared error wins. t is scaled by its maximum inside the fit so the basis stays well conditioned.
  Needs >= 3 points with t > 0. `projected` = bpb at 2x the last t; with >= 5 points, refits leaving one
  point out give `projected_range`, an honest spread for a 3-parameter fit on few points.
* With the run's learning-rate schedule (`schedule=`, and `steps=`: updates done at each point), a run with
  a warmdown and >= 5 val points (>= 2 of them in the warmdown) is judged by gptlab/stats/schedule_fit.py's
  law L = L0 + A*S1^-alpha - C*S2 instead: the drop a warmdown brings is annealing, not more data. The
  question becomes what a run 2x as long with the same schedule shape would reach (`law.longer`, with a
  bootstrap interval on `law.gain`, its margin below this run's predicted end):
    - still descending   the gain's whole 95% interval lies above the tolerance;
    - plateau            the gain is within the tolerance;
    - unclear            the gain exceeds the tolerance but its interval reaches below it;
    - rising             kept from the slope rule (the law cannot rise).
  Otherwise the slope rule stands and `law_note` says why the law was not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gptlab.schedule import Schedule
from gptlab.stats.schedule_fit import ScheduleLaw, fit_schedule_law
from gptlab.verdicts import Convergence

WINDOW = 5
REL_TOL = 0.005
C_GRID = np.geomspace(0.01, 4.0, 240)


@dataclass
class Slope:
    slope: float                 # d bpb / d x (negative = falling)
    stderr: float | None         # None with 2 points
    n: int                       # points in the window
    span: float                  # x range of the window

    @property
    def drop(self) -> float:
        """bpb lost across the window (positive = the curve fell)."""
        return -self.slope * self.span

    @property
    def noise(self) -> float | None:
        """Two standard errors of the slope, expressed over the window: a drop smaller than this is noise."""
        return None if self.stderr is None else 2.0 * self.stderr * self.span


@dataclass
class PowerLaw:
    a: float                     # the asymptote: bpb with unlimited training at this size
    b: float
    c: float
    rmse: float                  # root mean squared residual over the fitted points
    n: int
    t_last: float
    projected: float             # bpb at 2 * t_last
    projected_range: tuple[float, float] | None = None
    y_range: float = 0.0         # max - min of the fitted bpb, to judge rmse against

    @property
    def poor(self) -> bool:
        """Residuals above 10% of the curve's range: the curve is not power-law shaped (LR schedule?)."""
        return self.rmse > 0.1 * self.y_range

    def __call__(self, t):
        return self.a + self.b * np.power(np.asarray(t, dtype=float), -self.c)

    @property
    def now(self) -> float:
        return float(self(self.t_last))

    @property
    def gain(self) -> float:
        """bpb the fit expects to lose between t_last and 2 * t_last."""
        return self.now - self.projected


@dataclass
class Trend:
    x: list[float]
    y: list[float]
    verdict: Convergence
    converged: bool | None
    sentence: str                # the verdict in words, with its numbers
    slope: Slope | None = None
    fit: PowerLaw | None = None
    tol: float | None = None
    missing: list[str] = field(default_factory=list)   # what more data would allow
    law: ScheduleLaw | None = None   # the schedule-aware fit, when it decided the verdict
    law_note: str | None = None      # why it was not used, when a schedule was given

    @property
    def projection(self) -> tuple[float, float, str] | None:
        """(projected bpb, gain, what it is) from the law when it judged, else the power law at 2x."""
        if self.law is not None:
            return self.law.longer, self.law.gain, "a run 2x as long with the same schedule"
        if self.fit is not None:
            return self.fit.projected, self.fit.gain, "the power law at 2x"
        return None


def recent_slope(x, y, window: int = WINDOW) -> Slope | None:
    x = np.asarray(x, dtype=float)[-window:]
    y = np.asarray(y, dtype=float)[-window:]
    k = len(x)
    if k < 2 or np.ptp(x) == 0:
        return None
    xm = x - x.mean()
    sxx = float(xm @ xm)
    slope = float(xm @ (y - y.mean()) / sxx)
    stderr = None
    if k >= 3:
        resid = y - (y.mean() + slope * xm)
        stderr = math.sqrt(float(resid @ resid) / (k - 2) / sxx)
    return Slope(slope=slope, stderr=stderr, n=k, span=float(np.ptp(x)))


def _fit_grid(cs: np.ndarray, logs: np.ndarray, y: np.ndarray):
    """For each c in `cs`: least squares y ~ a + b z, z = exp(-c logs), with a >= 0 and b >= 0.

    Returns arrays (a, b, sse), one entry per c; all c are solved at once in closed form."""
    z = np.exp(-np.outer(cs, logs))                             # (len(cs), n)
    zm = z - z.mean(axis=1, keepdims=True)
    ym = y - y.mean()
    szz = np.einsum("ij,ij->i", zm, zm)
    b = np.divide(zm @ ym, szz, out=np.zeros(len(cs)), where=szz > 0)
    a = y.mean() - b * z.mean(axis=1)
    flat = b < 0                                                # not falling: the best monotone fit is flat
    a[flat], b[flat] = y.mean(), 0.0
    floor = (a < 0) & ~flat                                     # floor at zero: fit y ~ b z through the origin
    b[floor] = (z[floor] @ y) / np.einsum("ij,ij->i", z[floor], z[floor])
    a[floor] = 0.0
    r = y - (a[:, None] + b[:, None] * z)
    return a, b, np.einsum("ij,ij->i", r, r)


def _fit(t: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Best (a, b_scaled, c, sse) for y ~ a + b_scaled * (t / t_max)^-c: a log grid over c, then two
    finer grids between the best point's neighbours (each narrows c by ~100x)."""
    logs = np.log(t / t.max())
    cs = C_GRID
    for _ in range(3):
        a, b, sse = _fit_grid(cs, logs, y)
        i = int(np.argmin(sse))
        best = (float(a[i]), float(b[i]), float(cs[i]), float(sse[i]))
        cs = np.linspace(cs[max(i - 1, 0)], cs[min(i + 1, len(cs) - 1)], 201)
    return best


def fit_power_law(t, y) -> PowerLaw | None:
    """bpb(t) = a + b t^-c over the points with t > 0; None with fewer than 3 such points."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = t > 0
    t, y = t[keep], y[keep]
    if len(np.unique(t)) < 3:
        return None
    a, bs, c, sse = _fit(t, y)
    t_max = float(t.max())
    b = bs * t_max ** c                         # back to unscaled t: b t^-c = bs (t / t_max)^-c
    t_last = float(t[-1])
    law = PowerLaw(a=a, b=b, c=c, rmse=math.sqrt(sse / len(t)), n=len(t), t_last=t_last, projected=0.0,
                   y_range=float(np.ptp(y)))
    law.projected = float(law(2 * t_last))
    if len(t) >= 5:
        outs = []
        for j in range(len(t)):
            m = np.arange(len(t)) != j
            aj, bsj, cj, _ = _fit(t[m], y[m])
            outs.append(aj + bsj * (2 * t_last / t[m].max()) ** -cj)
        law.projected_range = (float(min(outs)), float(max(outs)))
    return law


def trend(x, y, *, window: int = WINDOW, rel_tol: float = REL_TOL, unit: str = "tokens", steps=None,
          schedule: Schedule | None = None, use_schedule: bool = False) -> Trend:
    """The verdict on one curve; `unit` only words the sentence ("tokens" or "steps"). With `use_schedule`
    (the run's `schedule`, possibly None, and each point's `steps`) the schedule-aware law judges when it can."""
    steps = list(steps) if steps is not None else [None] * len(list(x))
    triples = sorted((float(a), float(b), s) for a, b, s in zip(x, y, steps) if a is not None and b is not None
                     and math.isfinite(b))
    xs, ys, ss = [p[0] for p in triples], [p[1] for p in triples], [p[2] for p in triples]
    if len(xs) < 2:
        what = "no val bpb has been measured" if not xs else "only one checkpoint has a val bpb"
        return Trend(xs, ys, Convergence.TOO_FEW_POINTS, None,
                     f"{what}: a trend needs at least 2 checkpoints and a power-law fit at least 3",
                     missing=["evaluate at least 3 checkpoints of the run (e.g. `gptlab eval RUN_DIR`)"])
    slope = recent_slope(xs, ys, window)
    fit = fit_power_law(xs, ys)
    missing = [] if fit else ["a power-law fit needs at least 3 checkpoints"]
    if slope is None:
        return Trend(xs, ys, Convergence.TOO_FEW_POINTS, None, "all checkpoints are at the same training step",
                     fit=fit, missing=missing)
    tol = rel_tol * ys[-1]
    drop, noise = slope.drop, slope.noise
    k = f"the last {slope.n} checkpoints"
    if abs(drop) <= tol:
        verdict, converged = Convergence.PLATEAU, True
        words = (f"plateau: val bpb moved {-drop:+.4f} over {k}, within the {tol:.4f} tolerance "
                 f"({rel_tol:.1%} of {ys[-1]:.4f}); more training at this size and schedule gains little")
    elif noise is not None and abs(drop) <= noise:
        verdict, converged = Convergence.UNCLEAR, None
        words = (f"unclear: val bpb moved {-drop:+.4f} over {k}, but the noise (2 s.e. = {noise:.4f}) is as "
                 f"large; more checkpoints would tell")
    elif drop > 0:
        verdict, converged = Convergence.STILL_DESCENDING, False
        words = f"still descending, not converged: val bpb fell {drop:.4f} over {k}"
        words += "" if noise is None else f" (noise 2 s.e. = {noise:.4f}); no plateau"
    else:
        verdict, converged = Convergence.RISING, False
        words = (f"rising: val bpb went up {-drop:.4f} over {k} — overfitting (repeated data) or an "
                 f"unstable learning rate")
    if noise is None:
        words += " (2 checkpoints: no noise estimate)"
        missing.append("a noise estimate for the slope needs at least 3 checkpoints")
    if fit is not None and verdict != Convergence.RISING:
        floor = f"a floor of {fit.a:.4f}" if fit.a > 0 else "no floor above 0"
        words += f"; the power-law fit expects {fit.projected:.4f} at 2x the {unit} ({-fit.gain:+.4f}) and {floor}"
        if fit.poor:
            words += (f" — a rough guide only: its residuals (rmse {fit.rmse:.4f}) exceed 10% of the curve's "
                      f"range, so the curve is not power-law shaped (a learning-rate schedule bends it)")
    out = Trend(xs, ys, verdict, converged, words, slope=slope, fit=fit, tol=tol, missing=missing)
    return _with_schedule(out, ss, schedule, rel_tol) if use_schedule else out


def _with_schedule(t: Trend, steps, schedule: Schedule | None, rel_tol: float) -> Trend:
    """The verdict of the schedule-aware law, or `t` with a note saying why the law could not judge."""
    law, reason = fit_schedule_law(steps, t.y, schedule)
    if law is None:
        t.law_note = f"the schedule-aware law was not fitted: {reason}; the verdict is the plain slope rule's"
        return t
    if t.verdict == Convergence.RISING:          # the law is monotone: it cannot overrule a rise
        t.law_note = "the schedule-aware law (monotone by construction) is not used on a rising curve"
        return t
    tol = t.tol if t.tol is not None else rel_tol * t.y[-1]
    lo, hi = law.intervals.get("gain", (law.gain, law.gain))
    if law.gain <= tol:
        verdict, converged = Convergence.PLATEAU, True
        head = (f"plateau: a run 2x as long with the same schedule would end only {law.gain:.4f} bpb lower "
                f"(95% interval {lo:+.4f} to {hi:+.4f}), within the {tol:.4f} tolerance")
    elif lo > tol:
        verdict, converged = Convergence.STILL_DESCENDING, False
        head = (f"still descending, not converged: a run 2x as long with the same schedule would end {law.gain:.4f} "
                f"bpb lower (95% interval {lo:.4f} to {hi:.4f}), beyond the {tol:.4f} tolerance")
    else:
        verdict, converged = Convergence.UNCLEAR, None
        head = (f"unclear: a run 2x as long with the same schedule would end {law.gain:.4f} bpb lower, but its "
                f"95% interval ({lo:+.4f} to {hi:+.4f}) reaches within the {tol:.4f} tolerance")
    c_lo, c_hi = law.intervals.get("constant", (law.constant, law.constant))
    words = (f"{head}; the schedule-aware law L = L0 + A*S1^-alpha - C*S2 (L0 {law.L0:.4f}, alpha "
             f"{law.alpha:.3f}, lambda {law.lam:g}, rmse {law.rmse:.4f} over {law.n} points) credits "
             f"{law.annealing_drop():.4f} bpb of this run's end to the warmdown's annealing and expects "
             f"{law.final:.4f} at its end, {law.longer:.4f} at 2x the steps, {law.constant:.4f} ({c_lo:.4f} to "
             f"{c_hi:.4f}) at 2x kept at the peak rate")
    if t.verdict != verdict:
        words += f" (the plain slope rule alone says {t.verdict})"
    t.verdict, t.converged, t.sentence, t.law = verdict, converged, words, law
    return t


def per_unit(slope: float, unit: str, x_max: float) -> tuple[float, str]:
    """The slope rescaled to the unit of the curve's scale: per 1K steps, or per 1K / 1M / 1B tokens."""
    if unit == "steps":
        return slope * 1e3, "per 1K steps"
    for scale, name in ((1e9, "1B"), (1e6, "1M")):
        if x_max >= scale:
            return slope * scale, f"per {name} tokens"
    return slope * 1e3, "per 1K tokens"
