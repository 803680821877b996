"""The schedule-aware loss law (gptlab/stats/schedule_fit.py) on curves generated from it with known numbers,
the verdict it gives (gptlab/stats/trend.py), its fallbacks, and the report that shows it.

    python -m pytest tests/test_schedule_fit.py
"""

from __future__ import annotations

import numpy as np
import pytest
from report_fixtures import DOMAINS, TOKENS_PER_STEP, bpb_result, model_info

from gptlab.compare.select import select
from gptlab.report import write_report
from gptlab.report.context import build_context
from gptlab.schedule import Schedule, lr_multiplier
from gptlab.stats.schedule_fit import (
    MIN_POINTS,
    areas,
    fit_schedule_law,
    why_not,
)
from gptlab.stats.trend import trend
from gptlab.store import Store
from gptlab.verdicts import Convergence

WSD = Schedule(steps=400, warmup_steps=20, warmdown_frac=0.4, final_lr_frac=0.0)
STEPS = np.arange(10, 401, 10)
# A longer run whose 1000-step warmdown outlasts the annealing momentum's memory (1 / (1 - 0.99) = 100
# steps): its annealing is nearly complete, so doubling it adds only ~ drop * 50 / 1000 more (S2 saturates).
LONG = Schedule(steps=2000, warmup_steps=20, warmdown_frac=0.5, final_lr_frac=0.0)
LONG_STEPS = np.arange(50, 2001, 50)
ANNEALED = dict(L0=1.4, A=40.0, alpha=1.5, C=0.0009)    # data term spent by the end, a warmdown worth 0.08 bpb


def law_curve(schedule: Schedule, L0: float, A: float, alpha: float, C: float, lam: float = 0.99) -> np.ndarray:
    """The generating law, bpb after 1 .. steps updates, written out independently of the module's fit."""
    eta = [lr_multiplier(i, schedule) for i in range(schedule.steps)]
    s1, s2, m, prev = [], [], 0.0, eta[0]
    for e in eta:
        m = lam * m + max(prev - e, 0.0)
        prev = e
        s1.append((s1[-1] if s1 else 0.0) + e)
        s2.append((s2[-1] if s2 else 0.0) + m)
    return L0 + A * np.array(s1) ** -alpha - C * np.array(s2)


# ---------------------------------------------------------------- the schedule and its areas

def test_schedule_is_warmup_constant_linear_warmdown():
    m = WSD.multipliers()
    assert m[0] == pytest.approx(1 / 20) and m[19] == 1.0 and m[240] == 1.0
    assert m[241] < 1.0 and m[-1] == pytest.approx(1 / 160)
    assert np.all(np.diff(m[240:]) < 0)
    assert Schedule.from_config({"train": {"steps": 400, "warmup_steps": 20, "warmdown_frac": 0.4,
                                           "final_lr_frac": 0.0, "matrix_lr": 0.02}}) == WSD
    assert Schedule.from_config({"train": {"steps": 400}}) is None          # the warmdown is not stated
    assert Schedule.from_config({}) is None
    assert WSD.longer(2).steps == 800 and WSD.longer(2).warmup_steps == 20 and not WSD.constant().anneals


def test_optimizer_runs_the_same_schedule_function():
    optim = pytest.importorskip("gptlab.optim")
    assert optim.lr_multiplier is lr_multiplier


def test_areas_follow_the_definitions():
    s1, s2 = areas(WSD.multipliers(), lam=0.9)
    assert s1[-1] == pytest.approx(WSD.multipliers().sum())
    assert np.all(s2[:241] == 0)                      # warmup adds no annealing area; nor does the constant part
    d = 1 / 160                                         # the warmdown's fall per step
    assert s2[241] == pytest.approx(d) and s2[242] == pytest.approx(d + (0.9 * d + d))
    assert np.all(np.diff(s2[241:]) > 0)


# ---------------------------------------------------------------- recovering known laws

