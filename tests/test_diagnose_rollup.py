"""Roll-up arithmetic: the pass@k estimator against brute force, rates, and the verdict rule."""

import itertools
import math

import pytest

from gptlab.diagnose.rollup import pass_at_k, rollup


def brute_pass_at_k(n, c, k):
    """The definition: the share of k-subsets of the n samples containing at least one pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (7, 1, 5), (8, 0, 4), (8, 5, 4),
                                   (10, 3, 10)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_1_is_the_pass_rate_and_large_n_does_not_overflow():
    assert pass_at_k(200, 37, 1) == pytest.approx(37 / 200)
    assert 0.0 < pass_at_k(100_000, 3, 100) < 1.0


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, 2, 0), (5, 2, 6), (0, 0, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def rows(domain, probe, outcomes, **kw):
    """outcomes: list of (failures, passed)."""
    return [{"probe": probe, "domain": domain, "failures": f, "passed": p, **kw} for f, p in outcomes]


def test_rates_pass_at_k_and_verdicts():
    data = (rows("code", "qs", [([], True), (["test_failure"], False), (["syntax_error"], False),
                               (["test_failure", "repetition_loop"], False)], max_tokens=200)
            + rows("finance", "rev", [([], None)] * 4 + [(["malformed_figure"], None)])
            + rows("finance", "risk", [(["word_fixation"], None), ([], None)])
            + rows("general", "ps", [(["topic_drift", "prompt_echo"], None)] * 3 + [(["topic_drift"], None)]))
    r = rollup(data)
    qs = next(p for p in r.probes if p["probe"] == "qs")
    assert qs["n"] == 4 and qs["max_tokens"] == 200 and qs["tested"] == 4 and qs["passed"] == 1
    assert qs["rates"] == {"repetition_loop": 0.25, "syntax_error": 0.25, "test_failure": 0.5}
    assert qs["pass@1"] == pytest.approx(0.25) and "pass@5" not in qs
    code, fin, gen = r.domains["code"], r.domains["finance"], r.domains["general"]
    assert code["verdict"].verdict == "partly"          # 1/4 clean, but its one probe does not work
    assert code["verdict"].dominant[0] == "test_failure"
    assert fin["clean"] == 5 and fin["verdict"].verdict == "works"
    assert "pass@1" not in fin                           # no tests ran in finance
    assert gen["verdict"].verdict == "fails" and gen["verdict"].dominant == ["topic_drift", "prompt_echo"]
    assert "0/4 samples clean" in gen["verdict"].why and "topic_drift 100%" in gen["verdict"].why


def test_low_pass_rate_keeps_a_clean_looking_domain_from_working():
    data = rows("code", "f", [([], True)] + [([], False)] * 3)      # no mode, but 3 of 4 fail their tests
    v = rollup(data).domains["code"]["verdict"]
    assert v.verdict != "works" and "pass@1 0.25" in v.why


def test_settings_are_separate_groups():
    data = rows("general", "ps", [([], None)], max_tokens=80) + rows("general", "ps", [(["topic_drift"], None)],
                                                                     max_tokens=200)
    groups = {p["max_tokens"]: p for p in rollup(data).probes}
    assert groups[80]["rates"] == {} and groups[200]["rates"] == {"topic_drift": 1.0}
