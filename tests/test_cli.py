"""The `gptlab` command's own decisions: exit statuses a CI job can gate on, arguments that would do nothing
are rejected, and --json prints records instead of tables (gptlab/cli.py, gptlab/compare/records.py).

    python -m pytest tests/test_cli.py
"""

from __future__ import annotations

import json

import pytest

from compare_fixtures import build_store
from conftest import run_gptlab

from gptlab.cli import main

HEAD = 'version = 1\n[models]\ncode = "code"\nprose = "prose"\n'
CLAIM = ('[[claims]]\nstatement = "{statement}"\ncheck = {{ kind = "less", left = {{ model = "{a}", metric = "bpb", '
         'group = "code" }}, right = {{ model = "{b}", metric = "bpb", group = "code" }} }}\n')


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "r.sqlite"
    build_store(path).close()
    return path


def _check(db, tmp_path, claims: list[tuple[str, str]], *flags):
    f = tmp_path / "claims.toml"
    f.write_text(HEAD + "".join(CLAIM.format(statement=f"{a} beats {b}", a=a, b=b) for a, b in claims))
    return run_gptlab("check", f, "--db", db, "--resamples", 200, *flags)


def test_check_exits_0_when_every_claim_holds(db, tmp_path):
    res = _check(db, tmp_path, [("code", "prose")])
    assert res.returncode == 0, res.stderr


def test_check_exits_3_when_a_claim_is_false_unless_told_never(db, tmp_path):
    claims = [("code", "prose"), ("prose", "code")]          # the second is false: prose is worse on code
    assert _check(db, tmp_path, claims).returncode == 3
    assert _check(db, tmp_path, claims, "--fail-on", "never").returncode == 0


def test_fail_on_inconclusive_also_fails_on_an_undecided_claim(tmp_path):
    from gptlab.compare.claims_verdict import claims_failed

    class R:
        def __init__(self, verdict):
            self.verdict = verdict

    undecided = [R("true"), R("inconclusive")]
    assert not claims_failed(undecided, "false")
    assert claims_failed(undecided, "inconclusive")
    assert claims_failed([R("mostly true"), R("false")], "false")
    assert not claims_failed([R("mostly true")], "inconclusive")


def test_eval_with_nothing_to_do_is_rejected(tmp_path):
    res = run_gptlab("eval", "tests/fixtures/peers/hf_gpt2/trained_200steps", "--no-probes", "--no-bpb",
                     "--db", tmp_path / "r.sqlite")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "nothing to evaluate" in res.stderr
    assert not (tmp_path / "r.sqlite").exists()


# ---------------------------------------------------------------- --json on compare and check

CLAIM_FIELDS = ["statement", "comment", "verdict", "evidence", "margin", "parts"]
INTERVAL_FIELDS = ["value", "low", "high", "n"]


def test_check_json_prints_each_claims_verdict_and_margin_and_keeps_the_exit_status(db, tmp_path):
    from gptlab.compare.claims import load_claims
    from gptlab.compare.claims_verdict import check
    from gptlab.store import Store

    res = _check(db, tmp_path, [("code", "prose"), ("prose", "code")], "--json")
    assert res.returncode == 3, res.stderr
    got = json.loads(res.stdout)                        # the whole of stdout is one JSON document
    assert list(got) == ["title", "claims"] and [list(c) for c in got["claims"]] == [CLAIM_FIELDS] * 2
    store = Store(db, readonly=True)
    try:
        want = check(load_claims(tmp_path / "claims.toml"), store, resamples=200)
    finally:
        store.close()
    for c, r in zip(got["claims"], want):
        assert (c["statement"], c["verdict"], c["evidence"]) == (r.statement, str(r.verdict), r.evidence)
        assert list(c["margin"]) == INTERVAL_FIELDS
        assert (c["margin"]["value"], c["margin"]["low"], c["margin"]["high"]) == \
            (r.margin.value, r.margin.low, r.margin.high)
    assert [c["verdict"] for c in got["claims"]] == ["true", "false"]
    assert _check(db, tmp_path, [("code", "prose")], "--json").returncode == 0


def test_compare_json_prints_the_rows_and_claims_instead_of_the_tables(db, tmp_path, capsys):
    from gptlab.compare.measurements import Measurements, resolve
    from gptlab.compare.ranking import build
    from gptlab.store import Store

    claims = tmp_path / "claims.toml"
    claims.write_text(HEAD + CLAIM.format(statement="code beats prose", a="code", b="prose"))
    out = tmp_path / "page"
    assert main(["compare", "code", "prose", "--db", str(db), "--no-eval", "--json", "--resamples", "200",
                 "--out", str(out), "--claims", str(claims)]) == 0
    stdout, stderr = capsys.readouterr()
    got = json.loads(stdout)
    assert "wrote" in stderr and (out / "compare.html").is_file()            # the page is still written
    assert list(got) == ["models", "temperature", "detector_version", "suite", "resamples", "notes", "rows",
                         "prompt_length", "claims"]
    assert [m["label"] for m in got["models"]] == ["code@240", "prose@240"]
    assert list(got["models"][0]) == ["label", "given_as", "run", "step", "weights_hash"]
    assert [c["verdict"] for c in got["claims"]] == ["true"]
    store = Store(db, readonly=True)
    try:
        want = build(Measurements(store, resolve(store, ["code", "prose"])), resamples=200)
    finally:
        store.close()
    assert [r["quantity"] for r in got["rows"]] == [q.name for q in want.bpb + want.failures + want.modes +
                                                    want.pass_at]
    for row, q in zip(got["rows"], want.bpb):
        assert list(row) == ["section", "quantity", "units", "lower_is_better", "paired", "values", "ranks",
                             "ranking"]
        assert row["section"] == "bpb" and row["ranking"] == q.order_text()
        for label, iv in q.cells.items():
            assert [row["values"][label][k] for k in INTERVAL_FIELDS] == [iv.value, iv.low, iv.high, iv.n]


def test_comparison_record_covers_every_section(db):
    from gptlab.compare.measurements import Measurements, resolve
    from gptlab.compare.ranking import build
    from gptlab.compare.records import comparison_record
    from gptlab.store import Store

    store = Store(db, readonly=True)
    try:
        c = build(Measurements(store, resolve(store, ["code", "prose", "gpt2"]), suite=None), resamples=200)
    finally:
        store.close()
    got = json.loads(json.dumps(comparison_record(c)))
    assert {r["section"] for r in got["rows"]} == {"bpb", "failure_rate", "failure_mode", "pass_at_k"}
    assert got["claims"] is None and got["temperature"] == 0.8
    rows = {(r["section"], r["quantity"]): r for r in got["rows"]}
    for q in c.failures:
        r = rows[("failure_rate", q.name)]
        assert {lab: v["value"] for lab, v in r["values"].items()} == {lab: iv.value for lab, iv in q.cells.items()}
        assert r["ranks"] == {x.label: x.rank for x in q.ranking} and r["lower_is_better"] is True
    assert got["prompt_length"] and list(got["prompt_length"][0]) == ["model", "what", "pairs", "short", "long",
                                                                      "effect"]
    assert got["prompt_length"][0]["effect"]["value"] == pytest.approx(c.length[0].effect.value)
