"""How a capability follows loss on a model ladder, and at what size it crosses a threshold.

    gptlab ladder ...                               (the ladder's capability fits and predictions)
    python -m pytest tests/test_scaling.py

`fit_capability(bpb, k, n)` takes, per rung, its val bpb and k "successes" out of n samples (a failure mode's
failing samples, or per-probe pass counts for pass@k), and fits a logistic in bpb, as the ladder literature
fits a sigmoid of loss (OLMo's model ladder: Bhagia et al. 2024, "Establishing task scaling laws via
compute-efficient model ladders"):

    rate(bpb) = 1 / (1 + exp(-(a + b * bpb)))

by binomial maximum likelihood (Newton's method with step halving, in numpy; bpb centred inside the fit).
Separation guard: a rung at k = 0 or k = n (which lets the likelihood run off to an infinite slope) counts
as k + 0.5 of n + 1 (half a pseudo-count each way); other rungs enter as measured. Needs >= 3 rungs. n is a
whole number of samples; k may be fractional (e.g. a sum of per-probe pass@k estimates).

Uncertainty: each bootstrap replicate redraws every rung's k from Binomial(n, k / n) (resampling the rung's
samples with replacement; the guarded rate at a k = 0 or k = n rung, so its count can move) and, when
`bpb_reps` (R, n) is given, takes replicate r's bpb as the covariate (the documents' evaluation noise), then
refits. Intervals are 95% percentile intervals. They assume rungs scatter around the logistic only by
sampling noise: `leave_one_out_capability` is the check that they do.

`predict_crossing(loss_fit, cap_fit, threshold)` chains size -> bpb -> rate. With s = +1 for `below` (a
failure rate falling under the threshold) and -1 for above (a pass rate rising over it), the rate is past the
threshold where s (a + b bpb) < s logit(threshold), i.e. below the bpb L* = (logit(threshold) - a) / b when
s b > 0; the size is x* = (A / (L* - E))^(1/alpha), infinite when L* <= E or s b <= 0 (growing the model
moves the rate the wrong way). Replicate i of the loss fit is paired with replicate i of the capability fit
(pass the same bpb replicates to both fits and the pairing keeps their shared evaluation noise). Status
(gptlab.verdicts.Extrapolation), checked in this order:

    not reachable          > half the replicates never cross (L* <= E, or the slope has the wrong sign);
    measured               the point fit crosses at or below the largest rung: x = the smallest rung past it;
    predicted              x* <= max_factor * x_max and the interval's upper end too;
    beyond the ladder's range   otherwise (too far out, or an unbounded interval).

`predict_at(loss_fit, cap_fit, x)` is the rate at size x with its interval (e.g. at 4 * x_max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gptlab.errors import GptlabError
from gptlab.stats.bootstrap import Interval, from_replicates, rng_for
from gptlab.stats.scaling import (RESAMPLES, Crossing, LooCheck, LossFit, points, quantiles, replicate_rows,
                                  curve_inverse)
from gptlab.verdicts import Extrapolation

_ITERATIONS = 60


@dataclass
class CapabilityFit:
    """rate(bpb) = sigmoid(a + b * bpb) fitted over a ladder's rungs, with bootstrap replicate parameters."""
    a: float
    b: float
    n: int                       # rungs fitted
    bpb_min: float
    bpb_max: float
    bpb: np.ndarray              # the rungs' bpb
    rate: np.ndarray             # their measured rates k / n
    reps_a: np.ndarray           # (R,) one refit per replicate
    reps_b: np.ndarray

    def __call__(self, bpb):
        return _sigmoid(self.a + self.b * np.asarray(bpb, dtype=float))

    def rate_reps(self, bpb) -> np.ndarray:
        """Each replicate's rate at bpb: (R,) for a scalar bpb."""
        return _sigmoid(self.reps_a + self.reps_b * np.asarray(bpb, dtype=float))

    def predict(self, bpb: float) -> Interval:
        return from_replicates(float(self(bpb)), self.rate_reps(float(bpb)), self.n)

    @property
    def interval_b(self) -> Interval:
        return from_replicates(self.b, self.reps_b, self.n)

    def bpb_for(self, rate: float) -> Crossing:
        """The bpb at which the curve reaches `rate`. Replicates whose slope is 0 or of the other sign than the
        fit's never reach it by falling bpb (-inf), so a slope interval that includes 0 leaves it unbounded."""
        if not 0.0 < rate < 1.0:
            raise GptlabError(f"capability: a rate to reach must lie strictly between 0 and 1, got {rate}")
        t = math.log(rate / (1.0 - rate))
        value = (t - self.a) / self.b if self.b != 0 else -math.inf
        ok = np.sign(self.reps_b) == np.sign(self.b)
        ok &= self.reps_b != 0
        reps = np.full(len(self.reps_b), -math.inf)
        reps[ok] = (t - self.reps_a[ok]) / self.reps_b[ok]
        low, high = quantiles(reps)
        return Crossing(float(value), low, high, math.isfinite(value), float(ok.mean()))


