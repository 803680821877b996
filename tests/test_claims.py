"""Claims files (gptlab/compare/claims.py): verdicts on a store whose truths are known, and one-line errors."""

import textwrap

import pytest
from compare_fixtures import build_store
from conftest import ROOT, run_gptlab

from gptlab.compare.claims import VERDICTS, load_claims, parse_claims
from gptlab.compare.claims_verdict import check
from gptlab.errors import GptlabError
from gptlab.report import write_report
from gptlab.verdicts import ClaimVerdict

HEAD = """
version = 1
[models]
code = "code"
prose = "prose"
gpt2 = "gpt2"
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = build_store(tmp_path_factory.mktemp("claims") / "r.sqlite")
    yield s
    s.close()


def run(store, body: str, head: str = HEAD):
    return check(parse_claims(head + textwrap.dedent(body), "claims.toml"), store, resamples=500)


def one(store, check_line: str, margins: str = ""):
    body = f'[[claims]]\nstatement = "s"\ncheck = {check_line}\n' + (f"margins = {margins}\n" if margins else "")
    [result] = run(store, body)
    return result


BPB_CODE = ('{{ kind = "less", left = {{ model = "{}", metric = "bpb", group = "code" }}, '
            'right = {{ model = "{}", metric = "bpb", group = "code" }} }}')


def test_verdict_values_are_the_words_of_the_claims_table():
    assert VERDICTS == tuple(ClaimVerdict)                                  # best first: `order` takes the worst
    assert [v.value for v in VERDICTS] == ["true", "mostly true", "inconclusive", "false"]
    assert ClaimVerdict.MOSTLY_TRUE == "mostly true" and f"{ClaimVerdict.FALSE}" == "false"


def test_the_code_model_beats_the_prose_model_on_code(store):
    r = one(store, BPB_CODE.format("code", "prose"))
    assert r.verdict is ClaimVerdict.TRUE
    assert 0.5 < r.margin.low < r.margin.value < r.margin.high < 1.1      # 2.3 - 1.5 bits, per-doc noise
    assert "code@240 1.5" in r.evidence and "prose@240 2.3" in r.evidence and "paired by document" in r.evidence
    assert one(store, BPB_CODE.format("prose", "code")).verdict is ClaimVerdict.FALSE


def test_margins_decide_between_true_and_mostly_true(store):
    code_wins = BPB_CODE.format("code", "prose")
    assert one(store, code_wins, "{ true = 0.9, mostly_true = 0.5 }").verdict is ClaimVerdict.MOSTLY_TRUE
    assert one(store, code_wins, "{ true = 5.0, mostly_true = 4.0 }").verdict is ClaimVerdict.INCONCLUSIVE
    assert one(store, BPB_CODE.format("code", "prose"),
               "{ true = 5.0, mostly_true = 4.0, false = 3.0 }").verdict is ClaimVerdict.FALSE


def test_equal_models_do_not_beat_each_other(store):
    same = BPB_CODE.format("code", "prose").replace('group = "code"', 'domain = "finance_sec"')
    r = one(store, same)
    assert r.verdict is ClaimVerdict.FALSE and r.margin.value == pytest.approx(0, abs=1e-12)
    assert r.margin.low == pytest.approx(0, abs=1e-12) and r.margin.high == pytest.approx(0, abs=1e-12)


def test_a_difference_within_the_noise_is_inconclusive(store):
    r = one(store, '{ kind = "less", left = { model = "code", metric = "failure_rate", domain = "general" }, '
                   'right = { model = "gpt2", metric = "failure_rate", domain = "general" } }')
    assert r.margin.value == pytest.approx(3 / 8 - 4 / 8)         # 4 of 8 vs 3 of 8 generations fail
    assert r.margin.low < 0 < r.margin.high and r.verdict is ClaimVerdict.INCONCLUSIVE


def test_pass_at_1_against_a_constant(store):
    r = one(store, '{ kind = "above", left = { model = "code", metric = "pass_at_k", probe = "code_quicksort" }, '
                   'value = 0.5 }')
    assert r.verdict is ClaimVerdict.FALSE                      # 1 of 8 passes
    assert r.parts[0][1].value == pytest.approx(0.125)
    assert r.margin.high < 0
    assert "pass@1 on code_quicksort" in r.evidence


def test_short_prompts_fail_more_than_their_long_twins(store):
    r = one(store, '{ kind = "above", left = { model = "code", metric = "prompt_length_effect" }, value = 0 }')
    assert r.verdict is ClaimVerdict.TRUE
    assert r.margin.value == pytest.approx(13 / 16 - 4 / 16)       # java_add 6/8 + quicksort 7/8 vs 2/8 + 2/8
    same = one(store, '{ kind = "greater", left = { model = "code", metric = "failure_rate", prompts = "short" }, '
                      'right = { model = "code", metric = "failure_rate", prompts = "long" } }')
    assert same.margin.value == pytest.approx(r.margin.value)
    gpt2 = one(store, '{ kind = "above", left = { model = "gpt2", metric = "prompt_length_effect" }, value = 0 }')
    assert gpt2.verdict is ClaimVerdict.FALSE                                 # everything fails either way: no effect


def test_order_of_three_models(store):
    r = one(store, '{ kind = "order", models = ["code", "prose", "gpt2"], measure = { metric = "bpb", '
                   'domain = "code_python" } }')
    assert r.verdict is ClaimVerdict.TRUE and "code@240" in r.evidence and "gpt2" in r.evidence
    wrong = one(store, '{ kind = "order", models = ["gpt2", "code", "prose"], measure = { metric = "bpb", '
                       'domain = "code_python" } }')
    assert wrong.verdict is ClaimVerdict.FALSE


def test_the_shipped_example_parses():
    cf = load_claims(ROOT / "examples" / "claims.toml")
    assert set(cf.models) == {"code", "prose"} and len(cf.claims) >= 5


@pytest.mark.parametrize("body,needle", [
    ('check = { kind = "less", left = { model = "C", metric = "bpb" }, right = { model = "code", metric = "bpb" } }',
     "check.left.model 'C' is not defined in [models]"),
    ('check = { kind = "less", left = { model = "code", metric = "bleu" }, '
     'right = { model = "code", metric = "bpb" } }', "check.left.metric must be one of"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb" }, value = "high" }',
     "check.value must be a number"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb" }, value = 1 }\nmargins = { true = "big" }',
     "margins.true must be a number"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb" }, value = 1 }\n'
     'margins = { true = 0.0, mostly_true = 0.5 }', "false <= mostly_true <= true"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb", probe = "x" }, value = 1 }',
     "unknown key 'probe' for metric bpb"),
    ('check = { kind = "above", left = { model = "code", metric = "failure_rate", mode = "typo" }, value = 1 }',
     "is not a failure mode"),
    ('check = { kind = "between", left = { model = "code", metric = "bpb" } }', "check.kind must be one of"),
    ('check = { kind = ["less"] }', "check.kind must be one of"),                     # was TypeError: unhashable
    ('check = { kind = "above", left = { model = "code", metric = {} }, value = 1 }', "check.left.metric must be"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb" }, value = 1e999 }',
     "check.value must be a number, got inf"),
    ('check = { kind = "above", left = { model = "code", metric = "bpb" }, value = 1' + "0" * 400 + " }",
     "check.value must be a number, got 1000"),                                          # was OverflowError
    ('check = { kind = "above", left = { model = "code", metric = "bpb", "\\u0007" = 1 }, value = 1 }',
     "unknown key '\\x07' for metric bpb"),                                          # control characters escaped
    ('check = { kind = "above", left = { model = "code", metric = "bpb" } }', "needs 'value'"),
    ('severity = 3\ncheck = { kind = "above", left = { model = "code", metric = "bpb" }, value = 1 }',
     "unknown key 'severity'"),
])
def test_bad_claims_are_one_line_errors_naming_the_claim(body, needle):
    text = (HEAD + '[[claims]]\nstatement = "fine"\ncheck = { kind = "less", left = { model = "code", '
            'metric = "bpb" }, right = { model = "prose", metric = "bpb" } }\n\n[[claims]]\n'
            'statement = "The bad one"\n' + body)
    with pytest.raises(GptlabError) as e:
        parse_claims(text, "claims.toml")
    msg = str(e.value)
    assert msg.startswith("claims.toml: claim 2 ('The bad one')") and needle in msg and msg.isprintable()


@pytest.mark.parametrize("left,needle", [
    ('{ model = "code", metric = "pass_at_k", probe = "quicksort" }', "probe 'quicksort' has no samples"),
    ('{ model = "code", metric = "bpb", domain = "rust" }', "domain 'rust' has no bpb"),
    ('{ model = "code", metric = "bpb", group = "math" }', "group 'math'"),
    ('{ model = "code", metric = "pass_at_k", probe = "general_water" }', "pass@k needs probes with tests"),
    ('{ model = "code", metric = "pass_at_k", probe = "code_quicksort", k = 9 }', "needs at least 9 samples"),
])
def test_claims_the_store_cannot_answer_are_errors_naming_the_claim(store, left, needle):
    with pytest.raises(GptlabError) as e:
        run(store, f'[[claims]]\nstatement = "Unanswerable"\ncheck = {{ kind = "above", left = {left}, value = 0 }}\n')
    assert str(e.value).startswith("claims.toml: claim 1 ('Unanswerable')") and needle in str(e.value)
    assert "\n" not in str(e.value)


def test_an_unknown_model_target_names_the_alias(store):
    head = HEAD.replace('gpt2 = "gpt2"', 'gpt2 = "runs/nowhere"')
    with pytest.raises(GptlabError, match=r"claims.toml: \[models\] gpt2: runs/nowhere: no results"):
        run(store, '[[claims]]\nstatement = "x"\ncheck = { kind = "above", left = { model = "gpt2", metric = "bpb" }, '
                   'value = 0 }\n', head)


def test_file_level_errors():
    with pytest.raises(GptlabError, match="version must be 1"):
        parse_claims(HEAD.replace("version = 1", "version = 2"), "c.toml")
    with pytest.raises(GptlabError, match="unknown top-level key 'model'"):
        parse_claims(HEAD + '[model]\nx = "y"\n', "c.toml")
    with pytest.raises(GptlabError, match="no \\[\\[claims\\]\\]"):
        parse_claims(HEAD, "c.toml")
    with pytest.raises(GptlabError, match="no such claims file"):
        load_claims("/nonexistent/claims.toml")
    with pytest.raises(GptlabError, match="version must be 1 .*got True"):
        parse_claims(HEAD.replace("version = 1", "version = true"), "c.toml")       # true == 1 passed before
    with pytest.raises(GptlabError, match="is a character device, not a claims file"):
        load_claims("/dev/zero")                                                  # was read until memory ran out
    with pytest.raises(GptlabError) as e:
        parse_claims(HEAD + '[[claims]]\nstatement = "two\\nlines"\ncheck = { kind = "less" }\n', "c.toml")
    assert str(e.value).startswith("c.toml: claim 1 ('two\\nlines')") and str(e.value).isprintable()


def test_check_command_prints_the_table_and_rejects_a_bad_claim(tmp_path):
    build_store(tmp_path / "r.sqlite").close()
    good = tmp_path / "good.toml"
    good.write_text(HEAD + '[[claims]]\nstatement = "Code model wins on code"\ncheck = ' +
                    BPB_CODE.format("code", "prose") + "\n")
    res = run_gptlab("check", good, "--db", tmp_path / "r.sqlite", "--resamples", 200, env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "Statement" in res.stdout and "Verdict" in res.stdout and "Evidence" in res.stdout
    assert "Code model wins on code" in res.stdout and "true" in res.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('metric = "bpb", group = "code" }, right', 'metric = "bpc" }, right'))
    res = run_gptlab("check", bad, "--db", tmp_path / "r.sqlite")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "claim 1 ('Code model wins on code')" in res.stderr


def test_report_renders_the_claims_table(store, tmp_path):
    claims = tmp_path / "claims.toml"
    claims.write_text(HEAD + '[[claims]]\nstatement = "Code model wins on code"\ncheck = ' +
                      BPB_CODE.format("code", "prose") + "\n")
    paths = write_report(store, ["code"], tmp_path / "report", claims=str(claims))
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    table = md.split("## Claims\n", 1)[1]
    assert "| Statement | Verdict | Evidence |" in table and "| Code model wins on code | true |" in table
    assert '<td class="good">true</td>' in page
    bad = tmp_path / "bad.toml"
    bad.write_text(claims.read_text().replace('"code", metric = "bpb", group', '"nobody", metric = "bpb", group'))
    with pytest.raises(GptlabError, match="claim 1"):
        write_report(store, ["code"], tmp_path / "report2", claims=str(bad))
    assert not (tmp_path / "report2" / "report.md").exists()


def test_a_check_may_be_a_table_of_its_own(store):
    [r] = run(store, '''
        [[claims]]
        statement = "Code model wins on code"
        margins = { true = 0.05 }
        [claims.check]
        kind = "less"
        left = { model = "code", metric = "bpb", group = "code" }
        right = { model = "prose", metric = "bpb", group = "code" }
        ''')
    assert r.verdict is ClaimVerdict.TRUE and r.statement == "Code model wins on code"
