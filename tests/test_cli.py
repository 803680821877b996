"""The `gptlab` command's own decisions: exit statuses a CI job can gate on, and arguments that would do
nothing are rejected (gptlab/cli.py).

    python -m pytest tests/test_cli.py
"""

from __future__ import annotations

import pytest

from compare_fixtures import build_store
from conftest import run_gptlab

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