@pytest.mark.parametrize("L0,A,alpha,C", [(1.2, 3.0, 0.5, 0.002), (0.8, 6.0, 0.35, 0.001), (2.0, 1.5, 0.8, 0.004)])
def test_noise_free_curves_give_back_their_parameters(L0, A, alpha, C):
    y = law_curve(WSD, L0, A, alpha, C)[STEPS - 1]
    law, why = fit_schedule_law(STEPS, y, WSD)
    assert why is None
    assert law.L0 == pytest.approx(L0, abs=1e-3)
    assert law.alpha == pytest.approx(alpha, abs=1e-3)
    assert law.A == pytest.approx(A, rel=1e-3)
    assert law.C == pytest.approx(C, rel=1e-3)
    assert law.rmse < 1e-4 and law.lam == 0.99
    for key, value in [("L0", L0), ("final", y[-1])]:
        lo, hi = law.intervals[key]
        assert lo - 1e-3 <= value <= hi + 1e-3


def test_longer_run_projection_matches_the_generating_law():
    truth = dict(L0=1.1, A=4.0, alpha=0.45, C=0.003)
    y = law_curve(WSD, **truth)[STEPS - 1]
    law, _ = fit_schedule_law(STEPS, y, WSD)
    longer = law_curve(WSD.longer(2), **truth)
    assert law.longer == pytest.approx(longer[-1], abs=1e-3)
    assert law.constant == pytest.approx(law_curve(WSD.longer(2).constant(), **truth)[-1], abs=1e-3)
    assert law.final == pytest.approx(y[-1], abs=1e-3)
    assert law(np.array([100, 600]), WSD.longer(2)) == pytest.approx(longer[[99, 599]], abs=1e-3)
    assert law.constant > law.longer                   # the warmdown is worth something at 2x as well


def test_noisy_curves_true_values_mostly_fall_inside_the_bootstrap_intervals():
    """Ten noise draws (sd 0.004 bpb): 95% intervals should hold the truth most times (a residual bootstrap
    on 40 points runs a little narrow: 80-95% per parameter measured over 20 draws), lambda is found again,
    and the 2x projection (an extrapolation to twice the steps, lambda uncertain) stays useful."""
    truth = {"L0": 1.3, "A": 3.0, "alpha": 0.5, "C": 0.0025, "lambda": 0.99}
    clean = law_curve(WSD, truth["L0"], truth["A"], truth["alpha"], truth["C"])[STEPS - 1]
    true_longer = law_curve(WSD.longer(2), truth["L0"], truth["A"], truth["alpha"], truth["C"])[-1]
    hits = dict.fromkeys([*truth, "longer"], 0)
    for seed in range(10):
        y = clean + np.random.default_rng(seed).normal(0, 0.004, len(STEPS))
        law, _ = fit_schedule_law(STEPS, y, WSD, bootstrap=100)
        for key, value in [*truth.items(), ("longer", true_longer)]:
            lo, hi = law.intervals[key]
            hits[key] += lo <= value <= hi
        assert 0.98 <= law.lam <= 0.995
        assert law.intervals["longer"][1] - law.intervals["longer"][0] < 0.12
        assert abs(law.longer - true_longer) < 0.05
    assert all(h >= 7 for h in hits.values()), hits
    again, _ = fit_schedule_law(STEPS, y, WSD, bootstrap=100)
    assert again.intervals == law.intervals            # seeded: the same intervals every time


# ---------------------------------------------------------------- the verdict

def test_annealing_drop_is_a_plateau_where_the_plain_rule_sees_descent():
    """Data term spent by the end, a warmdown worth 0.08 bpb: the plain slope rule reads the warmdown's fall
    as progress, the law credits it to annealing and a 2x run gains less than the tolerance."""
    y = law_curve(LONG, **ANNEALED)[LONG_STEPS - 1]
    tokens = LONG_STEPS * 4096.0
    plain = trend(tokens, y)
    assert plain.verdict == Convergence.STILL_DESCENDING
    assert plain.fit.gain > plain.tol                   # the plain power law, too, expects more from 2x
    aware = trend(tokens, y, steps=LONG_STEPS, schedule=LONG, use_schedule=True)
    assert aware.verdict == Convergence.PLATEAU and aware.converged is True
    assert aware.law.gain < aware.tol
    assert aware.law.annealing_drop() > 10 * aware.tol
    assert "plain slope rule alone says still descending" in aware.sentence


