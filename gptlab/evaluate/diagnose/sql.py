"""missing_requirement for SQL: the query lacks a required clause, or does not run on the probe's schema.

    python -m pytest tests/test_diagnose_code.py -k sql

Two checks, on the statement the stop rule kept (program.py):
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

import sqlite3
import time

from gptlab.evaluate.diagnose.sample import Finding
from gptlab.evaluate.diagnose.text import clip

SQL_TIME_S = 1.0
SQL_MAX_ROWS = 1000


def _checks():
    from sqlglot import exp
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


def known() -> list[str]:
    return sorted(_checks())


def missing_sql_requirement(tree, requires: tuple[str, ...], schema: str | None) -> Finding:
    from sqlglot import exp
    checks = _checks()
    metrics, evidence = {}, {}
    unknown = [r for r in requires if r not in checks]
    if unknown:
        metrics["unknown_requirements"] = unknown
    wanted = [r for r in requires if r in checks]
    is_query = isinstance(tree, exp.Query)
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
