"""Property-based fuzzing of the files users hand to gptlab: claims files (`gptlab check`), probe suites
(`gptlab probes`) and sample lines (`gptlab diagnose`). Whatever the input (mutations of the shipped
examples, random TOML documents, random text and bytes, random JSON lines), the library returns a result or
raises GptlabError with a one-line message; any other exception would reach the user as "gptlab: error:
unexpected ..." with exit status 1. Bugs the fuzzing found are kept as explicit examples (@example) and in
the regression tests at the end; a few CLI runs check the exit status itself.

    python -m pytest tests/test_fuzz_inputs.py          (deterministic: derandomize=True, ~1 minute)
"""

import copy
import datetime
import json
import math
import os
import re
import tomllib

import pytest
from conftest import ROOT, run_gptlab
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gptlab.compare.claims import KINDS, METRICS, load_claims, parse_claims
from gptlab.diagnose import MODES, io
from gptlab.diagnose.pipeline import diagnose_many
from gptlab.errors import GptlabError
from gptlab.probes import LANGUAGES, Probe, describe, load_suite, parse_suite
from toml_writer import dump

FUZZ = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FEWER = settings(FUZZ, max_examples=150)

CLAIMS_TEXT = (ROOT / "examples" / "claims.toml").read_text(encoding="utf-8")
SUITE_TEXT = (ROOT / "gptlab" / "probes" / "suites" / "default.toml").read_text(encoding="utf-8")
CLAIMS = tomllib.loads(CLAIMS_TEXT)
SUITE = tomllib.loads(SUITE_TEXT)

# Strings that have broken parsers before: control characters, line separators, surrogates, NUL, code that
# the Python parser cannot build (deep nesting: RecursionError; long unary chains: MemoryError).
NASTY = ["", " ", "\n", "a\nb", "\r", "\t", "\x00", "x\x00y", "\x1b[2J", "\u2028", "\x85", "\ufeff", "\ufffd",
         "\ud800", "é", "日本語", "🙂", "a" * 5000, "(" * 300 + ")" * 300, "-" * 200_000 + "1",
         "assert f(" + "1+" * 50_000 + "1)", "assert f(1) == 2", "def f(x):", "-1", "nan", "None"]
VOCAB = sorted({*KINDS, *METRICS, *MODES, *LANGUAGES, "any", "short", "long", "lower", "higher", "code",
                "prose", "general", "finance", "failure_rate", "pass_at_k", "recursion", "group_by", "limit",
                "code_quicksort", "quicksort", "dedupe"})
KEYS = sorted({*CLAIMS, "statement", "comment", "check", "margins", "true", "mostly_true", "false", "kind",
               "left", "right", "value", "models", "measure", "better", "model", "metric", "domain", "group",
               "mode", "probe", "prompts", "k", "max_tokens", "of", *Probe.__dataclass_fields__, *SUITE})
NUMBERS = [0, 1, -1, 2, 9, 2**31, 2**63 - 1, -2**63, 2**64, 10**30, -10**30, 10**400, 0.5, -0.0, 1e308, 1e-308,
           math.inf, -math.inf, math.nan]

texts = st.one_of(st.text(max_size=20), st.sampled_from(NASTY), st.sampled_from(VOCAB),
                  st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=8))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=10), st.sampled_from(["", "a\nb", "\x00", "\ud800", "é"]))
scalars = st.one_of(
    texts, st.sampled_from(NUMBERS), st.integers(), st.floats(), st.booleans(),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 1, 1)), st.dates(),
    st.times())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=4)), max_leaves=10)


def one_line(e: GptlabError) -> str:
    msg = str(e)
    assert msg and msg.isprintable(), repr(msg)[:400]     # no newline, no control character, no surrogate
    return msg


def printable(*texts: str):
    """What was read can be printed and stored: UTF-8 can encode it (no unpaired surrogate)."""
    for text in texts:
        text.encode("utf-8")


def _nodes(node):
    """Every table and array in a parsed document (the places a mutation can land)."""
    if isinstance(node, (dict, list)):
        yield node
        for child in (node.values() if isinstance(node, dict) else node):
            yield from _nodes(child)


