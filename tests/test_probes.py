"""Probe suites: the shipped default suite is complete and its tests are right; bad suites fail with one
line naming the probe and the field."""

import pytest

from conftest import run_gptlab
from gptlab.errors import GptlabError
from gptlab.probes import load_suite, parse_suite

HEADER = 'name = "t"\nversion = "1"\n'


def _suite(body: str):
    return parse_suite(HEADER + body, "t.toml")


def test_default_suite_covers_the_issue():
    s = load_suite("default")
    by = {p.name: p for p in s.probes}
    domains = {p.domain for p in s.probes}
    assert {"code", "general", "finance"} <= domains and s.version
    assert by["code_quicksort"].prompt == "def quicksort(arr):" and by["code_quicksort"].entry_point == "quicksort"
    sql = by["code_sql"]
    assert sql.schema and {"group_by", "aggregate", "limit"} <= set(sql.requires) and sql.language == "sql"
    assert by["code_react"].language == "jsx" and by["code_go"].language == "go"
    assert "SIGINT" in by["code_go"].prompt and "DataFetcher" in by["code_react"].prompt
    one_liners = {"def quicksort(arr):", "def square(x):", "public int add(int a, int b) {", "for i in range(n):",
                  "public void put(K key, V value) {"}
    assert one_liners <= {p.prompt for p in s.probes}
    twins = [p for p in s.probes if p.twin_of]
    assert len(twins) >= 3
    for t in twins:
        short = by[t.twin_of]
        assert len(t.prompt) > 2 * len(short.prompt) and t.domain == short.domain and t.language == short.language
    for p in s.probes:
        if p.code_prefix:
            assert p.prompt.endswith(p.code_prefix)
    assert len(s.probes) >= 20 and len({p.probe_hash for p in s.probes}) == len(s.probes)


REFERENCE = {  # correct solutions: the shipped tests must pass them, and fail a wrong one
    "quicksort": ("    return sorted(arr)\n", "    return arr\n"),
    "dedupe": ("    out = []\n    for x in items:\n        if x not in out:\n            out.append(x)\n    return out\n",
               "    items[:] = list(dict.fromkeys(items))\n    return items\n"),
    "square": ("    return x * x\n", "    return x + x\n"),
}


def test_default_suite_tests_accept_right_and_reject_wrong_code():
    for p in load_suite().probes:
        if not p.tests:
            continue
        good, bad = REFERENCE[p.entry_point]
        prefix = p.code_prefix if p.code_prefix.endswith("\n") else p.code_prefix + "\n"
        exec(compile(prefix + good + p.tests, p.name, "exec"), {})          # our own trusted code
        with pytest.raises(AssertionError):
            exec(compile(prefix + bad + p.tests, p.name, "exec"), {})


def test_probe_hash_tracks_what_is_sampled_or_judged():
    base = '[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "python"\nprompt = "def f(x):"\n' \
           'code_prefix = "def f(x):"\ntests = "assert f(1) == 2"\n'
    h = _suite(base).probes[0].probe_hash
    assert _suite(base).probes[0].probe_hash == h
    assert _suite(base + 'description = "new words"\n').probes[0].probe_hash == h
    assert _suite(base.replace("def f(x):", "def f(x): ")).probes[0].probe_hash != h
    assert _suite(base.replace("f(1) == 2", "f(2) == 3")).probes[0].probe_hash != h
    assert parse_suite(HEADER.replace('"1"', '"2"') + base, "t.toml").probes[0].probe_hash == h


@pytest.mark.parametrize("body, words", [
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\ncolour = "red"\n', ["'a'", "unknown field 'colour'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "python"\nprompt = "def f():"\ncode_prefix = "def f():"\n'
     'tests = "assert f( == 1"\n', ["'a'", "'tests'", "not valid Python"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "python"\nprompt = "def f():"\ncode_prefix = "def f():"\n'
     'tests = "f()"\n', ["'a'", "'tests'", "no assert"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "python"\nprompt = "def f():"\ncode_prefix = "def f():"\n'
     'tests = "assert g() == 1"\n', ["'a'", "'tests'", "'f'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "go"\nprompt = "x"\ntests = "assert 1"\n', ["'a'", "'tests'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "cobol"\nprompt = "x"\n', ["'a'", "'language'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "sql"\nprompt = "SELECT"\ncode_prefix = "FROM"\n',
     ["'a'", "'code_prefix'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\nschema = "CREATE TABLE t (a)"\n', ["'a'", "'schema'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\nrequires = "limit"\n', ["'a'", "'requires'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "sql"\nprompt = "x"\nrequires = ["grup_by"]\n',
     ["'a'", "'requires'", "grup_by"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\nrequires = ["limit"]\n', ["'a'", "'requires'", "language"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = 3\n', ["'a'", "'prompt'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\n', ["'a'", "'prompt'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\ntwin_of = "b"\n', ["'a'", "'twin_of'"]),
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\n[[probes]]\nname = "a"\ndomain = "code"\nprompt = "y"\n',
     ["'a'", "twice"]),
    ('[[probes]]\nname = "Bad Name"\ndomain = "code"\nprompt = "x"\n', ["'Bad Name'", "'name'"]),
    ('[[probes]]\nname = "a\\n"\ndomain = "code"\nprompt = "x"\n', ["'a\\n'", "'name'"]),   # `$` matched before \n
    ('[[probes]]\nname = "a"\ndomain = "code"\nlanguage = "python"\nprompt = "def f():"\ncode_prefix = "def f():"\n'
     'tests = "assert f(' + '1+' * 50_000 + '1)"\n', ["'a'", "'tests'", "nested too deeply"]),   # was RecursionError
    ('description = 5\n[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x"\n', ["'description'"]),
    ('"\\u001b[2J" = 1\n', ["unknown top-level key '\\x1b[2J'"]),           # control characters quoted escaped
    ('[[probes]]\nname = "a"\ndomain = "code"\nprompt = "x\n', ["invalid TOML"]),
    ('', ["no [[probes]]"]),
])
def test_bad_suites_fail_with_one_line_naming_probe_and_field(body, words):
    with pytest.raises(GptlabError) as e:
        _suite(body)
    msg = str(e.value)
    assert msg.isprintable() and msg.startswith("t.toml")
    for w in words:
        assert w in msg


def test_suite_header_is_checked():
    with pytest.raises(GptlabError, match="version"):
        parse_suite('name = "t"\n[[probes]]\nname = "a"\ndomain = "d"\nprompt = "x"\n', "t.toml")
    with pytest.raises(GptlabError, match="unknown top-level key 'probe'"):
        parse_suite(HEADER + '[[probe]]\nname = "a"\n', "t.toml")


def test_probes_command_lists_and_rejects(tmp_path):
    r = run_gptlab("probes")
    assert r.returncode == 0 and "code_quicksort" in r.stdout and "sec_ifrs" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(HEADER + '[[probes]]\nname = "q"\ndomain = "code"\nprompt = "x"\nmax_tokens = 5\n')
    r = run_gptlab("probes", bad)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("gptlab: error:") and "'q'" in r.stderr and "max_tokens" in r.stderr


def test_suite_files_that_are_not_suites_are_refused_in_one_line(tmp_path):
    (tmp_path / "default").mkdir()                     # a folder named like a shipped suite does not hide it
    r = run_gptlab("probes", "default", cwd=tmp_path)
    assert r.returncode == 0 and "code_quicksort" in r.stdout
    for path in (tmp_path, "/dev/zero"):
        with pytest.raises(GptlabError, match="not a suite file") as e:
            load_suite(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)

