"""The code chain: no_code, syntax_error, missing_requirement (incl. SQL on SQLite), test_failure (sandbox)."""

import pytest

from gptlab.diagnose import Sample, diagnose, diagnose_many
from gptlab.diagnose.languages import mask
from gptlab.diagnose.no_code import _is_prose, classify_line, ends_open, no_code
from gptlab.diagnose.program import build_program
from gptlab.diagnose.missing_requirement import VOCABULARY, known, missing_requirement, run_on_schema
from gptlab.diagnose.syntax_error import parse
from gptlab.sandbox import isolation

SCHEMA = ("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL);\n"
          "INSERT INTO orders VALUES (1, 'a', 10), (2, 'a', 5), (3, 'b', 7);\n")


def code(completion, language="python", prefix="def f(xs):\n", **kw):
    return Sample(id="t", domain="code", prompt="# task\n" + prefix, completion=completion, language=language,
                  code_prefix=prefix, **kw)


# ---------------------------------------------------------------- no_code

@pytest.mark.parametrize("language,line,kind", [
    ("python", "for n in nums:", "code"),
    ("python", "    const r = xs.map(x => x * 2);", "foreign"),
    ("python", "The function does not take any additional arguments.", "prose"),
    ("go", "os.environ['PORT'] = 8080", "foreign"),
    ("go", "\tr := []rune(s)", "code"),
    ("java", "        for (int i = 1; i < n; i++) {", "code"),
    ("java", "        best = values[0]", "foreign"),
    ("sql", " c.name, SUM(o.amount) AS total", "code"),
    ("jsx", "  useEffect(() => {", "code"),
    ("javascript", "  });", "neutral"),
    ("go", "var timeout = flag.Duration(\"t\", 5)", "code"),      # `var x =` is Go as well as JavaScript
    ("sql", "CREATE TABLE orders (", "code"),
    ("python", "return total", "plain"),
    ("python", "    _a() is None, _b, 1)", "code"),     # a word only Python has, no marker
    ("go", "    s = fmt", "code"),
    ("go", "    _a() is None, _b, 1)", "plain"),          # None is not Go's
    ("go", "    x = PropTypes.func", "plain"),            # a property named like a Go word is not Go
    ("java", "\tif i < t.Val {", "foreign"),                 # Go's `if` has no parentheses; `{` is everyone's
    ("java", "\t\tif t.Ch ts != nil {", "foreign"),
    ("java", "const propTypes = {", "foreign"),               # `const x =` is not Java's
    ("java", "        if (x == null) {", "code"),            # only what Java shares with others, and nobody else's
    ("go", "\tif err != nil {", "code"),
])
def test_line_classes(language, line, kind):
    assert classify_line(line, line, language) == kind


def test_no_code_for_prose_answer_and_for_other_language():
    prose = "    This function sorts the list. It picks a pivot and splits the list into two parts.\n"
    assert no_code(build_program("def f(xs):\n", prose, "python"), "python").failed
    python_in_go = "    return s[::-1]\n\ndef is_palindrome(s):\n    return s == s[::-1]\n"
    f = no_code(build_program("func Reverse(s string) string {\n", python_in_go, "go"), "go")
    assert f.failed and f.metrics["foreign_lines"] >= 2


def test_lines_valid_in_any_language_go_with_the_marked_lines_around_them():
    # Go in a Python probe: `port = "8080"` and `log.Printf(...)` carry no marker; the marked lines are Go
    go_in_python = ('\tport := os.Getenv("PORT")\n\tif port == "" {\n\t\tport = "8080"\n\t}\n'
                    '\tlog.Printf("listening on :%s", port)\n\thttp.ListenAndServe(":"+port, nil)\n}\n')
    f = no_code(build_program("import os\n\n\ndef get_port():\n", go_in_python, "python"), "python")
    assert f.failed and f.metrics["code_share"] == 0.0 and f.metrics["plain_lines"] == 2
    # the same unmarked lines in a Python answer are Python
    python = '    port = os.getenv("PORT")\n    if not port:\n        port = "8080"\n    return int(port)\n'
    assert not no_code(build_program("import os\n\n\ndef get_port():\n", python, "python"), "python").failed


