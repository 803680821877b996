"""report.md: the sections as GitHub-flavoured Markdown, plots as `![](name.svg)` files beside it.

    gptlab report runs/demo --db results.sqlite --out runs/demo/report   (then open report.md on GitHub)
    python -m pytest tests/test_report.py
"""

from __future__ import annotations

from gptlab.report.blocks import Bullets, Cell, Figure, Note, P, Raw, Table


def _cell(c) -> str:
    text = c.text if isinstance(c, Cell) else str(c)
    return text.replace("|", "\\|").replace("\n", "<br>")


def table(t: Table) -> str:
    numeric = t.numeric or [False] * len(t.header)
    lines = ["| " + " | ".join(_cell(h) for h in t.header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return "\n".join(lines)


def block(b) -> str:
    if isinstance(b, P):
        return b.text
    if isinstance(b, Note):
        label = "Missing" if b.kind == "missing" else "Note"
        return f"> **{label}:** {b.text}"
    if isinstance(b, Bullets):
        return "\n".join(f"- {item}" for item in b.items)
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Figure):
        return f"![{b.caption}]({b.name}.svg)\n\n*{b.caption}*"
    if isinstance(b, Raw):
        return b.markdown
    raise TypeError(f"unknown report block {type(b).__name__}")


def blocks(bs: list) -> str:
    return "\n\n".join(block(b) for b in bs)


def document(title: str, subtitle: str, sections) -> str:
    toc = " · ".join(f"[{s.title}](#{s.id})" for s in sections)
    parts = [f"# {title}", subtitle, toc]
    for s in sections:
        parts.append(f"## {s.title}\n\n{s.markdown}")   # GitHub's heading anchor equals s.id
    return "\n\n".join(parts) + "\n"
