"""The pieces a report section is made of, and the Section they render into (Markdown and HTML at once).

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

A section function returns `render.section(title, [blocks])`: paragraphs, tables, figures, notes and lists are
written once and rendered twice, by gptlab/report/markdown.py (GitHub Markdown, plots as SVG files beside
report.md) and gptlab/report/html.py (one self-contained page, plots inlined). `Raw` carries hand-made
Markdown and HTML for the few things the two formats cannot share (the highlighted samples of a probe card).

Inline text in blocks may use **bold** and `code`; everything else is escaped for HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class P:
    text: str


@dataclass
class Note:
    """Something missing or worth a warning, said plainly (e.g. "no samples: run gptlab eval")."""
    text: str
    kind: str = "missing"       # missing | info


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Cell:
    text: str
    heat: float | None = None   # 0..1 shades the HTML cell (failure rates); None: plain
    good: bool | None = None    # True/False colours a verdict cell green/red


@dataclass
class Table:
    header: list[str]
    rows: list[list]            # str or Cell
    numeric: list[bool] | None = None   # right-align these columns
    caption: str = ""


@dataclass
class Figure:
    name: str                   # file stem: report/<name>.svg
    svg: str
    caption: str


@dataclass
class Raw:
    markdown: str
    html: str


@dataclass
class Section:
    title: str
    markdown: str
    html: str
    id: str
    files: dict[str, str] = field(default_factory=dict)   # file name -> text written beside report.md


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def fmt(x, digits: int = 4) -> str:
    """A number for a table cell; missing values are an en dash, never 'None' or 'nan'."""
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def human(n: float | None) -> str:
    """3300000000 -> '3.3B', 124000000 -> '124M' (tokens, parameters)."""
    if n is None:
        return "–"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{n:g}"
