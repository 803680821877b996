"""Bootstrap intervals (gptlab/stats/bootstrap.py) against distributions whose answer is known."""

import math

import numpy as np
import pytest

from gptlab.stats import bootstrap as stats
from gptlab.stats.bootstrap import Units


def rate_units(hits, name="r", strata=None):
    hits = np.asarray(hits, dtype=float)
    return Units(np.stack([hits, np.ones_like(hits)], 1), np.zeros(len(hits)) if strata is None else strata,
                 stats.rate_statistic, name=name)


def bpb_units(nats, nbytes, name="b", key=None):
    return Units(np.stack([nats, nbytes], 1), np.zeros(len(nats)), stats.bpb_statistic, name=name, pair_key=key)


def test_bernoulli_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    hits = rng.random(600) < 0.3
    est = stats.estimate(rate_units(hits), resamples=4000)
    p = hits.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / len(hits))
    assert est.value == pytest.approx(p)
    assert est.low == pytest.approx(p - half, abs=0.012)
    assert est.high == pytest.approx(p + half, abs=0.012)
    assert est.n == 600


def test_coverage_of_the_true_mean_is_near_95_percent():
    rng = np.random.default_rng(7)
    covered = 0
    trials = 300
    for t in range(trials):
        x = rng.normal(2.0, 1.0, size=80)
        u = Units(np.stack([x, np.ones_like(x)], 1), np.zeros(80), stats.rate_statistic, name=f"t{t}")
        covered += stats.estimate(u, resamples=500).contains(2.0)
    assert 0.89 <= covered / trials <= 0.99


def test_bpb_is_the_ratio_of_sums_not_the_mean_of_ratios():
    nats = np.array([10.0, 1000.0])
    nbytes = np.array([100.0, 1000.0])
    est = stats.estimate(bpb_units(nats, nbytes))
    assert est.value == pytest.approx(1010 / (math.log(2) * 1100))
    assert est.value != pytest.approx(np.mean(nats / nbytes) / math.log(2))
    assert est.low <= est.value <= est.high


def test_documents_of_equal_difficulty_give_a_zero_width_interval():
    est = stats.estimate(bpb_units(np.full(50, 70.0), np.full(50, 100.0)))
    assert est.low == pytest.approx(est.high)
    assert est.value == pytest.approx(0.7 / math.log(2))


def test_intervals_are_seeded_and_named():
    u = bpb_units(np.random.default_rng(0).lognormal(0, 1, 100), np.full(100, 10.0), name="x")
    assert stats.estimate(u, seed=0) == stats.estimate(u, seed=0)
    assert stats.estimate(u, seed=0) != stats.estimate(u, seed=5)
    renamed = bpb_units(u.columns[:, 0], u.columns[:, 1], name="y")
    assert not np.array_equal(stats.replicates(u), stats.replicates(renamed))


def test_stratified_resampling_keeps_each_stratum_size():
    # stratum 0: always hits, stratum 1: never; a constant split means no sampling variance at all
    hits = np.array([1] * 30 + [0] * 10, dtype=float)
    strata = np.array([0] * 30 + [1] * 10)
    est = stats.estimate(rate_units(hits, strata=strata))
    assert est.value == pytest.approx(0.75)
    assert est.low == pytest.approx(0.75) and est.high == pytest.approx(0.75)
    unstratified = stats.estimate(rate_units(hits))
    assert unstratified.high - unstratified.low > 0.1


def test_pairing_by_document_removes_document_difficulty():
    rng = np.random.default_rng(3)
    nbytes = rng.integers(200, 2000, size=60).astype(float)
    difficulty = rng.lognormal(0.0, 0.6, size=60)           # documents differ a lot ...
    a = nbytes * difficulty * 0.60 * (1 + rng.normal(0, 0.01, 60))
    b = nbytes * difficulty * 0.62 * (1 + rng.normal(0, 0.01, 60))   # ... model b is 3 % worse on every one
    pa, pb = bpb_units(a, nbytes, "a", key="same-docs"), bpb_units(b, nbytes, "b", key="same-docs")
    ua, ub = bpb_units(a, nbytes, "a"), bpb_units(b, nbytes, "b")
    with_pairs = stats.difference(pa, pb)
    without = stats.difference(ua, ub)
    assert with_pairs.value == pytest.approx(without.value) and with_pairs.value < 0
    assert with_pairs.significant and with_pairs.high < 0
    assert not without.significant
    assert (with_pairs.high - with_pairs.low) * 5 < without.high - without.low
    reverse = stats.difference(pb, pa)
    assert (reverse.value, reverse.low, reverse.high) == pytest.approx((-with_pairs.value, -with_pairs.high,
                                                                        -with_pairs.low))


def test_difference_of_independent_rates_matches_the_normal_approximation():
    rng = np.random.default_rng(11)
    x, y = rng.random(800) < 0.5, rng.random(800) < 0.4
    d = stats.difference(rate_units(x, "x"), rate_units(y, "y"), resamples=4000)
    se = math.sqrt(x.mean() * (1 - x.mean()) / 800 + y.mean() * (1 - y.mean()) / 800)
    assert d.value == pytest.approx(x.mean() - y.mean())
    assert d.high - d.low == pytest.approx(2 * 1.96 * se, rel=0.12)


def test_per_stratum_mean_evaluates_the_table_on_resampled_counts():
    # pass@2 of n=4 samples with c passing: 1 - C(4-c, 2) / C(4, 2)
    table = np.array([1 - math.comb(4 - c, 2) / math.comb(4, 2) for c in range(5)])
    hits = np.array([1, 1, 0, 0, 1, 1, 1, 1], dtype=float)
    u = Units(np.stack([hits, np.ones(8)], 1), np.array([0] * 4 + [1] * 4),
              stats.per_stratum_mean([table, table]), name="pass@2")
    est = stats.estimate(u)
    assert est.value == pytest.approx((table[2] + table[4]) / 2)
    assert est.high == pytest.approx(1.0)        # stratum 1 always passes; stratum 0 can resample to c=4
    assert est.low < est.value


def test_ranking_shares_a_rank_when_the_difference_is_not_significant():
    rng = np.random.default_rng(5)
    nbytes = np.full(200, 500.0)
    base = rng.lognormal(0, 0.3, 200) * 500
    units = {"good": bpb_units(base * 0.80, nbytes, "good", "d"),
             "same": bpb_units(base * 0.80 * (1 + rng.normal(0, 0.002, 200)), nbytes, "same", "d"),
             "bad": bpb_units(base * 1.00, nbytes, "bad", "d")}
    ranked, diffs = stats.rank(units, lower_is_better=True)
    by = {r.label: r for r in ranked}
    assert ranked[-1].label == "bad" and by["bad"].rank == 3
    assert by["good"].rank == 1 and by["same"].rank == 1
    assert "same" in by["good"].tied_with and "bad" not in by["good"].tied_with
    first, second = ranked[0].label, ranked[1].label
    assert not diffs[(first, second)].significant
    assert diffs[(first, "bad")].significant and diffs[(first, "bad")].value < 0


def test_no_units_no_interval():
    empty = rate_units(np.array([]))
    assert stats.estimate(empty) is None
    assert stats.difference(empty, rate_units(np.array([1.0]))) is None


def test_strata_must_be_dense():
    with pytest.raises(ValueError):
        Units(np.ones((3, 2)), np.array([0, 2, 2]), stats.rate_statistic)
