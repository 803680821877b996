"""The report from a store built with the Store API (tests/report_fixtures.py).

    python -m pytest tests/test_report.py

The tests check the report's decisions — the context it derives from the store (budget, curve, trend,
diagnosis), the convergence and domain verdicts, the typed recommendations — and the files it writes. The
wording is checked once, by the golden-file test at the end: the rendered report.md and index.html of the
fixture store must equal tests/data/report_golden.md and .html byte for byte (how to regenerate them after
an intended change is in that test's docstring).
"""

import dataclasses
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import DOMAINS, PARAMS, SEED_CURVE, SEED_LOSS, TOKENS_PER_STEP, add_run

from gptlab.cli import main
from gptlab.compare.select import select
from gptlab.errors import GptlabError
from gptlab.report import SECTIONS, render, write_report
from gptlab.report.context import build_context, pooled
from gptlab.report.sections.cards import spans
from gptlab.report.sections.convergence import domain_table
from gptlab.report.sections.recommend import (CODE_FAIL_RATE, ECHO_RATE, LOOP_RATE, Recommendation, Rule,
                                               recommendations)
from gptlab.report.sections.run import arch_value, budget
from gptlab.report.sections.summary import worst_first
from gptlab.stats.trend import trend
from gptlab.store import Store
from gptlab.verdicts import Convergence, DomainVerdict

TITLES = ["Assessment", "Run", "Training curve", "Convergence", "What the numbers mean", "Diagnosis",
          "Prompt length", "Probe cards", "What would help"]