@dataclass
class Prediction:
    """The size at which a rate crosses a threshold, with its interval and what the ladder can say of it."""
    x: float
    lo: float
    hi: float
    status: Extrapolation
    threshold: float = math.nan
    below: bool = True
    bpb: float = math.nan        # the bpb the capability fit needs there
    share_reachable: float = math.nan   # replicates that cross at any size


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def _guard(K: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half a pseudo-count each way at rungs with k = 0 or k = n: k + 0.5 of n + 1."""
    edge = (K <= 0) | (K >= N)
    return np.where(edge, K + 0.5, K), np.where(edge, N + 1.0, N)


def _logistic_many(X: np.ndarray, K: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binomial maximum likelihood of logit(p) = a + b X per row: (a, b), each (R,). K guarded (0 < K < N)."""
    def loglik(a, b):
        eta = a[:, None] + b[:, None] * X
        return np.sum(K * eta - N * np.logaddexp(0.0, eta), axis=1)

    # start from weighted least squares on the empirical logits
    p = K / N
    w = N * p * (1 - p)
    lg = np.log(p / (1 - p))
    sw = w.sum(1)
    xm = (w * X).sum(1) / sw
    ym = (w * lg).sum(1) / sw
    sxx = (w * (X - xm[:, None]) ** 2).sum(1)
    b = np.divide((w * (X - xm[:, None]) * (lg - ym[:, None])).sum(1), sxx, out=np.zeros_like(sxx), where=sxx > 0)
    a = ym - b * xm
    ll = loglik(a, b)
    for _ in range(_ITERATIONS):
        q = _sigmoid(a[:, None] + b[:, None] * X)
        r = K - N * q
        W = N * q * (1 - q)
        g0, g1 = r.sum(1), (r * X).sum(1)
        h00, h01, h11 = W.sum(1), (W * X).sum(1), (W * X * X).sum(1)
        det = h00 * h11 - h01 * h01
        safe = det > 1e-300
        da = np.divide(h11 * g0 - h01 * g1, det, out=np.zeros_like(det), where=safe)
        db = np.divide(h00 * g1 - h01 * g0, det, out=np.zeros_like(det), where=safe)
        step = np.ones_like(a)
        for _ in range(30):                                     # halve the step until the likelihood rises
            na, nb = a + step * da, b + step * db
            nll = loglik(na, nb)
            worse = ~(nll >= ll - 1e-12)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        na, nb = np.where(worse, a, na), np.where(worse, b, nb)
        done = np.max(np.abs(na - a) + np.abs(nb - b)) < 1e-10
        a, b, ll = na, nb, np.where(worse, ll, nll)
        if done:
            break
    return a, b


def _counts(name: str, bpb, k, n, need: int = 3):
    bpb, k, n = points(name, bpb, k, n, need=need)
    if np.any(n <= 0) or np.any(k < 0) or np.any(k > n):
        raise GptlabError(f"{name}: every rung needs 0 <= k <= n and n > 0 samples")
    if np.any(n != np.round(n)):
        raise GptlabError(f"{name}: n must be a whole number of samples per rung")
    if np.ptp(bpb) == 0:
        raise GptlabError(f"{name}: every rung has the same bpb; a fit needs at least 2 different values")
    return bpb, k, n


def fit_capability(bpb, k, n, *, bpb_reps=None, resamples: int = RESAMPLES, seed: int = 0,
                   key: str = "") -> CapabilityFit:
    """rate = sigmoid(a + b bpb) from k of n per rung (>= 3 rungs), with bootstrap replicates."""
    bpb, k, n = _counts("capability fit", bpb, k, n)
    if resamples < 1:
        raise GptlabError("capability fit: resamples must be >= 1")
    reps = replicate_rows("capability fit bpb_reps", bpb_reps, len(bpb), resamples)
    centre = float(bpb.mean())
    Kg, Ng = _guard(k, n)
    a, b = (float(v[0]) for v in _logistic_many((bpb - centre)[None, :], Kg[None, :], Ng[None, :]))
    rng = rng_for(seed, "capability fit " + key)
    Kr = rng.binomial(n.astype(np.int64), Kg / Ng, size=(resamples, len(n))).astype(float)
    X = (bpb if reps is None else reps) - centre
    Kr, Nr = _guard(Kr, np.broadcast_to(n, Kr.shape))
    ra, rb = _logistic_many(np.broadcast_to(X, Kr.shape), Kr, Nr)
    return CapabilityFit(a=a - b * centre, b=b, n=len(bpb), bpb_min=float(bpb.min()), bpb_max=float(bpb.max()),
                         bpb=bpb, rate=k / n, reps_a=ra - rb * centre, reps_b=rb)


def _paired(loss_fit: LossFit, cap_fit: CapabilityFit):
    m = min(len(loss_fit.reps_E), len(cap_fit.reps_a))
    return m, (loss_fit.reps_E[:m], loss_fit.reps_A[:m], loss_fit.reps_alpha[:m]), (cap_fit.reps_a[:m],
                                                                                      cap_fit.reps_b[:m])


def _crossing_sizes(E, A, alpha, a, b, t: float, s: float):
    """Per fit: the bpb L* past which the rate is past the threshold, and the size x* reaching it (inf when
    never: L* <= E, or s b <= 0)."""
    a, b = s * np.asarray(a, dtype=float), s * np.asarray(b, dtype=float)
    right = b > 0
    L = np.where(right, (s * t - a) / np.where(right, b, 1.0), -np.inf)
    x = np.where(right, curve_inverse(E, A, alpha, L), np.inf)
    return L, x


def predict_crossing(loss_fit: LossFit, cap_fit: CapabilityFit, threshold: float, *, below: bool = True,
                     max_factor: float = 10.0) -> Prediction:
    """The size at which the rate goes below (or above) `threshold`, through size -> bpb -> rate."""
    if not 0.0 < threshold < 1.0:
        raise GptlabError(f"crossing: the threshold must lie strictly between 0 and 1, got {threshold}")
    t = math.log(threshold / (1.0 - threshold))
    s = 1.0 if below else -1.0
    L, x = (float(v) for v in _crossing_sizes(loss_fit.E, loss_fit.A, loss_fit.alpha, cap_fit.a, cap_fit.b, t, s))
    _, loss_reps, cap_reps = _paired(loss_fit, cap_fit)
    _, xs = _crossing_sizes(*loss_reps, *cap_reps, t, s)
    share = float(np.mean(np.isfinite(xs)))
    lo, hi = quantiles(xs)
    limit = max_factor * loss_fit.x_max
    if share < 0.5:
        status = Extrapolation.NOT_REACHABLE
    elif x <= loss_fit.x_max:
        status = Extrapolation.MEASURED
        x = float(loss_fit.x[loss_fit.x >= x].min())
    elif x <= limit and hi <= limit:
        status = Extrapolation.PREDICTED
    else:
        status = Extrapolation.BEYOND_RANGE
    return Prediction(x=x, lo=lo, hi=hi, status=status, threshold=threshold, below=below, bpb=L,
                      share_reachable=share)


def rate_reps_at(loss_fit: LossFit, cap_fit: CapabilityFit, x: float) -> np.ndarray:
    """Each paired replicate's rate at size x: size -> bpb -> rate."""
    if not x > 0:
        raise GptlabError(f"predict at a size: the size must be > 0, got {x}")
    _, (E, A, alpha), (a, b) = _paired(loss_fit, cap_fit)
    return _sigmoid(a + b * (E + A * np.exp(-alpha * math.log(x))))


def predict_at(loss_fit: LossFit, cap_fit: CapabilityFit, x: float) -> Interval:
    """The rate at size x (e.g. 4 * x_max) with its interval, pairing the two fits' replicates."""
    reps = rate_reps_at(loss_fit, cap_fit, x)
    return from_replicates(float(cap_fit(loss_fit(x))), reps, loss_fit.n)


def leave_one_out_capability(bpb, k, n, *, bpb_reps=None, resamples: int = RESAMPLES, seed: int = 0,
                             key: str = "") -> LooCheck:
    """Fit without the rung of lowest bpb (the ladder's largest model) and predict its rate. The interval is
    predictive: each replicate's rate at that rung's bpb (its bpb_reps column when given), then a binomial
    draw of that rung's n samples."""
    bpb, k, n = _counts("capability leave-one-out", bpb, k, n, need=4)
    reps = replicate_rows("capability leave-one-out bpb_reps", bpb_reps, len(bpb), resamples)
    h = int(np.argmin(bpb))
    keep = np.arange(len(bpb)) != h
    fit = fit_capability(bpb[keep], k[keep], n[keep], bpb_reps=None if reps is None else reps[:, keep],
                         resamples=resamples, seed=seed, key=key)
    at = bpb[h] if reps is None else reps[:, h]
    p = _sigmoid(fit.reps_a + fit.reps_b * at)
    rng = rng_for(seed, "capability leave-one-out " + key)
    pred = rng.binomial(int(n[h]), p) / n[h]
    interval = from_replicates(float(fit(bpb[h])), pred, fit.n)
    actual = float(k[h] / n[h])
    return LooCheck(held_x=float(bpb[h]), actual=actual, predicted=interval, inside=interval.contains(actual),
                    fit=fit)