def test_a_paragraph_of_prose_outweighs_a_short_line():
    tutorial = ("In this tutorial we build a profile page. It shows the name and the email of the user, and a "
                "loading message while the data is being fetched from the server.\n\nFirst, create a new app "
                "and open the project in your editor, then add a file for the component.\n\nNext, we will\n")
    f = no_code(build_program("export default function Profile({ id }) {\n", tutorial, "jsx"), "jsx")
    assert f.failed and f.metrics["prose_lines"] == 2 and f.metrics["junk_lines"] == 1   # "Next, we will"


def test_a_paragraph_that_mentions_a_call_is_still_prose():
    answer = ("A generator is a function that uses the yield keyword instead of return. Each time you call "
              "next() on it the function runs until the next yield statement, so the averages are computed "
              "one at a time instead of being stored in a list.\n")
    f = no_code(build_program("def window_avg(xs, k):\n", answer, "python"), "python")
    assert f.failed and f.metrics["prose_lines"] == 1
    assert not _is_prose("Then call sort(items) and print the result of len(items) to see it")  # 2 in 13


def test_code_with_a_docstring_and_a_comment_is_code():
    body = '    """Return the doubled values.\n\n    Longer explanation of what it does.\n    """\n' \
           "    # one pass\n    return [2 * x for x in xs]\n"
    assert not no_code(build_program("def f(xs):\n", body, "python"), "python").failed


def test_empty_completion_is_no_code_with_reason():
    d = diagnose(code(""))
    assert d.failures == ["no_code"] and d.evidence["no_code"]["reason"] == "empty completion"


# ---------------------------------------------------------------- syntax_error

def test_syntax_errors_name_line_and_message():
    assert parse("def f(:\n    pass\n", "python").error["line"] == 1
    go = parse("package main\nfunc main() {\n\tfmt.Println(1\n}\n", "go")
    assert not go.ok and go.error["message"].startswith(("missing", "unexpected"))
    assert not parse("public class A { void f() { return this).x; } }", "java").ok
    assert not parse("function A() { return <div><p>x</div>; }", "jsx").ok
    assert parse("function A() { return <div className='x'>Don't {1}</div>; }", "jsx").ok


def test_sql_syntax_uses_sqlglot_then_sqlite():
    assert parse("SELECT a FROM t GROUP BY a", "sql").ok
    assert parse("SELECT x::int FROM t", "sql").ok              # PostgreSQL cast, rendered for SQLite
    assert not parse("SELECT SUM(a FROM t", "sql").ok
    lenient = parse("SELECT a FROM t GROUP BY\nORDER BY a", "sql")   # sqlglot alone accepts this
    assert not lenient.ok and "SQLite" in lenient.error["message"]
    assert not parse("SELECT", "sql").ok


def test_truncated_trailing_helper_is_dropped_not_a_syntax_error():
    completion = "    return sorted(xs)\n\n\ndef test_f():\n    assert f([2, 1]) == [1, 2\n"
    d = diagnose(code(completion), execute=False)
    assert "syntax_error" not in d.failures and d.metrics["program_dropped_tail"] is True
    cut = "    return sorted(xs)\n\n\ndef test_f():\n    assert f([2, 1]) == [1, 2\nprint('x')\n"
    assert "syntax_error" in diagnose(code(cut), execute=False).failures   # cut, so not a token-limit tail


# ---------------------------------------------------------------- missing_requirement

def test_requirements_on_the_parse_tree():
    def missing(program, language, *req):
        return missing_requirement(parse(program, language).tree, program, language, req)
    assert not missing("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n", "python",
                       "recursion").failed
    f = missing("import os\ndef p():\n    return 8080\n", "python", "os_getenv", "recursion")
    assert f.failed and f.evidence["missing"] == ["os_getenv", "recursion"]
    assert not missing("import os\ndef p():\n    return int(os.environ['PORT'])\n", "python", "os_getenv").failed
    go = ('package main\nimport ("os"; "os/signal")\n'
          'func main() { c := make(chan os.Signal, 1); signal.Notify(c, os.Interrupt); <-c }\n')
    assert not missing(go, "go", "signal_handling", "channel").failed
    jsx = "function A({u}) { const [d, s] = useState(null); useEffect(() => { fetch(u) }, [u]); return <p/>; }"
    assert not missing(jsx, "jsx", "useState", "useEffect", "fetch", "arrow_function").failed
    assert missing(jsx, "jsx", "event_handler").failed
    java = "class A { int f(int n) { return n <= 1 ? 1 : n * f(n - 1); } }"
    assert not missing(java, "java", "recursion", "class").failed
    assert missing(java, "java", "loop").failed


