"""How loss falls with model size on a model ladder: the scaling-law fit and its intervals.

    gptlab ladder ...                               (the ladder's "loss by size" fit and prediction)
    python -m pytest tests/test_scaling.py

`fit_loss_curve(x, y)` takes one point per rung of a ladder (one recipe trained at several sizes): `x` the
size (parameters N, or training compute C in FLOPs), `y` the rung's val bpb, and fits

    y = E + A * x^-alpha        E >= 0 (the irreducible term), A >= 0, alpha > 0,

by least squares on y (not on log y: the points' noise is additive in bpb). As in gptlab/stats/trend.py and
without scipy: for each alpha on a log grid (0.01 .. 4, then two finer grids around the best alpha) E and A
follow from linear least squares on the basis [1, (x / x_max)^-alpha] under the bounds E >= 0, A >= 0 (the
interior solution, or the better of the two edges E = 0 and A = 0), and the alpha with the smallest squared
error wins. Needs >= 3 rungs with x > 0.

Uncertainty. Two things make a rung's bpb differ from the law: evaluation noise (which documents were
scored) and rung scatter (seed, hyperparameter luck, the law being only approximately right). Each bootstrap
replicate r simulates a new ladder around the fitted curve and refits it:

    y*_r = yhat + (y_reps[r] - y) + tau_r * z_r,        z_r ~ N(0, 1) per rung

* `y_reps` (R, n) are bootstrap replicates of each rung's bpb from resampling its evaluation documents
  (gptlab.stats.bootstrap.replicates on each rung's Units); they carry the evaluation noise, rung by rung.
  Without them the evaluation noise is taken to be part of the residuals.
* tau_r is the rung scatter beyond evaluation noise: tau_r^2 = max(0, s_r^2 - mean over rungs of the
  variance of y_reps), with s_r^2 = SSE / chi2_d drawn per replicate (chi2_d a chi-square draw with d = n - 3
  residual degrees of freedom; the scaled-inverse-chi-square distribution of the residual variance). Drawing
  s^2 instead of plugging in SSE / d gives t-like tails: with 4 rungs (d = 1) the intervals are wide, as they
  must be when one degree of freedom estimates the scatter.
* With exactly 3 rungs the 3-parameter fit interpolates (SSE = 0, d = 0) and says nothing about scatter;
  then s^2 comes from the 2-parameter law without a floor (E = 0, d = 1): the points' curvature, which is
  what pins E, is treated as possible scatter, so E's interval honestly spans most of [0, min y].

Why not resample rungs: with 4 rungs a bootstrap over rungs mostly draws 2-3 distinct points (a 3-parameter
fit is then undetermined), and a leave-one-rung-out jackknife on 4 rungs gives 4 interpolating fits whose
spread understates the error. Intervals are the 95% percentile intervals of the replicates' refits.

`LossFit.predict(x)` is the curve (the expected bpb at size x) with its interval; `x_for(y)` inverts it,
x = (A / (y - E))^(1/alpha), unreachable when y <= E (infinite in replicates where it is unreachable).
`leave_one_out(x, y)` refits without the largest rung and checks the held-out bpb against the predictive
interval (curve + rung scatter + the held rung's evaluation noise). Bootstraps are seeded by (seed, key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gptlab.errors import GptlabError
from gptlab.stats.bootstrap import CONFIDENCE, Interval, from_replicates, rng_for

RESAMPLES = 1000
ALPHA_GRID = np.geomspace(0.01, 4.0, 240)
_CHUNK = 128                     # replicates fitted at once: (chunk, grid, rungs) arrays stay a few MB


@dataclass(frozen=True)
class Crossing:
    """Where a fitted curve reaches a level: the point estimate with its replicate interval. `value`, `low`
    and `high` may be infinite (never reached: +inf for a size, -inf for a bpb that falling loss never
    reaches); `share_reachable` is the share of replicates in which it is reached."""
    value: float
    low: float
    high: float
    reachable: bool              # the point fit reaches the level
    share_reachable: float
    confidence: float = CONFIDENCE

    @property
    def bounded(self) -> bool:
        return self.reachable and math.isfinite(self.low) and math.isfinite(self.high)


@dataclass
class LossFit:
    """bpb = E + A * x^-alpha fitted over a ladder's rungs, with bootstrap replicate parameters."""
    E: float
    A: float
    alpha: float
    n: int                       # rungs fitted
    x_min: float
    x_max: float
    rmse: float                  # root mean squared residual over the rungs
    x: np.ndarray                # the rungs' sizes, ascending
    y: np.ndarray                # their bpb
    reps_E: np.ndarray           # (R,) one refit per bootstrap replicate
    reps_A: np.ndarray
    reps_alpha: np.ndarray
    reps_tau: np.ndarray         # (R,) the rung scatter beyond evaluation noise each replicate simulated
    symbol: str = "N"            # how `form` names the size (N parameters, C compute)

    def __call__(self, x):
        return _curve(self.E, self.A, self.alpha, x)

    def curve_reps(self, x) -> np.ndarray:
        """Each replicate's curve at x: (R,) for a scalar x."""
        return _curve(self.reps_E, self.reps_A, self.reps_alpha, x)

    def predict(self, x: float) -> Interval:
        """The expected bpb at size x with its 95% interval."""
        return from_replicates(float(self(x)), self.curve_reps(float(x)), self.n)

    def x_for(self, y: float) -> Crossing:
        """The size at which the curve comes down to bpb y; unreachable when y <= E."""
        value = float(curve_inverse(self.E, self.A, self.alpha, y))
        reps = curve_inverse(self.reps_E, self.reps_A, self.reps_alpha, y)
        low, high = quantiles(reps)
        return Crossing(value, low, high, math.isfinite(value), float(np.mean(np.isfinite(reps))))

    @property
    def interval_E(self) -> Interval:
        return from_replicates(self.E, self.reps_E, self.n)

    @property
    def interval_A(self) -> Interval:
        return from_replicates(self.A, self.reps_A, self.n)

    @property
    def interval_alpha(self) -> Interval:
        return from_replicates(self.alpha, self.reps_alpha, self.n)

    @property
    def form(self) -> str:
        """The fitted law in one line, e.g. "bpb = 1.21 + 35.2 · N^-0.31"."""
        return f"bpb = {self.E:.3g} + {self.A:.3g} · {self.symbol}^-{self.alpha:.3g}"