def test_data_limited_curve_stays_still_descending():
    y = law_curve(WSD, L0=0.9, A=3.0, alpha=0.4, C=0.001)[STEPS - 1]
    aware = trend(STEPS * 4096.0, y, steps=STEPS, schedule=WSD, use_schedule=True)
    assert aware.verdict == Convergence.STILL_DESCENDING
    assert aware.law.intervals["gain"][0] > aware.tol
    assert aware.projection[0] == aware.law.longer


def test_rising_curve_keeps_the_slope_rules_verdict():
    y = np.linspace(1.2, 1.6, len(STEPS))
    t = trend(STEPS * 1.0, y, steps=STEPS, schedule=WSD, use_schedule=True)
    assert t.verdict == Convergence.RISING and t.law is None and t.law_note


# ---------------------------------------------------------------- fallbacks

def test_too_few_points_fall_back_to_the_plain_rule_and_say_so():
    few = np.array([250, 300, 350, 400])
    y = law_curve(WSD, 1.2, 3.0, 0.5, 0.002)[few - 1]
    law, why = fit_schedule_law(few, y, WSD)
    assert law is None and f"at least {MIN_POINTS}" in why
    t = trend(few * 1.0, y, steps=few, schedule=WSD, use_schedule=True)
    plain = trend(few * 1.0, y)
    assert t.law is None and t.verdict == plain.verdict and t.sentence == plain.sentence
    assert "not fitted" in t.law_note


def test_no_schedule_no_warmdown_or_no_annealed_points_fall_back():
    y = law_curve(WSD, 1.2, 3.0, 0.5, 0.002)
    assert "no learning-rate schedule" in why_not(STEPS, None)
    assert "no warmdown" in why_not(STEPS, WSD.constant())
    early = STEPS[STEPS <= 240]                         # the run so far has not reached its warmdown
    law, why = fit_schedule_law(early, y[early - 1], WSD)
    assert law is None and "warmdown" in why
    assert "past the 400 steps" in why_not(np.arange(50, 451, 50), WSD)    # the config is not this run's
    t = trend(early * 1.0, y[early - 1], steps=early, schedule=None, use_schedule=True)
    assert t.law is None and "no learning-rate schedule" in t.law_note


# ---------------------------------------------------------------- the report

def test_report_shows_the_law_for_a_run_with_a_schedule(tmp_path):
    sched = LONG
    y = law_curve(sched, **ANNEALED)
    config = {"name": "wsd", "model": {"depth": 12}, "tokens_per_step": TOKENS_PER_STEP,
              "train": {"steps": 2000, "warmup_steps": 20, "warmdown_frac": 0.5, "final_lr_frac": 0.0,
                        "total_batch_tokens": TOKENS_PER_STEP},
              "data": {"domains": [{"name": d, "weight": w, "group": g} for d, (_, _, w, g) in DOMAINS.items()]}}
    s = Store(tmp_path / "results.sqlite")
    metrics = []
    for step in LONG_STEPS:
        v = float(y[step - 1])
        metrics.append({"step": int(step), "tokens_seen": int(step) * TOKENS_PER_STEP, "train_loss": v,
                        "lr": 0.02 * lr_multiplier(int(step) - 1, sched), "val_bpb": v,
                        "val_bpb_domains": {d: v + o for d, (o, _, _, _) in DOMAINS.items()}})
    for step in (1000, 2000):
        info = model_info("wsd", step, f"/runs/wsd/checkpoints/step_{step:06d}")
        s.put_model(info)
        for d, (o, bpt, _, _) in DOMAINS.items():
            s.put_bpb(info.weights_hash, d, "data", "v1", bpb_result(float(y[step - 1]) + o, 40_000, bpt))
    s.put_run("wsd", "/runs/wsd", config, TOKENS_PER_STEP, metrics)
    ctx = build_context(s, select(s, ["wsd"]))
    assert ctx.curve.source == "training log" and ctx.schedule == sched
    assert ctx.trend.verdict == Convergence.PLATEAU and ctx.trend.law is not None
    assert all(dt.law is not None for dt in ctx.domain_trends.values())
    paths = write_report(s, "wsd", tmp_path / "report")
    s.close()
    md = paths["markdown"].read_text()
    conv = md.split("## Convergence", 1)[1].split("\n## ", 1)[0]
    assert "**Verdict: plateau.**" in conv and "schedule-aware law" in conv
    assert "a run 2x as long, same schedule shape (4,000 steps)" in conv
    assert "Missing" not in conv
