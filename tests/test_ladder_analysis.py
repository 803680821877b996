"""A ladder read back from the store (gptlab/compare/ladder.py) and its report section: rungs whose bpb follows a
known law and whose probes fail along a known logistic, written through the Store API.

    python -m pytest tests/test_ladder_analysis.py
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from gptlab.checkpoints import ModelInfo
from gptlab.compare.ladder import ALL, analyse, ladder_names, load_ladder, rate_at_size
from gptlab.compare.select import select
from gptlab.diagnose import DETECTOR_VERSION
from gptlab.errors import GptlabError
from gptlab.report import render, write_report
from gptlab.store import Store
from gptlab.verdicts import Extrapolation

SIZES = [20_000, 80_000, 320_000, 1_280_000]            # non-embedding parameters
E, A, ALPHA = 1.0, 60.0, 0.4                            # bpb = E + A N^-alpha (general); code is 0.3 higher
GROUPS = {"web_en": ("general", 0.0), "code_python": ("code", 0.3)}
# probe -> (domain, logistic a, b of the failure rate in bpb, has tests)
PROBES = {"general_easy": ("general", -14.0, 7.0, False), "general_hard": ("general", -6.0, 6.0, False),
          "code_add": ("code", -9.0, 4.0, True)}
SAMPLES = 24                                            # per probe and rung


def law(n, offset=0.0):
    return E + A * n ** -ALPHA + offset


def logistic(z):
    return 1 / (1 + math.exp(-z))


def _docs(bpb: float, rng) -> SimpleNamespace:
    """40 documents whose pooled bpb is `bpb`, each a little off it."""
    sizes = rng.integers(800, 1200, 40)
    each = bpb * (1 + rng.normal(0, 0.02, 40))
    each *= bpb * sizes.sum() / (each * sizes).sum()
    nll = each * math.log(2) * sizes
    docs = [SimpleNamespace(nll=float(a), bytes=int(b)) for a, b in zip(nll, sizes)]
    return SimpleNamespace(bpb=bpb, nll=float(nll.sum()), bytes=int(sizes.sum()), tokens=int(sizes.sum() / 3),
                           docs=docs)


def build(db, rungs=SIZES, ladder="toy") -> Store:
    store = Store(db)
    rng = np.random.default_rng(7)
    for name, (domain, *_) in PROBES.items():
        store.put_probe(f"p-{name}", "default", "1", name, domain, "python" if domain == "code" else None,
                        f"prompt of {name}", {"name": name, "tests": "assert True" if PROBES[name][3] else ""})
    for pos, n in enumerate(rungs):
        run = f"{ladder}-w{pos}"
        h = f"{run}-final"
        store.put_model(ModelInfo(format="gptlab_run", path=f"/l/{run}/checkpoints/step_000100", run=run, step=100,
                                  family="gptlab", params=n + 50_000, vocab_size=512, context=128, tokens_seen=n * 20,
                                  weights_hash=h, tokenizer_hash="t", config={}, meta={}))
        store.put_run(run, f"/l/{run}", {"name": run, "data": {"domains": [
            {"name": d, "group": g} for d, (g, _) in GROUPS.items()]}}, 1000, [])
        for domain, (_, offset) in GROUPS.items():
            store.put_bpb(h, domain, "data", "v1", _docs(law(n, offset), rng))
        rows, outcome = [], {}
        for name, (domain, a, b, tests) in PROBES.items():
            p_fail = logistic(a + b * law(n, GROUPS["code_python" if domain == "code" else "web_en"][1]))
            for i in range(SAMPLES):
                fail = bool(rng.random() < p_fail)
                rows.append({"weights_hash": h, "probe_hash": f"p-{name}", "temperature": 0.8, "top_k": None,
                             "top_p": None, "seed": 0, "sample_index": i, "max_tokens": 80,
                             "completion": f"{name} {i}", "n_tokens": 5})
                outcome[(name, i)] = (fail, (not fail) if tests else None)
        store.put_samples(rows)
        found = []
        for s in store.samples_without_findings(DETECTOR_VERSION, [h]):
            fail, passed = outcome[(s["probe"], s["sample_index"])]
            found.append({"sample_id": s["id"], "detector_version": DETECTOR_VERSION,
                          "failures": ["syntax_error"] if fail else [], "metrics": {}, "evidence": {},
                          "passed": passed})
        store.put_findings(found)
        store.put_ladder_rung(dict(ladder=ladder, run=run, axis="model.n_embd", value=32 * (pos + 1), position=pos,
                                   params=n + 50_000, non_embedding_params=n, tokens=n * 20, flops=6.0 * n * n * 20,
                                   budget={"tokens_per_param": 20}))
    return store


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    store = build(tmp_path_factory.mktemp("ladder") / "r.sqlite")
    yield analyse(load_ladder(store, "toy"), resamples=300)
    store.close()


def test_the_law_behind_the_rungs_is_recovered_within_its_interval(analysis):
    fit = analysis.loss["general"]
    assert fit.interval_alpha.contains(ALPHA) and fit.interval_E.contains(E), (fit.form, fit.interval_E)
    assert abs(fit.alpha - ALPHA) < 0.1
    assert analysis.loss["code"].E > fit.E                  # code sits 0.3 higher
    assert set(analysis.loss) == {ALL, "code", "general"}
    # C = 120 N^2 FLOPs here, so against compute the pooled law's exponent is half of alpha
    assert analysis.compute.symbol == "C" and abs(analysis.compute.alpha - ALPHA / 2) < 0.05, analysis.compute.form
    assert analysis.compute_at(4 * SIZES[-1]) == pytest.approx(6.0 * 20 * (4 * SIZES[-1]) ** 2, rel=1e-6)
    loo = analysis.loo_loss["general"]                       # 4 rungs: the largest predicted from three
    assert loo.inside and abs(loo.rel_error) < 0.05, loo


def test_probes_are_fitted_against_their_own_group_and_crossings_are_honest(analysis):
    by = {(p.probe, p.metric): p for p in analysis.probes}
    assert set(by) == {("general_easy", "failure rate"), ("general_hard", "failure rate"),
                       ("code_add", "failure rate"), ("code_add", "pass@1")}
    assert by[("code_add", "failure rate")].group == "code" and by[("general_easy", "failure rate")].group == "general"
    easy = by[("general_easy", "failure rate")]
    assert easy.fit.b > 0                                    # failing more at higher bpb
    # general_easy: fails 50 % at bpb 2.0 = N of about 31K, inside the ladder -> measured or predicted with N in it
    assert easy.crossing.status in (Extrapolation.MEASURED, Extrapolation.PREDICTED), easy.crossing
    # general_hard needs bpb 1.0 = the floor E: never, or far beyond the ladder
    hard = by[("general_hard", "failure rate")].crossing
    assert hard.status in (Extrapolation.NOT_REACHABLE, Extrapolation.BEYOND_RANGE), hard
    big = rate_at_size(analysis, "general_easy", "failure rate", 4 * SIZES[-1])
    assert big.value < 0.2 and big.low <= big.value <= big.high
    with pytest.raises(GptlabError, match="no failure rate of probe 'nope'"):
        rate_at_size(analysis, "nope", "failure rate", 1e6)


def test_the_report_shows_the_ladder_section_only_for_ladder_runs(tmp_path):
    store = build(tmp_path / "r.sqlite")
    subject = select(store, ["toy"])                         # a ladder by its name: every rung, the largest first
    assert subject.label == "ladder toy" and subject.run == "toy-w3" and len(subject.models) == len(SIZES)
    title, _, sections = render(store, ["toy"])
    assert title == "gptlab report — ladder toy"
    titles = [s.title for s in sections]
    assert "Capability by size" in titles
    ladder = sections[titles.index("Capability by size")]
    for text in ("bpb = ", "What each size can do", "general_easy", "4x, predicted", "largest rung from the others"):
        assert text in ladder.markdown, text
    assert {"ladder_loss.svg", "ladder_capability.svg"} <= set(ladder.files)
    out = write_report(store, ["toy"], tmp_path / "report")
    assert "## Capability by size" in out["markdown"].read_text()
    assert (tmp_path / "report" / "ladder_loss.svg").exists() and "Capability by size" in out["html"].read_text()
    _, _, one = render(store, ["toy-w0"])                    # one rung: it is in a ladder, whose section shows
    assert "Capability by size" in [s.title for s in one]
    assert ladder_names(store, {"other"}) == []
    store.close()


def test_too_few_rungs_say_so(tmp_path):
    store = build(tmp_path / "r.sqlite", rungs=SIZES[:2])
    with pytest.raises(GptlabError, match="a fit needs at least 3"):
        analyse(load_ladder(store, "toy"))
    _, _, sections = render(store, ["toy"])
    ladder = [s for s in sections if s.title == "Capability by size"][0]
    assert "the fits need at least 3" in ladder.markdown
    with pytest.raises(GptlabError, match="no ladder 'nope'"):
        load_ladder(store, "nope")
    store.close()