@dataclass
class LooCheck:
    """A fit without the largest rung, judged on that rung: did it predict the measured value?"""
    held_x: float                # the held-out rung's size (loss) or bpb (capability)
    actual: float                # what the held-out rung measured
    predicted: Interval          # the fit's prediction there: value + predictive 95% interval
    inside: bool                 # actual within the predictive interval
    fit: object = field(repr=False, default=None)   # the fit on the other rungs (LossFit / CapabilityFit)

    @property
    def error(self) -> float:
        """predicted - actual."""
        return self.predicted.value - self.actual

    @property
    def rel_error(self) -> float:
        return self.error / self.actual if self.actual else math.inf


def quantiles(reps: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of replicates that may be infinite (never reached): no interpolation, so an
    infinite replicate in a tail makes that bound infinite; NaN replicates are dropped."""
    reps = np.asarray(reps, dtype=float)
    reps = reps[~np.isnan(reps)]
    if not reps.size:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(reps, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def points(name: str, *columns, need: int = 3) -> list[np.ndarray]:
    """Columns of per-rung numbers as float arrays, checked: equal lengths, finite, at least `need` rungs."""
    arrays = [np.asarray(c, dtype=float).reshape(-1) for c in columns]
    if len({len(a) for a in arrays}) != 1:
        raise GptlabError(f"{name}: the inputs have different lengths ({', '.join(str(len(a)) for a in arrays)})")
    if any(not np.all(np.isfinite(a)) for a in arrays):
        raise GptlabError(f"{name}: the inputs contain NaN or infinite values")
    if len(arrays[0]) < need:
        raise GptlabError(f"{name}: {len(arrays[0])} rung(s) given; a fit needs at least {need} rungs")
    return arrays


def replicate_rows(name: str, reps, n: int, resamples: int) -> np.ndarray | None:
    """Caller-given replicates (R, n) as `resamples` rows (cycled when R differs); None when not given."""
    if reps is None:
        return None
    reps = np.asarray(reps, dtype=float)
    if reps.ndim != 2 or reps.shape[1] != n or not len(reps):
        raise GptlabError(f"{name}: replicates must be an array (R, {n}), one column per rung; got {reps.shape}")
    if not np.all(np.isfinite(reps)):
        raise GptlabError(f"{name}: the replicates contain NaN or infinite values")
    return reps[np.arange(resamples) % len(reps)]


def _curve(E, A, alpha, x):
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore", divide="ignore"):
        return E + A * np.exp(-alpha * np.log(x))


def curve_inverse(E, A, alpha, y):
    """x with E + A x^-alpha = y, +inf where y <= E (or A = 0)."""
    E, A, alpha = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (E, A, alpha)))
    gap = y - E
    ok = (gap > 0) & (A > 0)
    out = np.full(E.shape, math.inf)
    with np.errstate(over="ignore"):
        out[ok] = np.exp((np.log(A[ok]) - np.log(gap[ok])) / alpha[ok])
    return out


def _solve(cs: np.ndarray, logs: np.ndarray, Y: np.ndarray, free_E: bool):
    """For each replicate r and each alpha cs[r, j]: least squares Y[r] ~ e + b z, z = exp(-alpha logs), under
    e >= 0, b >= 0 (e = 0 when not `free_E`). Returns (e, b, sse), each (R, C)."""
    z = np.exp(-cs[..., None] * logs)                              # (R, C, n)
    zy = np.einsum("rcn,rn->rc", z, Y)
    zz = np.einsum("rcn,rcn->rc", z, z)
    cands = [(np.zeros_like(zy), np.maximum(zy / zz, 0.0))]        # edge e = 0
    if free_E:
        ybar = Y.mean(axis=1)[:, None]
        zbar = z.mean(axis=2)
        zm = z - zbar[..., None]
        szz = np.einsum("rcn,rcn->rc", zm, zm)
        b = np.divide(np.einsum("rcn,rn->rc", zm, Y - ybar), szz, out=np.zeros_like(szz), where=szz > 0)
        e = ybar - b * zbar
        cands.append((np.broadcast_to(np.maximum(ybar, 0.0), zy.shape), np.zeros_like(zy)))   # edge b = 0
        cands.append((e, b))                                                                   # interior
    best = None
    for k, (e, b) in enumerate(cands):
        r = Y[:, None, :] - e[..., None] - b[..., None] * z
        sse = np.einsum("rcn,rcn->rc", r, r)
        if k == 2:
            sse = np.where((e >= 0) & (b >= 0), sse, np.inf)
        if best is None:
            best = [e.copy(), b.copy(), sse]
        else:
            better = sse < best[2]
            best[0][better], best[1][better], best[2] = e[better], b[better], np.where(better, sse, best[2])
    return best


def _fit_many(logs: np.ndarray, Y: np.ndarray, free_E: bool = True):
    """Best (E, B, alpha, sse), each (R,), for Y[r] ~ E + B (x / x_max)^-alpha: the log grid over alpha,
    then two finer grids between the best alpha's neighbours, replicate by replicate."""
    out = [np.empty(len(Y)) for _ in range(4)]
    for start in range(0, len(Y), _CHUNK):
        y = Y[start:start + _CHUNK]
        rows = np.arange(len(y))
        cs = np.broadcast_to(ALPHA_GRID, (len(y), len(ALPHA_GRID)))
        for _ in range(3):
            e, b, sse = _solve(cs, logs, y, free_E)
            i = np.argmin(sse, axis=1)
            best = (e[rows, i], b[rows, i], cs[rows, i], sse[rows, i])
            lo, hi = cs[rows, np.maximum(i - 1, 0)], cs[rows, np.minimum(i + 1, cs.shape[1] - 1)]
            cs = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 201)
        for o, v in zip(out, best):
            o[start:start + len(y)] = v
    return out


