"""Claims judged on a ladder's predictions (gptlab/compare/claims_ladder.py): sizes the ladder did not train.

    python -m pytest tests/test_ladder_claims.py
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gptlab.compare.claims import parse_claims
from gptlab.compare.claims_verdict import check
from gptlab.errors import GptlabError
from gptlab.verdicts import ClaimVerdict
from test_ladder_analysis import SIZES, build

CLAIMS = '''
version = 1
[models]
small = "toy-w0"

[[claims]]
statement = "A 4x larger model would pass code_add more often than not"
check = { kind = "above", left = { ladder = "toy", size = "4x", metric = "pass_at_k", probe = "code_add" }, value = 0.5 }

[[claims]]
statement = "Even at 10x, general_hard fails more often than not"
check = { kind = "above", left = { ladder = "toy", size = "10x", metric = "failure_rate", probe = "general_hard" }, value = 0.5 }

[[claims]]
statement = "At 10x, general_hard is clean more often than not"
check = { kind = "below", left = { ladder = "toy", size = "10x", metric = "failure_rate", probe = "general_hard" }, value = 0.5 }

[[claims]]
statement = "A 2x model's bpb beats the smallest rung's"
check = { kind = "less", left = { ladder = "toy", size = "2x", metric = "bpb", group = "general" }, right = { model = "small", metric = "bpb", group = "general" } }
'''


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("ladder_claims") / "r.sqlite"
    build(path).close()
    return path


def test_predictions_are_judged_with_their_intervals(db):
    from gptlab.store import Store
    store = Store(db, readonly=True)
    results = check(parse_claims(CLAIMS, "claims.toml"), store, resamples=400)
    store.close()
    verdicts = [r.verdict for r in results]
    assert verdicts[0] == ClaimVerdict.TRUE, results[0].evidence       # pass@1 ~95 % at 4x
    assert verdicts[1] == ClaimVerdict.TRUE, results[1].evidence       # general_hard needs bpb below the floor
    assert verdicts[2] == ClaimVerdict.FALSE, results[2].evidence
    assert verdicts[3] == ClaimVerdict.TRUE, results[3].evidence
    assert "predicted pass@1 on code_add" in results[0].evidence and "4x its largest rung" in results[0].evidence


@pytest.mark.parametrize("left, message", [
    ('{ ladder = "toy", size = "40x", metric = "bpb" }', "beyond 10x the ladder's largest rung"),
    ('{ ladder = "nope", size = "2x", metric = "bpb" }', "no ladder 'nope'"),
    ('{ ladder = "toy", size = "2x", metric = "pass_at_k", probe = "general_easy" }', "no pass@1 fit for probe"),
])
def test_what_a_ladder_cannot_answer_is_one_line(db, left, message):
    from gptlab.store import Store
    text = f'''version = 1
[[claims]]
statement = "s"
check = {{ kind = "above", left = {left}, value = 0.5 }}
'''
    store = Store(db, readonly=True)
    with pytest.raises(GptlabError, match=message):
        check(parse_claims(text, "c.toml"), store, resamples=200)
    store.close()


@pytest.mark.parametrize("left, message", [
    ('{ ladder = "toy", size = "abc", metric = "bpb" }', "size must be a factor"),
    ('{ ladder = "toy", size = -3, metric = "bpb" }', "size must be a factor"),
    ('{ ladder = "toy", size = "2x", metric = "prompt_length_effect" }', "metric for a ladder prediction"),
    ('{ ladder = "toy", size = "2x", metric = "failure_rate" }', "must name one probe"),
    ('{ ladder = "toy", size = "2x", metric = "pass_at_k", probe = "p", k = 3 }', "pass@1 only"),
    ('{ ladder = "toy", size = "2x", metric = "bpb", colour = 1 }', "unknown key 'colour'"),
])
def test_bad_ladder_measurements_are_refused_when_parsed(left, message):
    text = f'''version = 1
[[claims]]
statement = "s"
check = {{ kind = "above", left = {left}, value = 0.5 }}
'''
    with pytest.raises(GptlabError, match=message):
        parse_claims(text, "c.toml")


def test_gptlab_check_on_the_command_line(db, tmp_path):
    claims = tmp_path / "c.toml"
    claims.write_text(CLAIMS)
    res = subprocess.run([sys.executable, "-m", "gptlab", "check", str(claims), "--db", str(db), "--json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 3, res.stderr                    # one claim is false: --fail-on false (the default)
    got = json.loads(res.stdout)["claims"]
    assert [c["verdict"] for c in got] == ["true", "true", "false", "true"], got
    assert got[0]["statement"].startswith("A 4x larger model") and len(SIZES) == 4
