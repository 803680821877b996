"""The "Claims" table — Statement | Verdict | Evidence — for `gptlab check`, `compare` and `report`.

    gptlab check examples/claims.toml --db results.sqlite          (a table on the terminal)
    gptlab report runs/demo --db results.sqlite --claims examples/claims.toml
    gptlab compare runs/code_heavy runs/prose_heavy --claims examples/claims.toml
    python -m pytest tests/test_claims.py

The verdicts come from gptlab/compare/claims.py (the file format and the rule) and claims_verdict.py; this
module only lays them out. The report adds the section last when `--claims` is given
(gptlab.report.render(..., claims=FILE)).
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

from gptlab.compare.claims import load_claims
from gptlab.compare.claims_verdict import check
from gptlab.report.blocks import Cell, P, Table
from gptlab.report.render import section
from gptlab.verdicts import ClaimVerdict

GOOD = {ClaimVerdict.TRUE: True, ClaimVerdict.MOSTLY_TRUE: True, ClaimVerdict.INCONCLUSIVE: None,
        ClaimVerdict.FALSE: False}
COLOUR = {ClaimVerdict.TRUE: "green", ClaimVerdict.MOSTLY_TRUE: "green", ClaimVerdict.INCONCLUSIVE: "yellow",
          ClaimVerdict.FALSE: "red"}
RULE = ("Verdicts: d is how far the claim holds, with its 95 % bootstrap interval. **true**: the whole "
        "interval clears the claim's `true` margin; **mostly true**: the estimate clears `mostly_true` but the "
        "interval does not clear `true`; **false**: the whole interval is at or below `false`; **inconclusive**: "
        "the data cannot tell. Margins default to 0; see docs/compare.md.")


def claims_blocks(results, title: str = "") -> list:
    rows = [[r.statement + (f" — {r.comment}" if r.comment else ""), Cell(r.verdict, good=GOOD.get(r.verdict)),
             r.evidence] for r in results]
    return [P(f"**{title}**") if title else None, Table(["Statement", "Verdict", "Evidence"], rows), P(RULE)]


def claims_section_for(results, title: str = ""):
    return section("Claims", claims_blocks(results, title))


def claims_section(store, path):
    """The report's hook (`gptlab report --claims FILE`): the claims of FILE checked against `store`."""
    cf = load_claims(path)
    return claims_section_for(check(cf, store), cf.title)


def print_claims(results, title: str = "", console=None) -> None:
    """The terminal table of `gptlab check`."""
    console = console or Console()
    table = RichTable(title=title or None, show_lines=True)
    table.add_column("Statement", ratio=3)
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Evidence", ratio=5)
    for r in results:
        table.add_row(r.statement + (f"\n[dim]{r.comment}[/dim]" if r.comment else ""),
                      f"[{COLOUR[r.verdict]}]{r.verdict}[/]", r.evidence.replace("[", r"\["))
    console.print(table)
