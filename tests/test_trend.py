"""Convergence maths on synthetic curves whose parameters and shape are known."""

import numpy as np
import pytest

from gptlab.stats.trend import fit_power_law, per_unit, recent_slope, trend
from gptlab.verdicts import Convergence

TOKENS = np.arange(1, 11) * 5000 * 65536.0      # ten checkpoints, 65,536 tokens per step


@pytest.mark.parametrize("a,b,c", [(0.9, 800.0, 0.3), (1.4, 50.0, 0.15), (0.0, 3e4, 0.6), (2.1, 5.0, 0.05)])
def test_power_law_recovers_known_parameters(a, b, c):
    y = a + b * TOKENS ** -c
    law = fit_power_law(TOKENS, y)
    assert law.a == pytest.approx(a, abs=1e-4)
    assert law.c == pytest.approx(c, rel=1e-3)
    assert law.b == pytest.approx(b, rel=1e-2)
    assert law.projected == pytest.approx(a + b * (2 * TOKENS[-1]) ** -c, rel=1e-6)
    assert law.projected_range[0] == pytest.approx(law.projected, rel=1e-4)


def test_power_law_with_noise_projects_within_its_range():
    rng = np.random.default_rng(3)
    truth = 0.8 + 300 * TOKENS ** -0.25
    law = fit_power_law(TOKENS, truth + rng.normal(0, 0.003, len(TOKENS)))
    expected = 0.8 + 300 * (2 * TOKENS[-1]) ** -0.25
    assert abs(law.projected - expected) < 0.02
    lo, hi = law.projected_range
    assert lo <= law.projected <= hi and hi - lo < 0.1
    assert not law.poor


def test_power_law_needs_three_positive_points():
    assert fit_power_law([0, 1e6, 2e6], [3.0, 2.0, 1.9]) is None      # t = 0 cannot enter t^-c
    assert fit_power_law([1e6, 2e6], [2.0, 1.9]) is None
    assert fit_power_law([1e6, 2e6, 4e6], [2.0, 1.9, 1.85]) is not None


def test_power_law_keeps_the_floor_non_negative_and_b_non_negative():
    rising = fit_power_law(TOKENS, np.linspace(1.0, 1.5, len(TOKENS)))
    assert rising.b == 0 and rising.a == pytest.approx(1.25)
    steep = fit_power_law(TOKENS, 5e3 * TOKENS ** -0.4)
    assert steep.a >= 0


def test_slope_and_standard_error_match_the_textbook():
    x = np.array([1.0, 2, 3, 4, 5])
    y = np.array([2.0, 1.8, 1.7, 1.4, 1.3])
    s = recent_slope(x, y, window=5)
    coef, cov = np.polyfit(x, y, 1, cov="unscaled")
    resid = y - np.polyval(coef, x)
    assert s.slope == pytest.approx(coef[0])
    assert s.stderr == pytest.approx(np.sqrt(cov[0, 0] * (resid @ resid) / 3))
    assert s.drop == pytest.approx(-coef[0] * 4)
    assert recent_slope(x[:2], y[:2]).stderr is None
    assert recent_slope([1.0], [2.0]) is None


def test_window_uses_only_the_last_points():
    x = np.arange(10.0)
    y = np.r_[np.linspace(3, 2, 5), np.full(5, 2.0)]   # falls, then flat
    assert recent_slope(x, y, window=5).slope == pytest.approx(0.0)
    assert recent_slope(x, y, window=10).slope < 0


def test_falling_curve_is_still_descending():
    t = trend(TOKENS, 0.9 + 800 * TOKENS ** -0.3)
    assert t.verdict is Convergence.STILL_DESCENDING and t.converged is False
    assert "not converged" in t.sentence and "no plateau" in t.sentence
    assert t.fit is not None and t.fit.gain > 0


def test_seed_curve_from_the_issue_is_still_descending():
    y = [1.6798, 1.6399, 1.6256, 1.5952, 1.5680, 1.5363, 1.5101, 1.4683, 1.4463, 1.4176]
    t = trend(TOKENS, y)
    assert t.verdict is Convergence.STILL_DESCENDING
    assert t.slope.drop == pytest.approx(1.5363 - 1.4176, abs=0.01)
    assert t.fit.projected < 1.4176


def test_flat_curve_is_a_plateau():
    rng = np.random.default_rng(0)
    t = trend(TOKENS, 1.2 + rng.normal(0, 0.0005, len(TOKENS)))
    assert t.verdict is Convergence.PLATEAU and t.converged is True


def test_curve_that_flattens_after_falling_is_a_plateau():
    y = np.r_[np.linspace(2.5, 1.5, 5), 1.5 + np.array([0.001, -0.001, 0.0005, 0.0, -0.0005])]
    assert trend(TOKENS, y).verdict is Convergence.PLATEAU


def test_rising_curve_says_rising():
    t = trend(TOKENS, np.linspace(1.3, 1.6, len(TOKENS)))
    assert t.verdict is Convergence.RISING and "overfitting" in t.sentence


def test_noisy_curve_is_unclear():
    y = 1.5 + np.array([0, 0, 0, 0, 0, 0.05, -0.06, 0.04, -0.05, 0.03])
    assert trend(TOKENS, y).verdict is Convergence.UNCLEAR


def test_too_few_points_say_what_is_missing():
    none = trend([], [])
    assert none.verdict is Convergence.TOO_FEW_POINTS and "no val bpb" in none.sentence and none.missing
    one = trend([1e6], [2.0])
    assert "only one checkpoint" in one.sentence and one.fit is None
    two = trend([1e6, 2e6], [2.0, 1.5])
    assert two.verdict is Convergence.STILL_DESCENDING and two.fit is None
    assert any("3 checkpoints" in m for m in two.missing)


def test_points_are_sorted_and_missing_values_skipped():
    t = trend([3e6, 1e6, 2e6, 4e6], [1.8, 2.0, None, 1.7])
    assert t.x == [1e6, 3e6, 4e6] and t.y == [2.0, 1.8, 1.7]


def test_per_unit_picks_a_readable_scale():
    assert per_unit(-2e-6, "steps", 5e4) == (pytest.approx(-2e-3), "per 1K steps")
    assert per_unit(-1e-10, "tokens", 3.3e9) == (pytest.approx(-0.1), "per 1B tokens")
    assert per_unit(-1e-7, "tokens", 2e6) == (pytest.approx(-0.1), "per 1M tokens")
    assert per_unit(-1e-4, "tokens", 5e5) == (pytest.approx(-0.1), "per 1K tokens")