def test_unknown_requirement_is_reported_not_failed():
    f = missing_requirement(parse("def f(): pass\n", "python").tree, "def f(): pass\n", "python", ("telepathy",))
    assert not f.failed and f.metrics["unknown_requirements"] == ["telepathy"]
    assert set(VOCABULARY["jsx"]) >= {"useState", "useEffect", "event_handler"}
    assert known("sql") == sorted(["group_by", "aggregate", "limit", "order_by", "join", "where", "having",
                                   "subquery", "window", "cte", "distinct"])
    assert known("go") == sorted(VOCABULARY["go"]) and known("cobol") == []


def test_sql_requirements_and_run_on_schema():
    kw = dict(language="sql", prefix="SELECT", schema=SCHEMA, requires=("group_by", "aggregate", "limit"))
    good = diagnose(code(" customer, SUM(amount) AS total FROM orders GROUP BY customer ORDER BY total DESC LIMIT 5;",
                         **kw))
    assert good.failures == [] and good.metrics["sql_rows"] == 2
    assert good.metrics["sql_columns"] == ["customer", "total"]
    plain = diagnose(code(" customer FROM orders WHERE id = 1 ORDER BY customer;", **kw))
    assert plain.failures == ["missing_requirement"]
    assert plain.evidence["missing_requirement"]["missing"] == ["group_by", "aggregate", "limit"]
    wrong = diagnose(code(" customer, SUM(total) FROM orders GROUP BY customer LIMIT 5;", **kw))
    assert "no such column: total" in wrong.evidence["missing_requirement"]["sqlite_error"]


def test_exists_and_in_are_subqueries():
    kw = dict(language="sql", prefix="SELECT", schema=SCHEMA, requires=("subquery",))
    for where in ("NOT EXISTS (SELECT 1 FROM orders o2 WHERE o2.id > o.id)",
                  "o.amount > (SELECT AVG(amount) FROM orders)", "o.id IN (SELECT id FROM orders)"):
        assert diagnose(code(f" o.customer FROM orders o WHERE {where};", **kw)).failures == [], where
    assert diagnose(code(" customer FROM orders WHERE amount > 10;", **kw)).failures == ["missing_requirement"]


def test_model_sql_cannot_attach_files_or_write(tmp_path):
    target = tmp_path / "x.db"
    assert "not authorized" in run_on_schema(f"ATTACH DATABASE '{target}' AS x", SCHEMA)["error"]
    assert not target.exists()
    assert "not authorized" in run_on_schema("DELETE FROM orders", SCHEMA)["error"]
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    assert "interrupted" in run_on_schema(slow, SCHEMA)["error"]
    assert "schema_error" in run_on_schema("SELECT 1", "CREATE TABLE (")


# ---------------------------------------------------------------- test_failure (the sandbox)

needs_sandbox = pytest.mark.skipif(isolation() is None, reason="no sandbox isolation on this machine")
TESTS = "assert f([3, 1, 2]) == [1, 2, 3]\nassert f([]) == []\n"


@needs_sandbox
def test_tests_run_in_the_sandbox_and_failures_carry_the_error():
    ok, wrong, raises, loops = diagnose_many([
        code("    return sorted(xs)\n", tests=TESTS),
        code("    return sorted(xs, reverse=True)\n", tests=TESTS),
        code("    return sorted(xs) - 1\n", tests=TESTS),
        code("    while True:\n        pass\n", tests=TESTS),
    ])
    assert ok.failures == [] and ok.passed is True and ok.metrics["tests"].startswith("passed")
    assert wrong.failures == ["test_failure"] and wrong.passed is False
    assert wrong.evidence["test_failure"]["error"] == "AssertionError"
    assert "TypeError" in raises.evidence["test_failure"]["error"]
    assert loops.evidence["test_failure"]["status"] == "timeout"


@needs_sandbox
def test_humaneval_style_check_gets_the_entry_point():
    tests = "def check(candidate):\n    assert candidate([2, 1]) == [1, 2]\n"
    d = diagnose(code("    return sorted(xs)\n", tests=tests, entry_point="f"))
    assert d.passed is True


