"""Model-ladder statistics on synthetic ladders whose law, logistic and crossings are known."""

import math

import numpy as np
import pytest

from gptlab.errors import GptlabError
from gptlab.stats.capability import (fit_capability, leave_one_out_capability, predict_at, predict_crossing)
from gptlab.stats.scaling import fit_loss_curve, leave_one_out
from gptlab.verdicts import Extrapolation

SIZES = np.geomspace(1e6, 3e8, 6)            # six rungs, parameters
E0, A0, ALPHA0 = 0.9, 60.0, 0.3
A_CAP, B_CAP = -12.0, 10.0                   # a failure rate that falls with bpb: 0.998 .. 0.22 over the ladder


def law(x, E=E0, A=A0, alpha=ALPHA0):
    return E + A * np.asarray(x, dtype=float) ** -alpha


def logistic(bpb, a=A_CAP, b=B_CAP):
    return 1.0 / (1.0 + np.exp(-(a + b * np.asarray(bpb, dtype=float))))


def true_size(threshold):
    """The size at which the true failure rate falls to `threshold` (inf below E)."""
    L = (math.log(threshold / (1 - threshold)) - A_CAP) / B_CAP
    return (A0 / (L - E0)) ** (1 / ALPHA0) if L > E0 else math.inf


@pytest.mark.parametrize("E,A,alpha,x", [(0.9, 60.0, 0.3, SIZES), (0.0, 8.0, 0.12, SIZES),
                                         (1.3, 4e4, 0.5, np.geomspace(1e17, 1e20, 5))])   # x in FLOPs
def test_noise_free_law_is_recovered(E, A, alpha, x):
    fit = fit_loss_curve(x, law(x, E, A, alpha), resamples=50)
    assert fit.E == pytest.approx(E, abs=1e-3)
    assert fit.alpha == pytest.approx(alpha, rel=1e-3)
    assert fit.A == pytest.approx(A, rel=1e-2)
    assert fit.rmse < 1e-5 and fit.n == len(x) and fit.x_max == x.max()
    far = 10 * x.max()
    assert fit.predict(far).value == pytest.approx(law(far, E, A, alpha), abs=1e-4)
    assert fit.interval_E.high - fit.interval_E.low < 1e-3      # no noise: nothing to be unsure of
    assert fit.form.startswith("bpb = ") and "N^-" in fit.form


def test_x_for_inverts_the_curve_and_is_unreachable_below_E():
    fit = fit_loss_curve(SIZES, law(SIZES), resamples=100)
    target = float(law(2e9))
    c = fit.x_for(target)
    assert c.reachable and c.bounded and c.value == pytest.approx(2e9, rel=1e-2) and c.low <= 2e9 * 1.01
    below = fit.x_for(E0 - 0.01)
    assert not below.reachable and below.value == math.inf and below.high == math.inf
    assert below.share_reachable == 0.0


def test_noisy_ladders_cover_the_true_E_and_alpha():
    """40 seeded ladders with evaluation noise (sd 0.01 bpb) and its bootstrap replicates: the 95% intervals
    hold the true E and alpha in most of them (and are not trivially wide)."""
    hits_E = hits_alpha = 0
    widths = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = law(SIZES) + rng.normal(0, 0.01, len(SIZES))
        reps = y + rng.normal(0, 0.01, (150, len(SIZES)))
        fit = fit_loss_curve(SIZES, y, y_reps=reps, resamples=150, seed=seed)
        hits_E += fit.interval_E.contains(E0)
        hits_alpha += fit.interval_alpha.contains(ALPHA0)
        widths.append(fit.interval_alpha.high - fit.interval_alpha.low)
    assert hits_E >= 32 and hits_alpha >= 32
    assert np.median(widths) < 0.3                              # alpha = 0.3 is still told apart from 0


def test_three_rungs_interpolate_but_the_intervals_stay_wide():
    x = SIZES[[0, 2, 5]]
    fit = fit_loss_curve(x, law(x), resamples=200)
    assert fit.E == pytest.approx(E0, abs=1e-3)                 # exact points: the fit goes through them
    many = fit_loss_curve(SIZES, law(SIZES) + np.array([3, -2, 1, -3, 2, -1]) * 1e-3, resamples=200)
    assert fit.interval_E.high - fit.interval_E.low > 0.1
    assert fit.interval_E.high - fit.interval_E.low > 3 * (many.interval_E.high - many.interval_E.low)
    assert fit.predict(3e9).high - fit.predict(3e9).low > 0.05


