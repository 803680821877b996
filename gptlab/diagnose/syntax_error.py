"""syntax_error: the program (program.py) does not parse in its language.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_code.py -k syntax

Parsers: Python's own (`ast.parse`, then `compile` for the errors the compiler finds after parsing, such
as `return` outside a function); tree-sitter grammars from the per-language wheels for Go, Java and
JavaScript/JSX (a tree containing an ERROR or MISSING node does not parse); for SQL, sqlglot (its generic
dialect, which accepts PostgreSQL and SQLite forms; a SELECT with nothing selected is an error too), then
SQLite's own parser on sqlglot's SQLite rendering, which catches what sqlglot reads too leniently.
The evidence names the first error: its line in the program, the parser's message and the line's text.
"""

from __future__ import annotations

import ast
import re
import sqlite3
import threading
import warnings
from dataclasses import dataclass

import tree_sitter
import tree_sitter_go
import tree_sitter_java
import tree_sitter_javascript

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

_GRAMMARS = {"go": tree_sitter_go, "java": tree_sitter_java}     # else JavaScript's, which includes JSX
PROGRAM_FILE = "<model program>"   # the file name a model's Python program is parsed under
_PARSERS: dict = {}
_LOCK = threading.Lock()


@dataclass
class Parsed:
    ok: bool
    tree: object = None              # ast.Module | tree_sitter.Tree | sqlglot Expression
    error: dict | None = None        # {"line", "column", "message", "code"}


def parse(program: str, language: str) -> Parsed:
    if language == "python":
        return _parse_python(program)
    if language == "sql":
        return _parse_sql(program)
    return _parse_tree_sitter(program, language)


@detector("syntax_error", scope="code")
def syntax_error(parsed: Parsed, prefix_lines: int) -> Finding:
    """`parsed` is parse(program); errors on the first `prefix_lines` lines are the code_prefix's."""
    if parsed.ok:
        return Finding(False)
    evidence = dict(parsed.error)
    evidence["in"] = "code_prefix" if evidence["line"] <= prefix_lines else "completion"
    return Finding(True, {}, evidence)


def _error(program: str, line: int, column: int, message: str) -> dict:
    lines = program.splitlines()
    code = lines[line - 1] if 0 < line <= len(lines) else ""
    return {"line": line, "column": column, "message": clip(message, 160), "code": clip(code, 120)}


def _parse_python(program: str) -> Parsed:
    # The program draws the parser's warnings ("invalid decimal literal" for `4x000`): a finding, not a message
    # for the user's terminal. The filter names the programs' file only; set again on each call (idempotent),
    # since a caller such as pytest may reset the filters, and not through catch_warnings, which threads race on.
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=re.escape(PROGRAM_FILE))
    try:
        tree = ast.parse(program, PROGRAM_FILE)
        compile(tree, PROGRAM_FILE, "exec", dont_inherit=True)
    except SyntaxError as e:
        return Parsed(False, None, _error(program, e.lineno or 0, e.offset or 0, f"{type(e).__name__}: {e.msg}"))
    except (RecursionError, MemoryError, ValueError) as e:
        return Parsed(False, None, _error(program, 0, 0, f"{type(e).__name__}: too deeply nested to parse"))
    return Parsed(True, tree)


def tree_sitter_parser(language: str):
    """A cached tree-sitter parser; JSX is parsed by the JavaScript grammar, which includes it."""
    with _LOCK:
        if language not in _PARSERS:
            grammar = _GRAMMARS.get(language, tree_sitter_javascript)
            _PARSERS[language] = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
        return _PARSERS[language]


def _parse_tree_sitter(program: str, language: str) -> Parsed:
    source = program.encode("utf-8")
    tree = tree_sitter_parser(language).parse(source)
    root = tree.root_node
    if not root.has_error:
        return Parsed(True, tree)
    node = _first_error(root)
    if node is None:    # has_error without a locatable node: report the root
        return Parsed(False, tree, _error(program, 1, 1, "does not parse"))
    row, col = node.start_point
    if node.is_missing:
        message = f"missing {node.type!r}"
    else:
        text = source[node.start_byte:node.end_byte].decode("utf-8", errors="replace")
        message = f"unexpected {clip(text, 40)!r}"
    return Parsed(False, tree, _error(program, row + 1, col + 1, message))


def _first_error(root):
    """The first ERROR or MISSING node in document order, skipping subtrees without errors."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            return node
        stack.extend(c for c in reversed(node.children) if c.has_error or c.is_missing)
    return None


def _parse_sql(program: str) -> Parsed:
    import sqlglot  # deferred: heavy (sqlglot, ~0.1 s to import), only for SQL samples
    if not program.strip():
        return Parsed(False, None, _error(program, 1, 1, "empty query"))
    try:
        statements = [s for s in sqlglot.parse(program, error_level=sqlglot.ErrorLevel.RAISE) if s is not None]
    except sqlglot.errors.ParseError as e:
        first = e.errors[0] if e.errors else {}
        description = first.get("description", str(e)).split(". Line")[0]
        if "<Token" in description:   # sqlglot prints its token object; the user needs the text
            description = description.split(" but got")[0]
        return Parsed(False, None, _error(program, first.get("line") or 1, first.get("col") or 1, description))
    except (sqlglot.errors.TokenError, RecursionError, ValueError) as e:
        return Parsed(False, None, _error(program, 1, 1, f"{type(e).__name__}: {e}"))
    if not statements:
        return Parsed(False, None, _error(program, 1, 1, "no statement"))
    for select in statements[0].find_all(sqlglot.exp.Select):
        if not select.expressions:
            return Parsed(False, None, _error(program, 1, 1, "SELECT with nothing selected"))
    message = _sqlite_syntax_error(statements[0])
    if message:
        return Parsed(False, None, _error(program, 1, 1, f"SQLite: {message}"))
    return Parsed(True, statements[0])


def _sqlite_syntax_error(statement) -> str | None:
    """SQLite's own parser on the statement as sqlglot renders it for SQLite: sqlglot is lenient (it reads
    `GROUP BY ORDER BY x` as grouping by a column named ORDER). EXPLAIN only prepares the statement, on an
    empty database, so unknown tables are expected and only syntax errors count."""
    try:
        sql = statement.sql(dialect="sqlite")
    except Exception:  # noqa: BLE001 - sqlglot raises its own types for unsupported forms
        return None
    con = sqlite3.connect(":memory:")
    try:
        con.execute("EXPLAIN " + sql)
    except sqlite3.Error as e:
        text = str(e)
        if "syntax error" in text or "incomplete input" in text:
            return text
    except (ValueError, OverflowError):
        return None
    finally:
        con.close()
    return None
