"""missing_requirement: the parsed program lacks a construct the probe requires (`requires`), or, for SQL, the
query does not run on the probe's `schema`.

    gptlab diagnose samples.jsonl
    gptlab probes my_suite.toml            (checks every `requires` name against `known`)
    python -m pytest tests/test_diagnose_code.py -k "requirement or sql or subqueries"

Python, Go, Java, JavaScript and JSX: each requirement is a predicate over facts read once from the parse tree
(Python's `ast`, tree-sitter for the others): the node types present, the calls made (as written:
"signal.Notify", "os.environ.get", "useState"), and, per function, the names it calls (for recursion).
Checked only when the program parses; checked on the whole program, so a probe should require what its
completion must add. Unknown names are reported in metrics (`unknown_requirements`), never guessed.

SQL, on the statement the stop rule kept (program.py), two checks:
1. On sqlglot's parse tree, each name in `requires` must be present: group_by, aggregate (SUM, COUNT,
   AVG, MIN, MAX, ...), limit (LIMIT or FETCH FIRST), order_by, join, where, having, subquery, window,
   cte, distinct. A statement that is not a query (INSERT, CREATE ...) lacks them all.
2. With a `schema` (SQL DDL, optionally with INSERTs): the schema is built in an in-memory SQLite and the
   query, rendered in SQLite's dialect by sqlglot, is executed. An error ("no such column: amount") is a
   missing requirement: the probe requires a query about its tables. A schema that itself fails to run is
   the probe's fault: reported in metrics, the query is then not run.

Running model SQL in-process is safe here because SQLite is confined: an authorizer allows only reading
(SELECT, READ, FUNCTION, RECURSIVE) — no ATTACH (which would create files), PRAGMA or writes; strings and
blobs are capped at 1 MB; a progress handler aborts after SQL_TIME_S; at most SQL_MAX_ROWS rows are
fetched. Nothing else of the model's runs here.
"""

from __future__ import annotations

import ast
import sqlite3
import time
from dataclasses import dataclass, field

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding

SQL_TIME_S = 1.0
SQL_MAX_ROWS = 1000


@dataclass
class Facts:
    nodes: set = field(default_factory=set)           # node type names
    calls: set = field(default_factory=set)           # callee texts
    functions: dict = field(default_factory=dict)     # function name -> callee texts inside it

    def called(self, *names: str) -> bool:
        """A bare name also matches a method call on anything (`then` matches `fetch(url).then`)."""
        return any(c == n or ("." not in n and c.endswith("." + n)) for c in self.calls for n in names)

    def recursive(self) -> bool:
        return any(name in callees or any(c.endswith("." + name) for c in callees)
                   for name, callees in self.functions.items())


def _has(*types):
    return lambda f: bool(f.nodes & set(types))


def _calls(*names):
    return lambda f: f.called(*names)


VOCABULARY = {
    "python": {
        "recursion": (lambda f: f.recursive(), "a function calls itself"),
        "loop": (_has("For", "While", "AsyncFor"), "a for or while loop"),
        "comprehension": (_has("ListComp", "SetComp", "DictComp", "GeneratorExp"), "a comprehension"),
        "try_except": (_has("ExceptHandler"), "try ... except"),
        "with": (_has("With", "AsyncWith"), "a with statement"),
        "class": (_has("ClassDef"), "a class definition"),
        "generator": (_has("Yield", "YieldFrom"), "yield"),
        "lambda": (_has("Lambda"), "a lambda"),
        "type_hints": (lambda f: "annotation" in f.nodes, "annotated arguments or return"),
        "async_await": (_has("Await", "AsyncFunctionDef"), "async def / await"),
        "os_getenv": (lambda f: f.called("os.getenv", "os.environ.get", "getenv") or "os.environ[" in f.nodes,
                      "os.getenv(...), os.environ.get(...) or os.environ[...]"),
        "signal_handling": (_calls("signal.signal", "signal"), "signal.signal(...)"),
        "raise": (_has("Raise"), "raises an exception"),
    },
    "go": {
        "recursion": (lambda f: f.recursive(), "a function calls itself"),
        "loop": (_has("for_statement"), "a for loop"),
        "goroutine": (_has("go_statement"), "a go statement"),
        "channel": (_has("channel_type", "send_statement"), "a channel type or send"),
        "select": (_has("select_statement"), "a select statement"),
        "defer": (_has("defer_statement"), "defer"),
        "error_check": (lambda f: "err != nil" in f.nodes, "if err != nil"),
        "signal_handling": (_calls("signal.Notify", "signal.NotifyContext"), "signal.Notify(...)"),
        "os_getenv": (_calls("os.Getenv", "os.LookupEnv"), "os.Getenv(...) or os.LookupEnv(...)"),
        "context": (lambda f: any(c.startswith("context.") for c in f.calls), "a context.* call"),
        "struct": (_has("struct_type"), "a struct type"),
    },
    "java": {
        "recursion": (lambda f: f.recursive(), "a method calls itself"),
        "loop": (_has("for_statement", "enhanced_for_statement", "while_statement", "do_statement"), "a loop"),
        "try_catch": (_has("catch_clause"), "try ... catch"),
        "class": (_has("class_declaration"), "a class declaration"),
        "interface": (_has("interface_declaration"), "an interface declaration"),
        "generics": (_has("type_arguments", "type_parameters"), "generic types"),
        "override": (lambda f: "@Override" in f.nodes, "@Override"),
        "throw": (_has("throw_statement"), "a throw statement"),
        "lambda": (_has("lambda_expression"), "a lambda"),
        "stream": (_calls("stream"), "a .stream() pipeline"),
        "os_getenv": (_calls("System.getenv"), "System.getenv(...)"),
        "synchronized": (lambda f: bool(f.nodes & {"synchronized_statement", "synchronized"}), "synchronized"),
    },
    "javascript": {
        "recursion": (lambda f: f.recursive(), "a function calls itself"),
        "loop": (_has("for_statement", "for_in_statement", "while_statement", "do_statement"), "a loop"),
        "arrow_function": (_has("arrow_function"), "an arrow function"),
        "async_await": (_has("await_expression"), "await"),
        "promise_then": (_calls("then"), "a .then(...) chain"),
        "fetch": (_calls("fetch"), "fetch(...)"),
        "try_catch": (_has("catch_clause"), "try ... catch"),
        "class": (_has("class_declaration", "class"), "a class"),
        "export": (_has("export_statement"), "an export"),
        "os_getenv": (lambda f: "process.env" in f.nodes, "process.env"),
        "useState": (_calls("useState", "React.useState"), "useState(...)"),
        "useEffect": (_calls("useEffect", "React.useEffect"), "useEffect(...)"),
        "jsx": (_has("jsx_element", "jsx_self_closing_element"), "JSX markup"),
        "map_render": (lambda f: "map->jsx" in f.nodes, "items.map(...) returning JSX"),
        "event_handler": (lambda f: "on*=" in f.nodes, "an onX={...} JSX attribute"),
    },
}
VOCABULARY["jsx"] = VOCABULARY["javascript"]