def test_eval_replicates_widen_the_intervals():
    y = law(SIZES) + np.array([3, -2, 1, -3, 2, -1]) * 1e-3
    rng = np.random.default_rng(1)
    plain = fit_loss_curve(SIZES, y, resamples=200)
    noisy = fit_loss_curve(SIZES, y, y_reps=y + rng.normal(0, 0.03, (200, 6)), resamples=200)
    assert noisy.predict(3e9).high - noisy.predict(3e9).low > plain.predict(3e9).high - plain.predict(3e9).low


def test_logistic_is_recovered_from_binomial_draws():
    bpb = law(SIZES)
    n = np.full(6, 400)
    hits = 0
    for seed in range(20):
        k = np.random.default_rng(seed).binomial(n, logistic(bpb))
        fit = fit_capability(bpb, k, n, resamples=200, seed=seed)
        assert fit.b == pytest.approx(B_CAP, rel=0.25) and fit.a == pytest.approx(A_CAP, rel=0.25)
        hits += fit.predict(1.1).contains(float(logistic(1.1)))
        assert fit.interval_b.low > 0
    assert hits >= 16
    exact = fit_capability(bpb, n * logistic(bpb), n, resamples=20)      # expected counts as if observed
    assert exact.a == pytest.approx(A_CAP, rel=1e-6) and exact.b == pytest.approx(B_CAP, rel=1e-6)


def test_separated_counts_give_a_finite_fit():
    fit = fit_capability([1.4, 1.3, 1.2, 1.1], [20, 20, 0, 0], [20, 20, 20, 20], resamples=100)
    assert math.isfinite(fit.a) and math.isfinite(fit.b) and fit.b > 0
    assert 0.5 < fit(1.4) < 1 and 0 < fit(1.1) < 0.5


def test_bpb_for_is_unbounded_when_the_slope_may_be_zero():
    bpb = np.array([1.4, 1.3, 1.2, 1.1])
    steep = fit_capability(bpb, [90, 70, 30, 10], [100] * 4, resamples=200)
    c = steep.bpb_for(0.5)
    assert c.bounded and c.low < c.value < c.high and c.value == pytest.approx(1.25, abs=0.02)
    flat = fit_capability(bpb, [5, 4, 6, 5], [10] * 4, resamples=200)
    assert flat.interval_b.contains(0.0) and not flat.bpb_for(0.2).bounded


@pytest.fixture(scope="module")
def ladder():
    bpb = law(SIZES)
    n = np.full(6, 2000)
    loss = fit_loss_curve(SIZES, bpb, resamples=300)
    cap = fit_capability(bpb, np.round(n * logistic(bpb)), n, resamples=300)
    return loss, cap


def test_crossing_inside_the_ladder_is_measured(ladder):
    p = predict_crossing(*ladder, 0.5)
    assert p.status == Extrapolation.MEASURED
    assert p.x in SIZES and p.x >= true_size(0.5) and p.x == SIZES[SIZES >= p.lo].min()
    assert p.lo <= true_size(0.5) <= p.hi


def test_crossing_past_the_largest_rung_is_predicted(ladder):
    p = predict_crossing(*ladder, 0.2)
    assert SIZES[-1] < true_size(0.2) < 10 * SIZES[-1]
    assert p.status == Extrapolation.PREDICTED and p.lo <= true_size(0.2) <= p.hi
    assert p.x == pytest.approx(true_size(0.2), rel=0.2)


def test_crossing_far_out_or_below_E(ladder):
    far = predict_crossing(*ladder, 0.1)
    assert true_size(0.1) > 10 * SIZES[-1] and far.status == Extrapolation.BEYOND_RANGE
    assert predict_crossing(*ladder, 0.1, max_factor=1e3).status == Extrapolation.PREDICTED
    never = predict_crossing(*ladder, 0.01)
    assert true_size(0.01) == math.inf and never.status == Extrapolation.NOT_REACHABLE
    assert never.share_reachable < 0.5