def fit_loss_curve(x, y, *, y_reps=None, resamples: int = RESAMPLES, seed: int = 0, key: str = "",
                   symbol: str = "N") -> LossFit:
    """bpb = E + A x^-alpha over a ladder's rungs (x > 0, >= 3 rungs), with bootstrap replicates."""
    x, y = points("loss fit", x, y)
    if np.any(x <= 0):
        raise GptlabError("loss fit: every rung's size must be > 0 (parameters or FLOPs)")
    if len(np.unique(x)) < 3:
        raise GptlabError("loss fit: a fit needs at least 3 rungs of different sizes")
    if resamples < 1:
        raise GptlabError("loss fit: resamples must be >= 1")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    reps = replicate_rows("loss fit y_reps", y_reps, len(x), resamples)
    if reps is not None:
        reps = reps[:, order]
    x_max = float(x.max())
    logs = np.log(x / x_max)
    E, B, alpha, sse = (float(v[0]) for v in _fit_many(logs, y[None, :]))
    yhat = E + B * np.exp(-alpha * logs)

    rng = rng_for(seed, "loss fit " + key)
    dof, scatter = len(x) - 3, sse
    if dof < 1:              # 3 rungs: the fit interpolates; the scatter comes from the law without a floor
        scatter, dof = float(_fit_many(logs, y[None, :], free_E=False)[3][0]), 1
    s2 = scatter / rng.chisquare(dof, size=resamples)
    eval_var = 0.0 if reps is None else float(np.mean(np.var(reps, axis=0)))
    tau = np.sqrt(np.maximum(s2 - eval_var, 0.0))
    sim = yhat + tau[:, None] * rng.standard_normal((resamples, len(x)))
    if reps is not None:
        sim += reps - y
    rE, rB, ralpha, _ = _fit_many(logs, sim)
    return LossFit(E=E, A=B * x_max ** alpha, alpha=alpha, n=len(x), x_min=float(x.min()), x_max=x_max,
                   rmse=math.sqrt(sse / len(x)), x=x, y=y, reps_E=rE,
                   reps_A=rB * np.exp(ralpha * math.log(x_max)), reps_alpha=ralpha, reps_tau=tau, symbol=symbol)


def leave_one_out(x, y, *, y_reps=None, resamples: int = RESAMPLES, seed: int = 0, key: str = "",
                  symbol: str = "N") -> LooCheck:
    """Fit without the largest rung and predict its bpb. The interval is predictive: the refit curves plus
    each replicate's rung scatter and the held rung's evaluation noise (its column of y_reps)."""
    x, y = points("leave-one-out", x, y, need=4)
    reps = replicate_rows("leave-one-out y_reps", y_reps, len(x), resamples)
    h = int(np.argmax(x))
    keep = np.arange(len(x)) != h
    fit = fit_loss_curve(x[keep], y[keep], y_reps=None if reps is None else reps[:, keep],
                         resamples=resamples, seed=seed, key=key, symbol=symbol)
    rng = rng_for(seed, "leave-one-out " + key)
    pred = fit.curve_reps(x[h]) + fit.reps_tau * rng.standard_normal(resamples)
    if reps is not None:
        pred += reps[:, h] - y[h]
    interval = from_replicates(float(fit(x[h])), pred, fit.n)
    return LooCheck(held_x=float(x[h]), actual=float(y[h]), predicted=interval,
                    inside=interval.contains(float(y[h])), fit=fit)