def _python_facts(tree: ast.AST) -> Facts:
    facts = Facts()

    def callee(node) -> str:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
        return ".".join(reversed(parts))

    def visit(node, function):
        facts.nodes.add(type(node).__name__)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
            facts.functions.setdefault(function, set())
            if node.returns is not None or any(a.annotation for a in node.args.args):
                facts.nodes.add("annotation")
        elif isinstance(node, ast.Call):
            name = callee(node.func)
            facts.calls.add(name)
            if function:
                facts.functions[function].add(name)
        elif isinstance(node, ast.Subscript) and callee(node.value) == "os.environ":
            facts.nodes.add("os.environ[")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return facts


_TS_FUNCTIONS = {"function_declaration", "method_declaration", "constructor_declaration", "method_definition",
                 "generator_function_declaration"}
_TS_CALLS = {"call_expression", "method_invocation"}


def _tree_sitter_facts(tree, source: bytes) -> Facts:
    facts = Facts()

    def text(node) -> str:
        return "".join(source[node.start_byte:node.end_byte].decode("utf-8", errors="replace").split())

    stack = [(tree.root_node, None)]
    while stack:
        node, function = stack.pop()
        kind = node.type
        facts.nodes.add(kind)
        if kind in _TS_FUNCTIONS and node.child_by_field_name("name") is not None:
            function = text(node.child_by_field_name("name"))
            facts.functions.setdefault(function, set())
        elif kind == "variable_declarator" and (value := node.child_by_field_name("value")) is not None \
                and value.type in ("arrow_function", "function_expression", "function"):
            function = text(node.child_by_field_name("name"))
            facts.functions.setdefault(function, set())
        elif kind in _TS_CALLS:
            if kind == "method_invocation":
                obj, name = node.child_by_field_name("object"), node.child_by_field_name("name")
                name = (text(obj) + "." if obj is not None else "") + (text(name) if name is not None else "")
            else:
                fn = node.child_by_field_name("function")
                name = text(fn) if fn is not None else ""
            facts.calls.add(name)
            if function:
                facts.functions[function].add(name)
            if name.endswith(".map") and b"<" in source[node.start_byte:node.end_byte]:
                facts.nodes.add("map->jsx")
        elif kind == "binary_expression":
            t = text(node)
            if t in ("err!=nil", "nil!=err"):
                facts.nodes.add("err != nil")
        elif kind in ("member_expression",) and text(node).startswith("process.env"):
            facts.nodes.add("process.env")
        elif kind in ("marker_annotation", "annotation") and text(node) == "@Override":
            facts.nodes.add("@Override")
        elif kind == "modifiers" and "synchronized" in text(node):
            facts.nodes.add("synchronized")
        elif kind == "jsx_attribute" and text(node)[:2] == "on" and text(node)[2:3].isupper():
            facts.nodes.add("on*=")
        stack.extend((c, function) for c in node.children)
    return facts