def test_not_executed_is_never_a_pass_or_a_failure():
    d = diagnose(code("    return sorted(xs)\n", tests=TESTS), execute=False)
    assert d.passed is None and "test_failure" not in d.failures
    assert d.metrics["not_checked"]["test_failure"].startswith("not run")
    go = diagnose(code("\treturn s\n}\n", language="go", prefix="func F(s string) string {\n", tests="assert 1"))
    assert go.passed is None and "sandbox runs" in go.metrics["not_checked"]["test_failure"]


def test_unsupported_language_is_a_clear_note():
    d = diagnose(code("fn main() {}", language="rust"))
    assert d.failures == []
    assert "unsupported language 'rust'" in d.metrics["not_checked"]["syntax_error"]


@pytest.mark.parametrize("prefix,completion,language", [
    ("def square(x):", "\n    return x * x\n", "python"),
    ("public int add(int a, int b) {", "\n        return a + b;\n    }\n", "java"),
    ("for i in range(n):", "\n    total += values[i] * weights[i]\n", "python"),
])
def test_a_correct_one_line_body_is_code(prefix, completion, language):
    d = diagnose(Sample("one", "code", prefix, completion, language=language, code_prefix=prefix), execute=False)
    assert "no_code" not in d.failures and "syntax_error" not in d.failures, d.evidence


# ---------------------------------------------------------------- no_code against syntax_error on real junk
# (the real-output set's tuning half: junk in the probe's own language is broken code, other junk is no code)

def test_a_docstring_left_open_is_read_as_written():
    junk = ('        """Returnsast ex:\n            except for cname = dsign, context=None):\n'
            '    def __def (self, raiseit=True)\n                    self._buffer\n')
    assert ends_open("def square(x):\n" + junk, "python")
    f = no_code(build_program("def square(x):\n", junk, "python"), "python")
    assert not f.failed and f.metrics["code_lines"] >= 2      # broken Python, for syntax_error
    assert not ends_open('def square(x):\n    """Return the square of x."""\n', "python")
    closed = no_code(build_program("def square(x):\n", '    """Return the square of x."""\n', "python"), "python")
    assert closed.failed and closed.evidence["reason"] == "only comments and closing brackets"


LLMC_JUNK = (" anchors..sign a invalid - *\n 2,>.indentwidth\n        1):snan_\n        the elif called if self, "
             "already and bothisabstractmethod Look:]\n    and_\n   : if type None\n        flagssubclass(format "
             "(1 and(\n")


def test_junk_with_the_probes_own_words_is_broken_code_elsewhere_no_code():
    own = no_code(build_program("for i in range(n):\n", LLMC_JUNK, "python"), "python")
    assert not own.failed and own.metrics["junk_lines"] >= 3          # Python's `elif`, `self`, `None`
    other = no_code(build_program("func Reverse(s string) string {\n", LLMC_JUNK, "go"), "go")
    assert other.failed                                                 # the same junk is not Go


def test_without_a_code_line_in_the_program_the_whole_completion_decides():
    # SQL: the program is the first statement; junk there, then a real query, is broken code, not no code
    sql = " wibble frobnicate quux\n\nSELECT name, COUNT(*) AS n\nFROM orders\nGROUP BY name;\n"
    program = build_program("SELECT", sql, "sql")
    assert program.kept == " wibble frobnicate quux"
    f = no_code(program, "sql")
    assert not f.failed and f.metrics["judged_on"] == "whole completion" and f.metrics["code_lines"] >= 2
    # a plain first statement followed by Python is no SQL at all
    python = " total = a + b\n\ndef count(rows):\n    for r in rows:\n        print(r)\n    return len(rows)\n"
    assert no_code(build_program("SELECT", python, "sql"), "sql").failed
    assert not no_code(build_program("SELECT", python.split("\n\n")[0] + "\n", "sql"), "sql").failed


def test_a_program_with_code_keeps_its_verdict_whatever_follows_the_stop_rule():
    answer = "\n    return a + b;\n}\n\nx = [i for i in range(3)]\nprint(x)\nfor i in x:\n    print(i)\n"
    program = build_program("public int add(int a, int b) {", answer, "java")
    assert program.cut and "print" in program.read and "print" not in program.kept
    f = no_code(program, "java")
    assert not f.failed and "judged_on" not in f.metrics
    # the same Python with no Java before it is no code
    python = answer.split("}\n\n")[1]
    assert no_code(build_program("public int add(int a, int b) {", python, "java"), "java").failed


