"""`gptlab compare` (gptlab/compare/ranking.py, measurements.py, report/sections/compare.py): the numbers on
a store with known differences, the rendered pages, and the command end to end on a tiny trained run."""

import math
import re
from types import SimpleNamespace as NS

import numpy as np
import pytest
from compare_fixtures import BPB, _bpb, build_store
from conftest import run_gptlab

from gptlab.cli import main
from gptlab.compare.measurements import Measurements, resolve
from gptlab.compare.ranking import build
from gptlab.errors import GptlabError
from gptlab.report import write_report
from gptlab.report.sections.compare import write_comparison


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = build_store(tmp_path_factory.mktemp("compare") / "r.sqlite")
    yield s
    s.close()


@pytest.fixture(scope="module")
def comparison(store):
    meas = Measurements(store, resolve(store, ["code", "prose", "gpt2"]), suite=None)
    return build(meas, resamples=500)


def rows(rows, name):
    return next(r for r in rows if r.name.startswith(name))


def test_labels_and_steps(store):
    refs = resolve(store, ["code", "prose@240", "gpt2"])
    assert [r.label for r in refs] == ["code@240", "prose@240", "gpt2"]
    with pytest.raises(GptlabError, match=r"code@7: no checkpoint at step 7 .*\(steps: 240\)"):
        resolve(store, ["code@7"])
    with pytest.raises(GptlabError, match="runs in the store: code, gpt2, prose"):
        resolve(store, ["nothing"])
    with pytest.raises(GptlabError, match="code and code@240 are the same weights"):
        resolve(store, ["code", "code@240"])


def test_bpb_per_domain_is_ranked_and_paired(comparison):
    code = rows(comparison.bpb, "code_python")
    assert code.paired and code.units == "12 documents"
    assert [r.label for r in code.ranking] == ["code@240", "prose@240", "gpt2"]
    assert [r.rank for r in code.ranking] == [1, 2, 3]
    assert code.order_text() == "code@240 < prose@240 < gpt2"
    for label, model in (("code@240", "code"), ("prose@240", "prose"), ("gpt2", "gpt2")):
        iv = code.cells[label]
        assert iv.low < iv.value < iv.high
        assert iv.value == pytest.approx(BPB[model]["code_python"], rel=0.03)   # per-document noise only
    web = rows(comparison.bpb, "web_en")
    assert web.ranking[0].label == "prose@240"


def test_identical_results_share_a_rank_and_say_so(comparison):
    fin = rows(comparison.bpb, "finance_sec")
    by = {r.label: r for r in fin.ranking}
    assert by["code@240"].rank == by["prose@240"].rank == 1 and by["gpt2"].rank == 3
    assert "code@240 ≈ prose@240" in fin.order_text() or "prose@240 ≈ code@240" in fin.order_text()


def test_groups_pool_the_domains_of_the_run_config(comparison):
    names = [r.name for r in comparison.bpb]
    assert names[0] == "all (3 domains)" and "group code" in names and "group general" in names
    assert rows(comparison.bpb, "group code").cells["code@240"].value == \
        pytest.approx(rows(comparison.bpb, "code_python").cells["code@240"].value)


def test_failure_rates_pass_at_k_and_prompt_length(comparison):
    code = rows(comparison.failures, "domain code")
    assert code.cells["gpt2"].value == 1.0 and code.cells["gpt2"].low == 1.0
    assert code.ranking[0].label == "code@240"
    q = rows(comparison.pass_at, "code_quicksort_long pass@1")
    assert q.cells["code@240"].value == pytest.approx(6 / 8) and q.cells["prose@240"].value == pytest.approx(1 / 8)
    assert not q.lower_is_better and q.ranking[0].label == "code@240"
    effects = {(e.label, e.what): e for e in comparison.length}
    fail = effects[("code@240", "failure rate (any)")]
    assert fail.pairs == 2 and fail.effect.value == pytest.approx(13 / 16 - 4 / 16) and fail.effect.significant
    flat = effects[("gpt2", "failure rate (any)")]
    assert flat.effect.value == 0 and not flat.effect.significant
    assert effects[("code@240", "pass@1")].effect.value == pytest.approx(1 / 8 - 6 / 8)


def test_a_domain_scored_on_other_text_is_left_out(store, tmp_path):
    other = build_store(tmp_path / "o.sqlite")
    other.put_bpb("h-gpt2", "web_en", "data-other", "bpb-1", _bpb(1.0, np.ones(12), np.zeros(12)))
    other.db.execute("DELETE FROM bpb WHERE weights_hash='h-gpt2' AND domain='web_en' AND data_hash='data-web_en'")
    meas = Measurements(other, resolve(other, ["code", "prose", "gpt2"]), suite=None)
    assert "web_en" not in meas.common_domains and any("web_en" in n for n in meas.notes)
    c = build(meas, resamples=200)
    assert rows(c.bpb, "all").name == "all (2 domains)"
    assert "gpt2" not in rows(c.bpb, "web_en").cells
    other.close()