def facts_for(tree, program: str, language: str) -> Facts:
    if language == "python":
        return _python_facts(tree)
    return _tree_sitter_facts(tree, program.encode("utf-8"))


def known(language: str) -> list[str]:
    """The requirement names checked for `language`."""
    if language == "sql":
        return sorted(_sql_checks())
    return sorted(VOCABULARY.get(language, {}))


@detector("missing_requirement", scope="code")
def missing_requirement(tree, program: str, language: str, requires: tuple[str, ...],
                        schema: str | None = None) -> Finding:
    """`tree` is the parse of `program` (syntax_error.parse); `schema` is used for SQL only."""
    if language == "sql":
        return _missing_sql_requirement(tree, requires, schema)
    vocab = VOCABULARY.get(language, {})
    unknown = [r for r in requires if r not in vocab]
    checked = [r for r in requires if r in vocab]
    metrics = {}
    if unknown:
        metrics["unknown_requirements"] = unknown
    if not checked:
        return Finding(False, metrics)
    facts = facts_for(tree, program, language)
    missing = [r for r in checked if not vocab[r][0](facts)]
    metrics["requirements_met"] = f"{len(checked) - len(missing)}/{len(checked)}"
    if not missing:
        return Finding(False, metrics)
    return Finding(True, metrics, {"missing": missing, "expected": [vocab[r][1] for r in missing]})


# ---------------------------------------------------------------- SQL

def _sql_checks():
    import sqlglot  # deferred: heavy (sqlglot, ~0.1 s to import), only for SQL samples and probes
    exp = sqlglot.exp
    return {
        "group_by": (exp.Group, "GROUP BY"),
        "aggregate": (exp.AggFunc, "an aggregate (SUM, COUNT, AVG, MIN, MAX)"),
        "limit": ((exp.Limit, exp.Fetch), "LIMIT"),
        "order_by": (exp.Order, "ORDER BY"),
        "join": (exp.Join, "a JOIN"),
        "where": (exp.Where, "WHERE"),
        "having": (exp.Having, "HAVING"),
        "subquery": ((exp.Subquery, exp.Exists), "a subquery"),    # EXISTS (SELECT ...) is no Subquery node
        "window": (exp.Window, "a window function (OVER ...)"),
        "cte": (exp.With, "a WITH clause"),
        "distinct": (exp.Distinct, "DISTINCT"),
    }


def _missing_sql_requirement(tree, requires: tuple[str, ...], schema: str | None) -> Finding:
    import sqlglot  # deferred: heavy (sqlglot, ~0.1 s to import), only for SQL samples
    checks = _sql_checks()
    metrics, evidence = {}, {}
    unknown = [r for r in requires if r not in checks]
    if unknown:
        metrics["unknown_requirements"] = unknown
    wanted = [r for r in requires if r in checks]
    is_query = isinstance(tree, sqlglot.exp.Query)
    missing = [r for r in wanted if not is_query or tree.find(checks[r][0]) is None]
    if wanted:
        metrics["requirements_met"] = f"{len(wanted) - len(missing)}/{len(wanted)}"
    if missing:
        evidence["missing"] = missing
        evidence["expected"] = [checks[r][1] for r in missing]
    if not is_query and (wanted or schema):
        evidence["statement"] = f"{type(tree).__name__.upper()} statement, not a query"
    if schema and is_query:
        try:
            query = tree.sql(dialect="sqlite")
        except Exception as e:  # noqa: BLE001 - sqlglot raises its own types for unsupported forms
            query, metrics["sql_render_note"] = tree.sql(), clip(f"{type(e).__name__}: {e}", 120)
        run = run_on_schema(query, schema)
        metrics.update({k: v for k, v in run.items() if k != "error"})
        if run.get("error"):
            evidence["sqlite_error"] = run["error"]
    return Finding(bool(evidence), metrics, evidence or None)


def _read_only(action, *_):
    allowed = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE)
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


def run_on_schema(query: str, schema: str) -> dict:
    """{"sql_rows": n, "sql_columns": [...]} or {"error": "..."}; {"schema_error": ...} for a bad schema."""
    con = sqlite3.connect(":memory:")
    try:
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        deadline = time.monotonic() + SQL_TIME_S
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            con.executescript(schema)
        except (sqlite3.Error, ValueError) as e:
            return {"schema_error": clip(f"{type(e).__name__}: {e}", 160)}
        deadline = time.monotonic() + SQL_TIME_S
        con.set_authorizer(_read_only)
        try:
            cur = con.execute(query)
            rows = cur.fetchmany(SQL_MAX_ROWS)
        except sqlite3.OperationalError as e:
            message = "interrupted after %.1f s" % SQL_TIME_S if "interrupt" in str(e) else str(e)
            return {"error": clip(message, 160)}
        except (sqlite3.Error, ValueError, OverflowError, MemoryError) as e:
            return {"error": clip(f"{type(e).__name__}: {e}", 160)}
        return {"sql_rows": len(rows), "sql_columns": [d[0] for d in cur.description or ()]}
    finally:
        con.close()