def test_a_plain_answer_followed_by_prose_keeps_its_verdict():
    talk = ("    return x * x\n\nThis function returns the square of its argument: it multiplies the number by "
            "itself and gives back the result.\nIt works for integers and for floats alike.\n")
    program = build_program("def square(x):\n", talk, "python")
    assert program.cut and "This function" in program.read
    f = no_code(program, "python")
    assert not f.failed and f.metrics["plain_lines"] == 1 and "judged_on" not in f.metrics


# Lines any language could have (`return other`) between Python docstrings: with no line marked by a language,
# what decides is whose own words the completion uses (the triple quote is Python's).
PYTHON_SOUP = ('        return other\n        """Returns the sign of the value\n        """\n'
               '        return value\n')


def test_statement_lines_in_junk_go_to_the_language_whose_own_words_it_uses():
    go = no_code(build_program("func Reverse(s string) string {\n", PYTHON_SOUP, "go"), "go")
    assert go.failed and go.metrics["plain_lines"] >= 2                 # Python's, not an attempt at Go
    python = no_code(build_program("def f(xs):\n", PYTHON_SOUP, "python"), "python")
    assert not python.failed


# ---------------------------------------------------------------- no_code on what the real sets showed (version 11)

GO_IN_JAVA = ("\tif i < t.Val {\n\t\treturn t.Field {\n\t}\n\tswitch c0 {\n\t}\n"
              "\tfor _, f := range t.Fields {\n\t\tif f.Name == name {\n\t\t\treturn f, nil\n\t\t}\n\t}\n")


def test_go_written_for_a_java_probe_is_no_code_though_its_braces_are_javas_too():
    f = no_code(build_program("public void put(K key, V value) {", GO_IN_JAVA, "java"), "java")
    assert f.failed and f.metrics["foreign_lines"] >= 4
    java = "\n        if (key == null) {\n            throw new IllegalArgumentException();\n        }\n"
    assert not no_code(build_program("public void put(K key, V value) {", java, "java"), "java").failed


def test_letter_soup_with_no_word_of_the_language_is_no_code():
    # a character-level model's 80 characters under a Python probe: statement-shaped, but no name is a word
    soup = ' so\n   #        turan 0::\n   dasern  =     "\n u\n'
    d = diagnose(code(soup, prefix="def quicksort(arr):"), execute=False)
    assert "no_code" in d.failures and "syntax_error" not in d.failures
    # names that are words or Python's own stay an attempt at code, however short
    assert not no_code(build_program("def f(xs):\n", "    total += values[i] * weights[i]\n", "python"),
                       "python").failed
    assert not no_code(build_program("", "__add__ = add\n__and__ = and_\n", "python"), "python").failed


def test_a_stray_sql_quote_does_not_hide_the_rest_of_the_completion():
    assert mask("SELECT a'b\nFROM t;\n", "sql").splitlines()[1] == "FROM t;"
    assert mask("SELECT 'a\nb' FROM t;", "sql") == "SELECT   \n   FROM t;"       # a closed one still spans lines


def test_the_first_line_continues_the_prefixs_unfinished_statement():
    answer = " * FROM orders\n\nThe orders table holds every order placed by a customer, with the amount paid.\n"
    f = no_code(build_program("SELECT", answer, "sql"), "sql")
    assert not f.failed and f.metrics["code_lines"] == 1
    junk = " (goodlines) Set. return\n\nThe orders table holds every order placed by a customer, and more.\n"
    assert no_code(build_program("SELECT", junk, "sql"), "sql").failed      # `SELECT` alone shows nothing


def test_a_paragraph_that_holds_one_construct_is_prose():
    # a depth-4 gptlab model (tests/data/diagnose_real_fresh3.jsonl): 10-K prose under a Python probe, one
    # `Plolang=None` in it
    paragraph = ("\n\nSpyinsic pythe less of the U.S. Councils, and setting personnels or internal potal for the "
                 "7 and 60.4.0.5.60.5/cms of line-ye, we will learning for set capinated, without or cirvaces, and as "
                 "well as in investments when it had drively. Mostretirement, case Plolang=None, generate the second "
                 "his quality and an antient with the col\n")
    f = no_code(build_program("def quicksort(arr):", paragraph, "python"), "python")
    assert f.failed and f.metrics["prose_lines"] == 1 and f.metrics["code_lines"] == 0