def test_crossing_above_for_a_pass_rate(ladder):
    loss, _ = ladder
    bpb, n = law(SIZES), np.full(6, 2000)
    passing = fit_capability(bpb, np.round(n * (1 - logistic(bpb))), n, resamples=300)   # pass = 1 - fail
    up = predict_crossing(loss, passing, 0.8, below=False)
    assert up.status == Extrapolation.PREDICTED and up.lo <= true_size(0.2) <= up.hi
    assert predict_crossing(loss, passing, 0.8, below=True).status == Extrapolation.NOT_REACHABLE


def test_predict_at_four_times_the_largest_rung(ladder):
    at = predict_at(*ladder, 4 * SIZES[-1])
    truth = float(logistic(law(4 * SIZES[-1])))
    assert at.contains(truth) and at.value == pytest.approx(truth, abs=0.01)
    assert at.value < float(logistic(law(SIZES[-1])))


def test_leave_one_out_on_an_exact_law_and_on_a_kink():
    exact = leave_one_out(SIZES, law(SIZES), resamples=200)
    assert exact.held_x == SIZES[-1] and abs(exact.error) < 1e-4 and exact.inside
    kinked = law(SIZES)
    kinked[-1] += 0.1                                        # the largest rung stops improving
    kink = leave_one_out(SIZES, kinked, resamples=200)
    assert kink.error < -0.05 and abs(kink.rel_error) > 0.05 and not kink.inside
    assert abs(kink.error) > 100 * abs(exact.error)


def test_leave_one_out_capability():
    bpb, n = law(SIZES), np.full(6, 2000)
    good = leave_one_out_capability(bpb, np.round(n * logistic(bpb)), n, resamples=200)
    assert good.held_x == bpb.min() and good.inside and abs(good.error) < 0.02
    k = np.round(n * logistic(bpb))
    k[-1] = n[-1] * 0.9                                     # the largest rung fails far more than the trend says
    bad = leave_one_out_capability(bpb, k, n, resamples=200)
    assert not bad.inside and bad.error < -0.5


@pytest.mark.parametrize("call,words", [
    (lambda: fit_loss_curve([1e6, 1e7], [2.0, 1.8]), "at least 3 rungs"),
    (lambda: fit_loss_curve([-1e6, 1e7, 1e8], [2.0, 1.8, 1.7]), "> 0"),
    (lambda: fit_loss_curve([1e6, 1e7, 1e8], [2.0, math.nan, 1.7]), "NaN"),
    (lambda: fit_loss_curve([1e6, 1e7, 1e8], [2.0, 1.8]), "different lengths"),
    (lambda: fit_loss_curve([1e6, 1e7, 1e8], [2.0, 1.8, 1.7], y_reps=np.ones((5, 2))), "(R, 3)"),
    (lambda: fit_capability([1.2, 1.1, 1.0], [5, 11, 3], [10, 10, 10]), "0 <= k <= n"),
    (lambda: fit_capability([1.2, 1.1], [5, 3], [10, 10]), "at least 3 rungs"),
    (lambda: fit_capability([1.2, 1.2, 1.2], [5, 4, 3], [10, 10, 10]), "same bpb"),
    (lambda: leave_one_out([1e6, 1e7, 1e8], [2.0, 1.8, 1.7]), "at least 4 rungs"),
    (lambda: leave_one_out_capability([1.3, 1.2, 1.1], [5, 4, 3], [10, 10, 10]), "at least 4 rungs"),
])
def test_bad_inputs_are_one_line_errors(call, words):
    with pytest.raises(GptlabError) as err:
        call()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_crossing_threshold_must_be_a_rate(ladder):
    with pytest.raises(GptlabError, match="strictly between 0 and 1"):
        predict_crossing(*ladder, 1.0)


def test_replicates_are_seeded():
    y = law(SIZES) + np.array([3, -2, 1, -3, 2, -1]) * 1e-3
    one, two = fit_loss_curve(SIZES, y, resamples=60, seed=4), fit_loss_curve(SIZES, y, resamples=60, seed=4)
    other = fit_loss_curve(SIZES, y, resamples=60, seed=4, key="other ladder")
    assert np.array_equal(one.reps_E, two.reps_E) and not np.array_equal(one.reps_E, other.reps_E)