def test_pages_show_the_numbers(comparison, tmp_path):
    out = write_comparison(comparison, None, tmp_path / "cmp", store_path="r.sqlite")
    md, page = out["markdown"].read_text(), out["html"].read_text()
    code = rows(comparison.bpb, "code_python").cells["code@240"]
    assert code.text() in md and code.text() in page
    assert "code@240 &lt; prose@240 &lt; gpt2" in page and "code@240 < prose@240 < gpt2" in md
    for title in ("Bits per byte", "Failure rates", "pass@k", "Prompt length"):
        assert f"## {title}" in md and f"<h2>{title}</h2>" in page
    assert not re.search(r"(src|href)=\"https?:", page)           # self-contained
    assert not list((tmp_path / "cmp").glob(".compare-*"))


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    """Two probes and a long twin; no tests, so nothing runs in the sandbox (pass@k is covered above)."""
    p = tmp_path_factory.mktemp("suite") / "twins.toml"
    p.write_text('name = "twins"\nversion = "1"\n\n'
                 '[[probes]]\nname = "square"\ndomain = "code"\nlanguage = "python"\nprompt = "def square(x):"\n'
                 'code_prefix = "def square(x):"\n\n'
                 '[[probes]]\nname = "square_long"\ndomain = "code"\nlanguage = "python"\ntwin_of = "square"\n'
                 'prompt = "def square(x):\\n    \\"\\"\\"x times x\\"\\"\\"\\n"\n\n'
                 '[[probes]]\nname = "water"\ndomain = "general"\nprompt = "Water is a molecule made of"\n')
    return p


def test_compare_command_end_to_end(tiny_run, small_suite, tmp_path, capsys):
    from gptlab.commands.compare import compare_paths  # deferred: heavy (torch, via the evaluation job)
    db, out = tmp_path / "c.sqlite", tmp_path / "cmp"
    claims = tmp_path / "claims.toml"
    claims.write_text(f'version = 1\nsuite = "{small_suite}"\n[models]\nlate = "{tiny_run}@8"\nearly = "{tiny_run}@4"\n'
                      '[[claims]]\nstatement = "Training helps on code"\n'
                      'check = { kind = "less", left = { model = "late", metric = "bpb", group = "code" }, '
                      'right = { model = "early", metric = "bpb", group = "code" } }\n')
    args = [f"{tiny_run}@4", f"{tiny_run}@8", "--db", db, "--out", out, "--suite", small_suite, "--resamples", 300]
    first = run_gptlab("compare", *args, "--samples", 2, "--max-tokens", "4,8", "--claims", claims,
                       env={"COLUMNS": "200"})
    assert first.returncode == 0, first.stderr
    assert "run@4" in first.stdout and "run@8" in first.stdout and "code_python" in first.stdout
    assert "Training helps on code" in first.stdout
    md = (out / "compare.md").read_text()
    assert "| code_python (" in md and "## Prompt length" in md and "| run@4 | failure rate (any) | 1 |" in md
    assert "## Claims" in md
    # again: every result is cached, so no model runs, and the seeded intervals are the same numbers
    again = compare_paths([f"{tiny_run}@4", f"{tiny_run}@8"], db=str(db), out=str(tmp_path / "again"),
                          suite=str(small_suite), resamples=300, samples=2, max_tokens=(4, 8))
    assert "cache hit" in capsys.readouterr().err
    body = md.split("## Models")[1].split("## Claims")[0].rstrip()
    assert (tmp_path / "again" / "compare.md").read_text().split("## Models")[1].rstrip() == body
    assert again["comparison"].bpb[0].cells
    # by run name, from the store alone
    assert main(["compare", "run@4", "run@8", "--db", str(db), "--out", str(tmp_path / "stored"), "--no-eval",
                 "--suite", str(small_suite), "--resamples", "300"]) == 0


def test_compare_bad_input_is_one_line(tmp_path):
    res = run_gptlab("compare", tmp_path / "missing_run", "--db", tmp_path / "x.sqlite", "--no-eval")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("gptlab: error:")


def test_report_states_the_prompt_length_effect(store, tmp_path):
    md = write_report(store, ["code"], tmp_path / "report")["markdown"].read_text()
    part = md.split("## Prompt length\n", 1)[1].split("\n## ", 1)[0]
    assert "`code_quicksort` / `code_quicksort_long`" in part
    assert "`complete_java_add` / `complete_java_add_long`" in part
    assert "| code@240 | failure rate (any) | 2 | 81% [" in part
    assert "code@240: failure rate (any) short - long = +0.56 [" in part and "short prompts do worse" in part


def test_a_run_directory_elsewhere_is_found_by_its_name(store):
    [ref] = resolve(store, ["/elsewhere/runs/prose@240"])
    assert ref.label == "prose@240" and ref.weights_hash == "h-prose"


def test_empty_documents_are_dropped_and_lopsided_text_is_flagged(tmp_path):
    s = build_store(tmp_path / "l.sqlite")
    for h, bpb in (("h-code", 1.2), ("h-prose", 1.6)):
        docs = [NS(nll=bpb * math.log(2) * b, bytes=b) for b in (12000, 3, 0, 0)]
        s.put_bpb(h, "code_sql", "data-sql", "bpb-1", NS(bpb=bpb, nll=sum(d.nll for d in docs), bytes=12003,
                                                         tokens=4000, docs=docs))
    meas = Measurements(s, resolve(s, ["code", "prose"]), suite=None)
    u = meas.bpb("code@240", domain="code_sql")
    assert u.info["documents"] == 2 and u.info["effective"] == pytest.approx(1.0, abs=0.01)
    c = build(meas, resamples=200)
    assert rows(c.bpb, "code_sql").paired
    md = write_comparison(c, None, tmp_path / "out")["markdown"].read_text()
    assert "fewer than 5 effective documents" in md and "code_sql (1.0)" in md
    s.close()
