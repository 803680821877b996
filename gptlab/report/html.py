"""index.html: one self-contained page (inline CSS, inline script, inline SVG plots; no network at all).

    gptlab report runs/demo --db results.sqlite --out runs/demo/report   (then open index.html)
    python -m pytest tests/test_report.py tests/test_report_browser.py

The style sheet and the small script live beside this module (report.css, report.js) and are pasted into
the page, so the file opens offline, from an e-mail attachment or a CI artifact alike.
"""

from __future__ import annotations

import re
from html import escape
from importlib import resources

from gptlab.report.blocks import Bullets, Cell, Figure, Note, P, Raw, Table

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags (the only inline markup blocks use)."""
    out = escape(str(text), quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def svg_inline(svg: str) -> str:
    """matplotlib's SVG file minus the XML prolog and doctype, which are not allowed inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _td(c, numeric: bool, tag: str = "td") -> str:
    cls, style = [], ""
    if numeric:
        cls.append("num")
    if isinstance(c, Cell):
        if c.heat is not None:
            h = max(0.0, min(1.0, c.heat))
            style = f' style="background: rgba(214, 69, 65, {0.08 + 0.72 * h:.2f})"' if h > 0 else ""
        if c.good is not None:
            cls.append("good" if c.good else "bad")
        text = c.text
    else:
        text = str(c)
    klass = f' class="{" ".join(cls)}"' if cls else ""
    return f"<{tag}{klass}{style}>{inline(text)}</{tag}>"


def table(t: Table) -> str:
    numeric = t.numeric or [False] * len(t.header)
    head = "".join(_td(h, n, "th") for h, n in zip(t.header, numeric))
    body = "\n".join("<tr>" + "".join(_td(c, n) for c, n in zip(row, numeric)) + "</tr>" for row in t.rows)
    caption = f"<caption>{inline(t.caption)}</caption>" if t.caption else ""
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>'


def block(b) -> str:
    if isinstance(b, P):
        return f"<p>{inline(b.text)}</p>"
    if isinstance(b, Note):
        label = "Missing" if b.kind == "missing" else "Note"
        return f'<div class="note {b.kind}"><strong>{label}:</strong> {inline(b.text)}</div>'
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return table(b)
    if isinstance(b, Figure):
        return (f'<figure class="plot" id="plot-{b.name}">{svg_inline(b.svg)}'
                f"<figcaption>{inline(b.caption)}</figcaption></figure>")
    if isinstance(b, Raw):
        return b.html
    raise TypeError(f"unknown report block {type(b).__name__}")


def blocks(bs: list) -> str:
    return "\n".join(block(b) for b in bs)


def _asset(name: str) -> str:
    return resources.files("gptlab.report").joinpath(name).read_text(encoding="utf-8")


def page(title: str, subtitle: str, sections) -> str:
    nav = "\n".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{s.id}"><h2>{escape(s.title)}</h2>\n{s.html}\n</section>' for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>
{_asset("report.css")}
</style>
</head>
<body>
<nav id="toc"><div class="brand">gptlab report</div>
{nav}
<button type="button" id="toggle-details">expand all samples</button>
</nav>
<main>
<header><h1>{escape(title)}</h1><p class="subtitle">{inline(subtitle)}</p></header>
{body}
<footer>Written by gptlab from the results store; no model was run to write this page.</footer>
</main>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""
