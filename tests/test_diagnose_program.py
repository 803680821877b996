"""The stop rule (program.py) and the lexer under it (languages.mask): what ends up in the program."""

from gptlab.diagnose.languages import mask
from gptlab.diagnose.program import build_program


def test_python_keeps_helpers_and_cuts_usage_and_prose():
    completion = ("    return helper(arr)\n\n\ndef helper(arr):\n    return sorted(arr)\n\n\n"
                  "if __name__ == \"__main__\":\n    print(quicksort([3, 1]))\nThis sorts.\n")
    p = build_program("def quicksort(arr):\n", completion, "python")
    assert p.kept.endswith("return sorted(arr)\n\n\n")
    assert p.cut.startswith("top-level line 'if __name__")
    assert p.later_definitions == [completion.index("def helper")]


def test_python_unindented_body_after_a_bare_header_is_kept_whole():
    p = build_program("def f(x):\n", "return x\nprint(f(1))\n", "python")
    assert p.text == "def f(x):\nreturn x\nprint(f(1))\n" and p.cut is None


def test_python_prose_after_a_docstring_body_is_cut_at_once():
    p = build_program('def f(x):\n    """Doc."""\n', "The function returns x.\n", "python")
    assert p.kept == "" and p.cut.startswith("top-level line")


def test_python_script_probe_without_open_block_is_not_cut():
    p = build_program("import os\n", "port = int(os.getenv('PORT', '8080'))\nprint(port)\n", "python")
    assert p.cut is None and p.kept.endswith("print(port)\n")


def test_brace_language_uses_depth_not_indentation_and_ignores_braces_in_strings():
    prefix = 'package main\n\nfunc Reverse(s string) string {\n'
    completion = ('r := []rune(s) // "}" in a comment\ns := "}}}"\nreturn string(r)\n}\n\n'
                  'func main() {\n\tfmt.Println(Reverse("hi"))\n}\nThe function reverses a string.\n')
    p = build_program(prefix, completion, "go")
    assert p.kept.endswith('fmt.Println(Reverse("hi"))\n}\n')
    assert p.cut == "top-level line 'The function reverses a string.'"


def test_jsx_text_with_apostrophe_does_not_swallow_the_rest():
    prefix = "function Card() {\n"
    completion = "  return <p>Don't panic</p>;\n}\n\nexport default Card;\nNow we render it.\n"
    p = build_program(prefix, completion, "jsx")
    assert p.kept.endswith("export default Card;\n")
    assert "Now we render" not in p.text


def test_sql_first_statement_then_blank_line_rule():
    p = build_program("SELECT", " a FROM t;\nSELECT b FROM u;", "sql")
    assert p.text == "SELECT a FROM t;" and p.cut == "end of the first statement"
    p = build_program("SELECT", " a\nFROM t\n\nThis returns a.", "sql")
    assert p.text == "SELECT a\nFROM t" and p.cut == "blank line after the statement"
    p = build_program("SELECT", " 'a;b' FROM t -- ; not here\n", "sql")
    assert p.cut is None


def test_end_of_text_marker_and_fences():
    p = build_program("def f():\n", "    return 1\n<|endoftext|>def g(): pass", "python")
    assert p.kept == "    return 1\n" and p.cut == "end-of-text marker"
    p = build_program("", "```python\nprint(1)\n```\nMore text", "python")
    assert p.text == "print(1)\n" and p.cut == "markdown fence"


def test_read_is_the_completion_before_the_marker_or_fence_past_the_stop_rule():
    p = build_program("def f():\n", "    return 1\nprint(f())\n<|endoftext|>def g(): pass", "python")
    assert p.kept == "    return 1\n" and p.read == "    return 1\nprint(f())\n"
    p = build_program("SELECT", " a FROM t;\nSELECT b FROM u;\n```\nprose", "sql")
    assert p.kept == " a FROM t;" and p.read == " a FROM t;\nSELECT b FROM u;\n"


def test_without_tail_drops_the_last_later_definition():
    completion = "    return 1\n\ndef g():\n    return 2\n\ndef h(:\n"
    p = build_program("def f():\n", completion, "python")
    assert len(p.later_definitions) == 2
    shorter = p.without_tail()
    assert shorter.dropped_tail and "def h" not in shorter.text and "def g" in shorter.text
    assert shorter.metrics()["program_dropped_tail"] is True and shorter.read == p.read == completion


def test_mask_blanks_strings_and_comments_but_keeps_layout():
    src = 'x = "a # b"  # note\ny = \'\'\'multi\nline\'\'\'\n'
    m = mask(src, "python")
    assert len(m) == len(src) and m.count("\n") == src.count("\n")
    assert "note" not in m and "multi" not in m and "#" not in m
    assert m.startswith("x = ") and "y = " in m
    go = 'a := `raw\n{`\n/* { */ b := \'{\'\n'
    assert mask(go, "go").count("{") == 0