@st.composite
def mutations_of(draw, base):
    """`base` with one to four of its tables or arrays changed: a key set to a random value, removed, or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        nodes = list(_nodes(doc))
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "vocab"]))
        if isinstance(node, list):
            if not node:
                node.append(draw(values))
                continue
            i = draw(st.integers(0, len(node) - 1))
            if action == "delete":
                del node[i]
            else:
                node[i] = draw(values if action == "set" else st.sampled_from(VOCAB))
            continue
        key = draw(st.one_of(st.sampled_from(sorted(node) or ["x"]), keys))
        if action == "delete":
            node.pop(key, None)
        else:
            node[key] = draw(values if action == "set" else st.one_of(st.sampled_from(VOCAB),
                                                                       st.sampled_from(NUMBERS)))
    return doc


@st.composite
def spliced(draw, text: str):
    """`text` with a few random slices cut out or random characters put in: reaches the TOML decoder."""
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:i] + text[i + draw(st.integers(1, 40)):]
        else:
            text = text[:i] + draw(st.one_of(texts, st.sampled_from(['"', "'''", "[", "]]", "=", "{", "\n[[claims]]\n",
                                                                     "\n[[probes]]\n"]))) + text[i:]
    return text


# ---------------------------------------------------------------- claims files


def check_claims(text: str):
    try:
        cf = parse_claims(text, "claims.toml")
    except GptlabError as e:
        assert one_line(e).startswith("claims.toml")
        return None
    assert cf.claims and cf.models
    printable(cf.title, *cf.models, *cf.models.values(), *(c.statement + c.comment for c in cf.claims))
    return cf


@FUZZ
@given(doc=mutations_of(CLAIMS))
# Found by the fuzzing (each failed before its fix): a key with a control character quoted raw; a list where
# a name was expected (TypeError: unhashable). Found reading the code, kept here: numbers past float range
# (OverflowError), a statement that is two lines.
@example(doc={**CLAIMS, "\x1f": ""})
@example(doc={**CLAIMS, "models": {"\x1f": []}})
@example(doc={**CLAIMS, "claims": [{**CLAIMS["claims"][0], "check": {"kind": ["less"]}}]})
@example(doc={**CLAIMS, "temperature": 10**400})
@example(doc={**CLAIMS, "claims": [{"statement": "two\nlines", "check": {"kind": "less"}}]})
def test_mutated_claims_files_parse_or_fail_in_one_line(doc):
    check_claims(dump(doc, ascii_only=True))


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_random_toml_documents_as_claims_parse_or_fail_in_one_line(doc):
    check_claims(dump(doc, ascii_only=True))


@FUZZ
@given(text=st.one_of(st.text(max_size=300), spliced(CLAIMS_TEXT)))
# Found reading the code: tomllib raises ValueError (an integer over 4,300 digits) and RecursionError (deep
# nesting), not only TOMLDecodeError; a str with an unpaired surrogate (no file can hold one) would break
# printing and the store later.
@example(text="a = " + "9" * 5000)
@example(text="a = " + "[" * 5000 + "]" * 5000)
@example(text=CLAIMS_TEXT.replace("Short prompts", "Short \ud800 prompts"))
def test_random_text_as_claims_parses_or_fails_in_one_line(text):
    check_claims(text)


@FEWER
@given(raw=st.one_of(st.binary(max_size=300), st.sampled_from([b"\xff\xfe", CLAIMS_TEXT.encode("utf-16"),
                                                               CLAIMS_TEXT.encode()[:-7] + b"\xe9\n"])))
def test_random_bytes_as_a_claims_file_load_or_fail_in_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "claims.toml"
    path.write_bytes(raw)
    try:
        load_claims(path)
    except GptlabError as e:
        assert str(path) in one_line(e)


# ---------------------------------------------------------------- probe suites


def check_suite(text: str):
    try:
        suite = parse_suite(text, "t.toml")
    except GptlabError as e:
        assert one_line(e).startswith("t.toml")
        return None
    assert suite.probes and all(p.probe_hash for p in suite.probes)
    assert all(re.fullmatch(r"[a-z0-9_]+", p.name) for p in suite.probes)
    printable(suite.name, suite.description, *(json.dumps(p.spec(), ensure_ascii=False) for p in suite.probes))
    return suite


@st.composite
def mutated_suites(draw):
    """The default suite with one or two probes (and perhaps the header) mutated: every probe stays in, so the
    checks that span probes (twins, duplicate names) run too."""
    doc = copy.deepcopy(SUITE)
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(doc["probes"]) - 1))
        doc["probes"][i] = draw(mutations_of(doc["probes"][i]))
    if draw(st.integers(0, 4)) == 0:
        doc = draw(mutations_of(doc))
    return doc


@FUZZ
@given(doc=mutated_suites())
# Found by the fuzzing: a key or probe name with a control character quoted raw. Found reading the code:
# tests the Python parser gives up on (MemoryError, RecursionError), a description that is not a string
# (`gptlab probes` then failed with AttributeError), a name ending in a newline that passed `^[a-z0-9_]+$`.
@example(doc={**SUITE, "\x1f": ""})
@example(doc={**SUITE, "probes": [{**SUITE["probes"][0], "\x1f": ""}]})
@example(doc={**SUITE, "probes": [{**SUITE["probes"][0], "name": "\x1f", "code_prefix": []}]})
@example(doc={**SUITE, "probes": [{**SUITE["probes"][1], "tests": "-" * 200_000 + "1"}]})
@example(doc={**SUITE, "probes": [{**SUITE["probes"][1], "tests": "assert f(" + "1+" * 50_000 + "1)"}]})
@example(doc={**SUITE, "description": 5})
@example(doc={**SUITE, "probes": [{**SUITE["probes"][1], "name": "dedupe\n"}]})
def test_mutated_suites_parse_or_fail_in_one_line(doc):
    suite = check_suite(dump(doc, ascii_only=True))
    if suite is not None:
        describe(suite, full=True)                   # what `gptlab probes` prints


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=5))
def test_random_toml_documents_as_suites_parse_or_fail_in_one_line(doc):
    check_suite(dump(doc, ascii_only=True))


@FUZZ
@given(text=st.one_of(st.text(max_size=300), spliced(SUITE_TEXT)))
# Found by the fuzzing (3,000-example run): an unpaired surrogate in tests made ast.parse raise
# UnicodeEncodeError. Found reading the code: tomllib's ValueError and RecursionError, as for claims.
@example(text=SUITE_TEXT.replace("assert dedupe([]) == []", "assert dedupe([]) == ['\ud800']"))
@example(text="a = " + "9" * 5000)
@example(text="a = " + "{b = " * 5000 + "1" + "}" * 5000)
def test_random_text_as_a_suite_parses_or_fails_in_one_line(text):
    check_suite(text)


@FEWER
@given(raw=st.one_of(st.binary(max_size=300), st.sampled_from([b"\xff\xfe", SUITE_TEXT.encode("utf-16")])))
def test_random_bytes_as_a_suite_file_load_or_fail_in_one_line(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzz") / "suite.toml"
    path.write_bytes(raw)
    try:
        load_suite(path)
    except GptlabError as e:
        one_line(e)


# ---------------------------------------------------------------- diagnose input lines

SAMPLE_FIELDS = ["id", "domain", "prompt", "completion", "language", "code_prefix", "tests", "requires", "schema",
                 "entry_point", "probe", "max_tokens", "temperature", "labels"]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(NUMBERS[:-4]),
                         st.floats(allow_nan=True, allow_infinity=True), texts,
                         st.sampled_from(["x" * 70_000, "the same words again " * 4000]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3)), max_leaves=8)
good_values = {"id": st.one_of(st.text(max_size=10), st.integers()), "domain": st.sampled_from(["code", "general",
               "finance", " Code ", "x\x00"]), "prompt": texts, "completion": texts,
               "language": st.sampled_from([*LANGUAGES, "py", "rust", "", " Python "]),
               "code_prefix": texts, "tests": st.one_of(texts, st.lists(texts, max_size=3)),
               "requires": st.one_of(st.lists(st.sampled_from(VOCAB), max_size=3), texts),
               "schema": st.sampled_from(["CREATE TABLE t (a INTEGER);", "CREATE TABLE", ""]),
               "entry_point": st.sampled_from(["f", "quicksort", "", "1x"]), "probe": texts,
               "max_tokens": st.sampled_from([80, True, -1, 10**30]), "temperature": json_scalars}


@st.composite
def sample_objects(draw):
    """A JSON object shaped like a sample: the four required fields usually there, values usually the right
    type, every other field sometimes present and sometimes of a wrong type."""
    obj = {}
    for name in SAMPLE_FIELDS:
        if draw(st.integers(0, 9)) < (8 if name in ("id", "domain", "prompt", "completion") else 3):
            obj[name] = draw(good_values[name] if name in good_values and draw(st.integers(0, 4)) else json_values)
    return obj


def _encode(obj, ensure_ascii: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", errors="surrogatepass")


@st.composite
def jsonl_lines(draw):
    kind = draw(st.sampled_from(["sample", "sample", "sample", "value", "bytes", "corrupt"]))
    if kind == "value":
        return _encode(draw(json_values), draw(st.booleans()))
    if kind == "bytes":
        return draw(st.binary(max_size=60)).replace(b"\n", b" ")
    line = _encode(draw(sample_objects()), draw(st.booleans()))
    if kind == "corrupt":        # invalid UTF-8, a NUL, or a cut somewhere in the line
        i = draw(st.integers(0, len(line)))
        line = line[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"", b"\\"])) + \
            line[i + draw(st.integers(0, 2)):]
    return line


@FUZZ
@given(lines=st.lists(jsonl_lines(), min_size=1, max_size=6))
# Found by the fuzzing (3,000-example run): "prompt": null passed as a sample, and the table then failed
# (AttributeError). Found reading the code: an unpaired surrogate in an id, domain or probe name made the
# table unprintable (UnicodeEncodeError), a control character in one could drive the terminal.
@example(lines=[b'{"id": "", "domain": "code", "prompt": null, "completion": null}'])
@example(lines=[_encode({"id": "\ud800", "domain": "general\x1b", "prompt": "p", "completion": "c",
                         "probe": "\udfff"}, False)])
def test_any_jsonl_line_becomes_a_sample_or_an_input_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "s.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = list(io.read_lines(path))
    assert len(rows) == sum(1 for line in lines if line.strip())
    for row in rows:
        assert (row.sample is None) != (row.error is None)
        if row.error is not None:
            assert row.error.message.isprintable() and row.error.message.startswith(f"line {row.number}: ")
    samples = [r.sample for r in rows if r.sample is not None]
    assert len(diagnose_many(samples, execute=False)) == len(samples)
    warnings = []
    try:
        rows, results = io.diagnose_file(path, execute=False, warn=warnings.append)
    except GptlabError as e:
        assert not samples and ("no line is a valid sample" in one_line(e) or "no samples" in str(e))
        return
    assert samples and len(results) == len(rows) and len(warnings) <= io.MAX_WARNINGS + 1
    io.render_report(rows, results).encode("utf-8")                     # printable: no surrogate left
    assert len([json.loads(line) for line in io.render_json_lines(results).splitlines()]) == len(rows)


# ---------------------------------------------------------------- regressions and the command line


def test_files_that_are_not_regular_files_are_one_line_errors(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)                                       # no writer: reading it would block forever
    for path in ["/dev/zero", tmp_path, fifo]:
        for load in (load_claims, load_suite):
            with pytest.raises(GptlabError) as e:
                load(path)
            assert str(path) in one_line(e.value)


def test_a_huge_file_is_refused_unread(tmp_path):
    for load, name in ((load_claims, "claims.toml"), (load_suite, "suite.toml")):
        path = tmp_path / name
        with open(path, "wb") as f:                      # sparse: no disk used
            f.truncate(2**30)
        with pytest.raises(GptlabError, match="larger than"):
            load(path)


@pytest.mark.parametrize("text, needle", [
    ("temperature = 1e999", "temperature must be a number"),
    ("temperature = " + "9" * 400, "temperature must be a number"),
    ("version = true", "version must be 1"),
])
def test_claims_header_regressions(text, needle):
    body = CLAIMS_TEXT.replace("version = 1\n", "version = 1\n" + text + "\n") if "version" not in text \
        else CLAIMS_TEXT.replace("version = 1\n", text + "\n")
    with pytest.raises(GptlabError, match=needle) as e:
        parse_claims(body, "c.toml")
    one_line(e.value)


def test_cli_exit_status_on_fuzzed_inputs(tmp_path):
    """What the fuzzing found, as a user meets it: one line on stderr and exit status 2, never 1."""
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS_TEXT.replace('statement = "pass@1 on code_quicksort is above 0.5"',
                                          'statement = "two\\nlines"\nmargins = { true = ' + "9" * 400 + " }"))
    suite = tmp_path / "suite.toml"
    suite.write_text(re.sub(r"^description = .*$", "description = 5", SUITE_TEXT, count=1, flags=re.MULTILINE))
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(_encode({"id": "\ud800", "domain": "general", "prompt": "p", "completion": " c."}, False)
                        + b'\n{"id": 2, "domain": "code", "prompt": null, "completion": null}\n')
    for args in (["check", claims, "--db", tmp_path / "none.sqlite"], ["probes", suite], ["probes", "/dev/zero"],
                 ["check", "/dev/zero"]):
        out = run_gptlab(*args, timeout=60)
        assert out.returncode == 2 and out.stdout == "", (args, out.stderr)
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("gptlab: error:"), (args, out.stderr)
        assert "unexpected" not in out.stderr
    out = run_gptlab("diagnose", samples, "--no-exec", timeout=60)
    assert out.returncode == 0 and "\ufffd" in out.stdout and "(empty prompt)" in out.stdout, out.stderr