STEPS = [5000 * (i + 1) for i in range(len(SEED_CURVE))]
GOLDEN = Path(__file__).parent / "data"
WRITTEN = 1_767_225_600            # the golden report's clock: 2026-01-01 00:00 UTC


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "results.sqlite")
    yield s
    s.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The ten-checkpoint run: its context and one written report, shared by the tests that only read them."""
    tmp = tmp_path_factory.mktemp("full")
    s = Store(tmp / "results.sqlite")
    add_run(s)
    ctx = build_context(s, select(s, ["d12"]))
    paths = write_report(s, "d12", tmp / "report")
    s.close()
    return ctx, paths


def context(store, *targets):
    return build_context(store, select(store, list(targets)))


def _titles(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


def _in_order(titles: list[str]) -> bool:
    """TITLES appear in this order (other sections, e.g. model comparisons, may sit between them)."""
    it = iter(titles)
    return all(t in it for t in TITLES)


# ---------------------------------------------------------------- the verdicts' values


def test_verdict_values_are_the_words_the_store_and_pages_use():
    assert [v.value for v in DomainVerdict] == ["works", "partly", "fails"]
    assert [v.value for v in Convergence] == ["still descending", "plateau", "rising", "unclear", "too few points"]
    assert DomainVerdict.FAILS == "fails" and f"{Convergence.PLATEAU}" == "plateau"
    assert json.dumps({"v": DomainVerdict.WORKS}) == '{"v": "works"}'


def test_verdicts_are_the_bottom_layer():
    code = "import sys, gptlab.verdicts; print(sorted(m for m in sys.modules if m.startswith('gptlab')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['gptlab', 'gptlab.verdicts']"


# ---------------------------------------------------------------- what the context derives


def test_budget_counts_tokens_seen_and_tokens_per_parameter(full):
    ctx, _ = full
    seen = 50_000 * TOKENS_PER_STEP
    assert budget(ctx) == {"steps": 50_000, "tokens_per_step": TOKENS_PER_STEP, "tokens_seen": seen,
                           "params": PARAMS, "per_param": seen / PARAMS}
    assert [arch_value(ctx.arch, k) for k in ("depth", "width", "heads")] == [12, 768, 6]
    weights = {d: w for d, (_, _, w, _) in DOMAINS.items()}
    assert {d: m["share"] for d, m in ctx.mixture.items()} == pytest.approx(
        {d: w / sum(weights.values()) for d, w in weights.items()})
    assert ctx.mixture["web_en"]["group"] == "general"


def test_curve_has_every_checkpoint_and_the_training_log(full):
    ctx, _ = full
    c = ctx.curve
    assert c.source == "gptlab eval" and c.unit == "tokens"      # a tie with the training log: eval wins
    assert c.steps == STEPS and c.x == [s * TOKENS_PER_STEP for s in STEPS]
    # the domains' bytes are equal, so the pooled value is their mean
    offsets = [o for o, _, _, _ in DOMAINS.values()]
    assert c.overall == pytest.approx([v + sum(offsets) / 3 for v in SEED_CURVE])
    assert c.domains["finance_sec"] == pytest.approx([v + DOMAINS["finance_sec"][0] for v in SEED_CURVE])
    assert ctx.logged_at(50_000, "train_loss") == SEED_LOSS[-1]
    assert ctx.logged_at(7_000, "train_loss") == SEED_LOSS[0]    # the last logged step before
    assert ctx.logged_at(4_000, "train_loss") is None


def test_convergence_is_still_descending_with_a_projection(full):
    ctx, _ = full
    t = ctx.trend
    assert t.verdict is Convergence.STILL_DESCENDING and t.converged is False
    assert t.slope.drop > t.tol and t.slope.drop > t.slope.noise
    assert t.fit.projected < SEED_CURVE[-1] - 0.015
    lo, hi = t.fit.projected_range
    assert lo <= t.fit.projected <= hi
    assert {d: dt.verdict for d, dt in ctx.domain_trends.items()} == dict.fromkeys(DOMAINS,
                                                                                   Convergence.STILL_DESCENDING)


def test_domains_get_perplexity_bits_per_token_and_an_entropy_class(full):
    ctx, _ = full
    rows = {r["domain"]: r for r in domain_table(ctx)}
    finance = SEED_CURVE[-1] + DOMAINS["finance_sec"][0]
    assert rows["finance_sec"]["bpb"] == pytest.approx(finance)
    assert rows["finance_sec"]["perplexity"] == pytest.approx(2 ** finance)
    assert rows["finance_sec"]["bytes_per_token"] == pytest.approx(4.4, abs=1e-3)
    assert rows["finance_sec"]["bits_per_token"] == pytest.approx(finance * 4.4, abs=1e-3)
    assert {d: r["class"] for d, r in rows.items()} == {"finance_sec": "low", "web_en": "middle",
                                                        "code_python": "high"}
    assert [r["domain"] for r in domain_table(ctx)] == ["finance_sec", "web_en", "code_python"]  # lowest first
    assert pooled(ctx.latest_bpb) == pytest.approx(ctx.curve.overall[-1])


def test_diagnosis_verdicts_rates_and_history(full):
    ctx, _ = full
    d = ctx.diagnosis
    assert d.available and d.step == 50_000 and d.temperature == 0.8
    assert {dom: v["verdict"] for dom, v in d.verdicts.items()} == {"code": DomainVerdict.FAILS,
                                                                     "finance": DomainVerdict.PARTLY}
    assert all(isinstance(v["verdict"], DomainVerdict) for v in d.verdicts.values())
    assert d.verdicts["code"]["dominant"][:2] == ["prompt_echo", "no_code"]
    assert d.step_verdicts(45_000) == {"code": DomainVerdict.FAILS, "finance": DomainVerdict.WORKS}
    probes = {p["probe"]: p for p in d.probe_stats()}
    assert probes["code_python"]["rates"] == {"prompt_echo": 1.0, "no_code": 1.0}
    assert probes["sec_risk"]["rates"]["repetition_loop"] == 1.0 and probes["sec_revenue"]["rates"] == {}
    assert probes["code_python"]["pass_at"] == {"pass@1": 0.0}
    assert d.repetition_by_temperature == {0.8: (pytest.approx(1 / 3, abs=1e-4), 12),
                                           1.0: (pytest.approx(1 / 3, abs=1e-4), 12)}
    assert sorted(d.by_length) == [80, 200] and d.mode_rate("prompt_echo") == pytest.approx(1 / 3)
    assert sorted(d.probe_history("sec_risk")) == [45_000, 50_000]     # the card's checkpoint-to-checkpoint view


def test_domains_are_summarised_worst_first(full):
    ctx, _ = full
    assert [dom for dom, _ in worst_first(ctx.diagnosis.verdicts)] == ["code", "finance"]
    mixed = {"a": {"verdict": DomainVerdict.WORKS}, "b": {"verdict": "fails"}, "c": {"verdict": "partly"},
             "d": {"verdict": "unknown"}}
    assert [dom for dom, _ in worst_first(mixed)] == ["b", "c", "a", "d"]


def test_highlight_spans_follow_the_detectors_evidence():
    text = "Intro. the unit repeats. the unit repeats. the unit repeats. end"
    got = spans(text, {"repetition_loop": {"unit": "the unit repeats.", "offset": 7},
                       "prompt_echo": {"span": "Intro.", "completion_offset": 0}})
    assert [(text[s:e], k) for s, e, k in got] == [("Intro.", "echo")] + [("the unit repeats.", "loop")] * 3
    clipped = "word " * 60
    got = spans(clipped, {"prompt_echo": {"span": " ".join(clipped.split())[:20] + "…", "completion_offset": 0}})
    assert got and got[0][0] == 0
    assert spans("abc", {"prompt_echo": {"span": "zzz zzz"}}) == []


# ---------------------------------------------------------------- recommendations


def test_recommendations_fire_on_the_measurements(full):
    ctx, _ = full
    recs = recommendations(ctx)
    assert all(isinstance(r, Recommendation) and r.because for r in recs)
    assert [(r.rule, r.subject) for r in recs] == [
        (Rule.TRAIN_LONGER, None), (Rule.MORE_DOMAIN_DATA, "code_python"), (Rule.REPETITION, None),
        (Rule.PROMPT_ECHO, None), (Rule.FAILING_DOMAIN, "code")]
    by_rule = {r.rule: r for r in recs}
    assert by_rule[Rule.TRAIN_LONGER].value == pytest.approx(ctx.trend.slope.drop)
    share = by_rule[Rule.MORE_DOMAIN_DATA].value
    assert share == pytest.approx(1 / 8.5) and share < 1 / 3                    # below an even share
    assert by_rule[Rule.REPETITION].value > LOOP_RATE and by_rule[Rule.PROMPT_ECHO].value > ECHO_RATE
    assert by_rule[Rule.FAILING_DOMAIN].value == 1.0 >= CODE_FAIL_RATE
    assert Rule.MORE_TOKENS not in by_rule                      # 17.7 tokens per parameter: not far from 20


CURVES = {  # val bpb over the ten checkpoints -> the verdict and the rule it fires
    Convergence.PLATEAU: ([1.6, 1.5, 1.45, 1.42, 1.41, 1.4101, 1.4102, 1.4099, 1.41, 1.4101], Rule.SCALE_OR_SCHEDULE),
    Convergence.RISING: ([1.6, 1.5, 1.45, 1.42, 1.41, 1.40, 1.42, 1.45, 1.48, 1.52], Rule.ROLL_BACK),
    Convergence.UNCLEAR: ([1.6, 1.5, 1.45, 1.42, 1.41, 1.44, 1.38, 1.45, 1.37, 1.40], Rule.MORE_CHECKPOINTS),
}


@pytest.mark.parametrize("verdict", list(CURVES))
def test_each_convergence_verdict_fires_its_rule(full, verdict):
    ctx, _ = full
    ys, rule = CURVES[verdict]
    ctx = dataclasses.replace(ctx, trend=trend(ctx.curve.x, ys))
    assert ctx.trend.verdict is verdict
    fired = [r for r in recommendations(ctx) if r.rule in {v[1] for v in CURVES.values()} | {Rule.TRAIN_LONGER}]
    assert [r.rule for r in fired] == [rule] and fired[0].value == pytest.approx(ctx.trend.slope.drop)
    if verdict is Convergence.RISING:
        assert "step 30000" in fired[0].because                 # the best checkpoint is named


def test_few_tokens_per_parameter_asks_for_more_tokens(store):
    add_run(store, run="short", steps=[500, 1000, 1500], samples=False)
    recs = recommendations(context(store, "short"))
    [more] = [r for r in recs if r.rule is Rule.MORE_TOKENS]
    assert more.value == pytest.approx(1500 * TOKENS_PER_STEP / PARAMS)


# ---------------------------------------------------------------- degenerate stores


def test_empty_store_measures_nothing_and_still_writes_every_section(store, tmp_path):
    ctx = context(store, "runs/nothing")
    assert ctx.models == [] and ctx.curve is None and ctx.trend.verdict is Convergence.TOO_FEW_POINTS
    assert not ctx.diagnosis.available and domain_table(ctx) == [] and recommendations(ctx) == []
    paths = write_report(store, "runs/nothing", tmp_path / "out")
    assert _in_order(_titles(paths["markdown"].read_text()))
    assert sorted(p.name for p in paths["dir"].iterdir()) == ["index.html", "report.md"]     # no plots
    assert "<svg" not in paths["html"].read_text()


def test_single_checkpoint_run(store):
    add_run(store, run="one", steps=[5000])
    ctx = context(store, "one")
    t = ctx.trend
    assert ctx.curve.steps == [5000] and t.verdict is Convergence.TOO_FEW_POINTS and t.converged is None
    assert t.slope is None and t.fit is None and t.missing
    assert len(domain_table(ctx)) == 3                           # the numbers that do exist are still used
    assert not {r.rule for r in recommendations(ctx)} & {Rule.TRAIN_LONGER, Rule.SCALE_OR_SCHEDULE}


def test_one_checkpoint_of_a_longer_run_shows_the_run_up_to_it(store, tmp_path):
    add_run(store, root=str(tmp_path))
    step_dir = tmp_path / "d12" / "checkpoints" / "step_025000"
    step_dir.mkdir(parents=True)
    ctx = context(store, str(step_dir))
    assert ctx.subject.label == "d12 @ step 25000" and [m["step"] for m in ctx.models] == [25_000]
    assert max(r["step"] for r in ctx.metrics) == 25_000          # nothing after the chosen checkpoint
    assert ctx.curve.source == "training log" and ctx.curve.steps[-1] == 25_000
    assert budget(ctx)["tokens_seen"] == 25_000 * TOKENS_PER_STEP


def test_selection_by_name_directory_and_checkpoint(store, tmp_path):
    root = tmp_path / "runs"
    add_run(store, run="d12", root=str(root), samples=False)
    add_run(store, run="other", steps=[100, 200, 300], root=str(root), samples=False)
    (root / "d12" / "checkpoints" / "step_050000").mkdir(parents=True)
    assert len(select(store, ["d12"]).models) == 10
    assert len(select(store, [str(root / "d12")]).models) == 10
    one = select(store, [str(root / "d12" / "checkpoints" / "step_050000")])
    assert [m["step"] for m in one.models] == [50000] and one.label == "d12 @ step 50000"
    both = select(store, ["d12", "other"])
    assert len(both.models) == 13 and both.run == "d12"
    with pytest.raises(GptlabError, match="runs in the store: d12, other"):
        select(store, ["nope"])


# ---------------------------------------------------------------- the files


def test_writes_markdown_html_and_plots(full):
    _, paths = full
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    names = {p.name for p in paths["dir"].iterdir()}
    assert names == {"curve.svg", "domains.svg", "failures.svg", "index.html", "report.md"}   # no temp leftovers
    for svg in ("curve", "domains", "failures"):
        assert f"]({svg}.svg)" in md and f'id="plot-{svg}"' in html
        assert (paths["dir"] / f"{svg}.svg").read_text().lstrip().startswith("<?xml")
    assert _in_order(_titles(md)) and len(SECTIONS) >= len(TITLES)


def test_html_is_self_contained(full):
    _, paths = full
    html = paths["html"].read_text()
    assert "<?xml" not in html and html.count("<svg") >= 3
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "<style>" in html and "<script>" in html


def test_report_is_atomic_and_replaces_the_previous_one(store, tmp_path):
    add_run(store, samples=False)
    out = tmp_path / "report"
    write_report(store, "d12", out)
    (out / "notes.txt").write_text("mine")
    write_report(store, "d12", out)
    assert (out / "notes.txt").read_text() == "mine"                 # other files are left alone
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(GptlabError, match="not a folder"):
        write_report(store, "d12", tmp_path / "afile")


def test_cli_report_and_its_errors(store, tmp_path, capsys):
    add_run(store, samples=False)
    out = tmp_path / "cli"
    assert main(["report", "d12", "--db", str(store.path), "--out", str(out)]) == 0
    assert "index.html" in capsys.readouterr().out and (out / "index.html").is_file()
    assert main(["report", "missing", "--db", str(store.path), "--out", str(out)]) == 2
    assert "missing: no results in" in capsys.readouterr().err
    assert main(["report", "d12", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no results store here" in capsys.readouterr().err


def test_report_never_imports_torch_evaluate_or_commands(store, tmp_path):
    add_run(store)
    code = ("import json, sys; from gptlab.store import Store; from gptlab.report import write_report; "
            f"write_report(Store({str(store.path)!r}), 'd12', {str(tmp_path / 'r')!r}); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
            "m.startswith(('gptlab.evaluate', 'gptlab.commands')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_render_is_deterministic_given_the_clock(store):
    add_run(store)
    a, b = render(store, "d12", now=WRITTEN), render(store, "d12", now=WRITTEN + 30)
    assert a[:2] == b[:2] and "2026-01-01 00:00 UTC" in a[1]
    assert [(s.markdown, s.html, s.files) for s in a[2]] == [(s.markdown, s.html, s.files) for s in b[2]]


def _without_plots(html: str) -> str:
    """index.html with each inline plot emptied: matplotlib's SVG differs between its versions, and the plots
    are checked by test_writes_markdown_html_and_plots and tests/test_report_browser.py. The inlined
    stylesheet and script are emptied too: they are gptlab/report/report.css and report.js, copied as is."""
    html = re.sub(r"<svg\b.*?</svg>", "<svg><!-- plot --></svg>", html, flags=re.DOTALL)
    html = re.sub(r"<style>.*?</style>", "<style><!-- report.css --></style>", html, flags=re.DOTALL)
    return re.sub(r"<script>.*?</script>", "<script><!-- report.js --></script>", html, flags=re.DOTALL)


def test_rendering_matches_the_golden_files(tmp_path, monkeypatch):
    """report.md and index.html (plots, stylesheet and script emptied) of the fixture run, written at a fixed time, equal
    tests/data/report_golden.md and tests/data/report_golden.html byte for byte.

    After an intended change of the report's wording or layout, regenerate them and review the diff:

        GPTLAB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_report.py -k golden
        git diff tests/data/report_golden.*
    """
    monkeypatch.chdir(tmp_path)                  # the subtitle names the store as given: a relative path
    s = Store("results.sqlite")
    add_run(s)
    paths = write_report(s, "d12", "report", now=WRITTEN)
    s.close()
    for page, golden in (("markdown", "report_golden.md"), ("html", "report_golden.html")):
        got = paths[page].read_text(encoding="utf-8")
        got = _without_plots(got) if page == "html" else got
        if os.environ.get("GPTLAB_UPDATE_GOLDEN") == "1":
            (GOLDEN / golden).write_text(got, encoding="utf-8")
        want = (GOLDEN / golden).read_text(encoding="utf-8")
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), golden,
                                                 "rendered"))[:80])
        assert got == want, f"the report differs from tests/data/{golden} (GPTLAB_UPDATE_GOLDEN=1 to accept):\n{diff}"
