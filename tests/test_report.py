"""The report from a store built with the Store API: sections, numbers, files, and the degenerate stores."""

import json
import re
import subprocess
import sys

import pytest
from report_fixtures import PARAMS, SEED_CURVE, TOKENS_PER_STEP, add_run

from gptlab.cli import main
from gptlab.errors import GptlabError
from gptlab.report import SECTIONS, render, write_report
from gptlab.report.cards import spans
from gptlab.report.select import select
from gptlab.store import Store

TITLES = ["Assessment", "Run", "Training curve", "Convergence", "What the numbers mean", "Diagnosis",
          "Prompt length", "Probe cards", "What would help"]


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "results.sqlite")
    yield s
    s.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One report of the ten-checkpoint run, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("full")
    s = Store(tmp / "results.sqlite")
    add_run(s)
    paths = write_report(s, "d12", tmp / "report")
    s.close()
    return paths, paths["markdown"].read_text(), paths["html"].read_text()


def _in_order(titles: list[str]) -> bool:
    """TITLES appear in this order (other sections, e.g. model comparisons, may sit between them)."""
    it = iter(titles)
    return all(t in it for t in TITLES)


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_writes_markdown_html_and_plots(full):
    paths, md, html = full
    names = {p.name for p in paths["dir"].iterdir()}
    assert {"curve.svg", "domains.svg", "failures.svg", "index.html", "report.md"} <= names
    assert all(n.endswith(".svg") or n in ("index.html", "report.md") for n in names)   # no temp leftovers
    for svg in ("curve", "domains", "failures"):
        assert f"]({svg}.svg)" in md
        assert f'id="plot-{svg}"' in html
        assert (paths["dir"] / f"{svg}.svg").read_text().lstrip().startswith("<?xml")
    assert _in_order([line[3:] for line in md.splitlines() if line.startswith("## ")])
    assert len(SECTIONS) >= len(TITLES)


def test_html_is_self_contained(full):
    _, _, html = full
    assert "<?xml" not in html and html.count("<svg") >= 3
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "<style>" in html and "<script>" in html


def test_run_section_has_budget_and_chinchilla(full):
    _, md, _ = full
    run = _section(md, "Run")
    seen = 50_000 * TOKENS_PER_STEP
    assert f"50,000 x 65,536 = {seen:,}" in run
    assert f"{seen / PARAMS:.1f} (" in run and "Chinchilla" in run
    assert "12 x 768 (6)" in run and "32,768" in run and "2,048 tokens" in run
    assert "| web_en | general | 70.6% |" in run       # 6 / (1 + 1.5 + 6)


def test_training_curve_lists_every_checkpoint(full):
    _, md, _ = full
    curve = _section(md, "Training curve")
    for step, loss in ((5000, "1.3968"), (50000, "1.0616")):
        assert f"| {step:,} |" in curve and loss in curve
    last = next(line for line in curve.splitlines() if line.startswith("| 50,000 |"))
    assert last.endswith("| 1.0616 |") and "| 1.4176 |" in last      # step, ..., val bpb (log), ..., train loss
    for v in (SEED_CURVE[0], SEED_CURVE[-1]):        # the training log's overall val bpb column
        assert f"{v:.4f}" in curve


def test_convergence_says_still_descending_with_projection(full):
    _, md, _ = full
    conv = _section(md, "Convergence")
    assert "**Verdict: still descending.**" in conv and "not converged" in conv
    projected = float(re.search(r"projected bpb at 2x the tokens \(6.55B\) \| (\d\.\d+)", conv).group(1))
    assert projected < 1.401
    assert "bpb per 1B tokens" in conv


def test_meaning_turns_bpb_into_perplexity_and_bits_per_token(full):
    _, md, _ = full
    mean = _section(md, "What the numbers mean")
    finance = 1.4176 - 0.45
    assert f"| finance_sec | {finance:.4f} | {2 ** finance:.2f} | 4.40 | {finance * 4.4:.2f} | low |" in mean
    assert "| code_python |" in mean and "| high |" in mean
    assert "Low-entropy (formulaic" in mean


def test_diagnosis_matrix_verdicts_and_cards(full):
    _, md, html = full
    diag = _section(md, "Diagnosis")
    assert "prompt echo" in diag and "repetition loop" in diag
    row = next(line for line in diag.splitlines() if line.startswith("| code_python | code |"))
    assert "100%" in row
    assert "| 0.8 | 12 | 33% |" in diag and "| 1 | 12 | 33% |" in diag    # loops per temperature
    cards = _section(md, "Probe cards")
    assert "### code_python" in cards and "### sec_risk" in cards
    assert "<b>The function does not take any additional arguments.</b>" in cards
    assert "<ins>the ecosystem of the ecosystem,</ins>" in cards
    assert "step 45000" in cards and "step 50000" in cards        # checkpoint-to-checkpoint history
    assert '<mark class="echo">' in html and '<mark class="loop">' in html


def test_recommendations_cite_their_numbers(full):
    _, md, _ = full
    help_ = _section(md, "What would help")
    assert "**Train longer" in help_ and "the power law projects" in help_
    assert "**More code_python data in the mixture.**" in help_ and "11.8% of training tokens" in help_
    assert "prompt_echo in" in help_


def test_assessment_is_one_paragraph_with_the_key_numbers(full):
    _, md, _ = full
    text = _section(md, "Assessment")
    assert "3.28B tokens seen" in text and "still descending" in text
    assert "per-byte perplexity is" in text and "code fails" in text


def test_empty_store_says_what_is_missing(store, tmp_path):
    paths = write_report(store, "runs/nothing", tmp_path / "out")
    md = paths["markdown"].read_text()
    assert _in_order([line[3:] for line in md.splitlines() if line.startswith("## ")])
    assert "Nothing has been measured yet" in md
    assert "no val bpb" in md and "no per-domain bpb" in md and "no probe samples" in md
    assert "<svg" not in paths["html"].read_text()


def test_single_checkpoint_run(store, tmp_path):
    add_run(store, run="one", steps=[5000])
    md = write_report(store, "one", tmp_path / "out")["markdown"].read_text()
    assert "only one checkpoint has a val bpb" in md
    assert "evaluate at least 3 checkpoints" in md
    assert "**Verdict: too few points.**" in md
    assert "| 5,000 |" in md and "2^" in md            # the numbers that do exist are still shown


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


def test_highlight_spans_follow_the_detectors_evidence():
    text = "Intro. the unit repeats. the unit repeats. the unit repeats. end"
    got = spans(text, {"repetition_loop": {"unit": "the unit repeats.", "offset": 7},
                       "prompt_echo": {"span": "Intro.", "completion_offset": 0}})
    assert [(text[s:e], k) for s, e, k in got] == [("Intro.", "echo")] + [("the unit repeats.", "loop")] * 3
    clipped = "word " * 60
    got = spans(clipped, {"prompt_echo": {"span": " ".join(clipped.split())[:20] + "…", "completion_offset": 0}})
    assert got and got[0][0] == 0
    assert spans("abc", {"prompt_echo": {"span": "zzz zzz"}}) == []


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


def test_report_never_imports_torch(store, tmp_path):
    add_run(store)
    code = ("import sys; from gptlab.store import Store; from gptlab.report import write_report; "
            f"write_report(Store({str(store.path)!r}), 'd12', {str(tmp_path / 'r')!r}); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


def test_render_is_deterministic_apart_from_the_date(store):
    add_run(store)
    a, b = render(store, "d12"), render(store, "d12")
    assert [s.markdown for s in a[2]] == [s.markdown for s in b[2]]


def test_one_checkpoint_of_a_longer_run_shows_the_run_up_to_it(store, tmp_path):
    add_run(store, root=str(tmp_path))
    step_dir = tmp_path / "d12" / "checkpoints" / "step_025000"
    step_dir.mkdir(parents=True)
    md = write_report(store, str(step_dir), tmp_path / "out")["markdown"].read_text()
    assert md.startswith("# gptlab report — d12 @ step 25000")
    curve = _section(md, "Training curve")
    assert "| 25,000 |" in curve and "| 30,000 |" not in curve      # nothing after the chosen checkpoint
    assert "25,000 x 65,536" in _section(md, "Run")
