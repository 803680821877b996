"""The "Probe cards" section: each probe's prompt and samples, with echoed spans and loops highlighted,
and how its samples changed from checkpoint to checkpoint.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

Highlights come from the detectors' evidence (the span texts or offsets stored with prompt_echo and
repetition_loop findings); the report never re-detects anything. In HTML they are <mark> elements with a
legend; GitHub's Markdown has no colours, so there echoed text is bold and loops are underlined.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape

from gptlab.report.blocks import Note, Raw
from gptlab.report.render import section

HIGHLIGHT = {"prompt_echo": "echo", "repetition_loop": "loop"}
_MD_TAGS = {"echo": ("<b>", "</b>"), "loop": ("<ins>", "</ins>")}


def _texts(ev) -> list[tuple[str, int | None]]:
    """(span text, offset in the completion or None) pairs found in one mode's evidence.

    The detectors store prompt_echo as {"span", "completion_offset", ...} and repetition_loop as
    {"unit", "offset", ...} or {"phrase", "count"}; lists of such dicts are accepted too."""
    if isinstance(ev, list):
        return [t for v in ev for t in _texts(v)]
    if not isinstance(ev, dict):
        return [(ev, None)] if isinstance(ev, str) and ev.strip() else []
    offset = next((ev[k] for k in ("completion_offset", "offset") if isinstance(ev.get(k), int)), None)
    return [(ev[k], offset) for k in ("span", "unit", "phrase") if isinstance(ev.get(k), str) and ev[k].strip()]


def _pattern(text: str) -> re.Pattern:
    """Evidence spans are clipped (whitespace collapsed, long ones cut with an ellipsis) and phrases are
    words without their punctuation: match them loosely."""
    return re.compile(r"\W+".join(re.escape(w) for w in text.rstrip("…").split()))


def spans(completion: str, evidence: dict) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) ranges of `completion` to highlight, in order."""
    found = []
    for mode, kind in HIGHLIGHT.items():
        for text, offset in _texts(evidence.get(mode)) if isinstance(evidence, dict) else []:
            pattern = _pattern(text)
            if len(text.strip()) < 3 or not pattern.pattern:
                continue
            at = pattern.match(completion, offset) if offset is not None and offset < len(completion) else None
            matches = [at] if at and kind == "echo" else list(pattern.finditer(completion, at.start() if at else 0))
            # an echo is marked once, where the detector found it; a loop's unit every time it recurs
            found += [(m.start(), m.end(), kind) for m in (matches[:1] if kind == "echo" else matches)]
    found.sort()
    out, end = [], 0
    for s, e, k in found:
        if s >= end and e > s:
            out.append((s, e, k))
            end = e
    return out


def highlight(completion: str, evidence: dict, markdown: bool = False) -> str:
    out, pos = [], 0
    for s, e, kind in spans(completion, evidence):
        out.append(escape(completion[pos:s]))
        open_, close = _MD_TAGS[kind] if markdown else (f'<mark class="{kind}">', "</mark>")
        out.append(open_ + escape(completion[s:e]) + close)
        pos = e
    out.append(escape(completion[pos:]))
    return "".join(out)


def _hint(evidence) -> str:
    """The detector's evidence for one mode in a line (a tooltip): its scalar fields, clipped."""
    if not isinstance(evidence, dict):
        return ""
    parts = [f"{k}: {v}" for k, v in evidence.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
    text = "; ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"


def _tags_md(row) -> str:
    words = [f"`{m}`" for m in row["failures"]] or ["no failure"]
    if row["passed"] is not None:
        words.append("**passed**" if row["passed"] else "**failed tests**")
    return " ".join(words)


def _tags_html(row) -> str:
    tags = [f'<span class="tag bad" title="{escape(_hint(row["evidence"].get(m)))}">{escape(m)}</span>'
            for m in row["failures"]] or ['<span class="tag good">no failure</span>']
    if row["passed"] is not None:
        tags.append(f'<span class="tag {"good" if row["passed"] else "bad"}">'
                    f'{"passed" if row["passed"] else "failed tests"}</span>')
    return " ".join(tags)


def _sample_md(row) -> str:
    return f"{_tags_md(row)}\n\n<pre>{highlight(row['completion'] or '', row['evidence'], True)}</pre>"


def _sample_html(row) -> str:
    return (f'<div>{_tags_html(row)}</div><pre class="sample">'
            f"{highlight(row['completion'] or '', row['evidence'])}</pre>")


@dataclass
class Card:
    probe: str
    head: str                    # domain, samples, mode rates
    description: str             # what a reader should look for (the suite's words)
    prompt: str
    lengths: list                # [(max_tokens, first sample row, other rows)]
    history: list                # [(step, one-line summary, first sample at the longest length)]


def card(probe: str, stats: dict, rows: list[dict], history: dict) -> Card:
    first = rows[0]
    rates = ", ".join(f"{m} {v:.0%}" for m, v in sorted(stats["rates"].items(), key=lambda kv: -kv[1]) if v)
    head = f"{first['domain']} · {stats['n']} samples · " + (rates or "no failures")
    spec = _spec(first.get("spec_json"))
    lengths = []
    for n in sorted({r["max_tokens"] for r in rows}):
        at = [r for r in rows if r["max_tokens"] == n]
        lengths.append((n, at[0], at[1:]))
    steps = [(step, summary, row) for step, (summary, row) in sorted(history.items())] if len(history) > 1 else []
    return Card(probe, head, spec.get("description") or "", first["prompt"] or "", lengths, steps)


def _spec(text) -> dict:
    try:
        spec = json.loads(text) if text else {}
    except (TypeError, json.JSONDecodeError):
        return {}
    return spec if isinstance(spec, dict) else {}


def card_md(c: Card) -> str:
    parts = [f"### {c.probe}", f"*{escape(c.head)}*" + (f" — {escape(c.description)}" if c.description else ""),
             f"<details><summary>prompt</summary>\n\n<pre>{escape(c.prompt)}</pre>\n\n</details>"]
    for n, first, rest in c.lengths:
        parts.append(f"**{n} tokens, sample {first['sample_index']}**: {_sample_md(first)}")
        if rest:
            parts.append(f"<details><summary>{len(rest)} more at {n} tokens</summary>\n\n" +
                         "\n\n".join(_sample_md(r) for r in rest) + "\n\n</details>")
    if c.history:
        parts.append("*Across checkpoints (first sample at the longest length):*")
        parts += [f"<details><summary>step {step}: {escape(summary)}</summary>\n\n{_sample_md(row)}\n\n</details>"
                  for step, summary, row in c.history]
    return "\n\n".join(parts)


def card_html(c: Card) -> str:
    out = [f'<div class="card" id="probe-{escape(c.probe)}"><h3>{escape(c.probe)} '
           f'<span class="tag">{escape(c.head)}</span></h3>']
    if c.description:
        out.append(f'<p class="muted">{escape(c.description)}</p>')
    out.append(f'<details><summary>prompt</summary><pre class="prompt">{escape(c.prompt)}</pre></details>')
    out.append('<div class="grid">')
    for n, first, rest in c.lengths:
        more = (f"<details><summary>{len(rest)} more at {n} tokens</summary>" +
                "".join(_sample_html(r) for r in rest) + "</details>") if rest else ""
        out.append(f"<div><h4>{n} tokens, sample {first['sample_index']}</h4>{_sample_html(first)}{more}</div>")
    out.append("</div>")
    if c.history:
        out.append("<p><em>Across checkpoints (first sample at the longest length):</em></p>")
        out += [f"<details><summary>step {step}: {escape(summary)}</summary>{_sample_html(row)}</details>"
                for step, summary, row in c.history]
    return "".join(out) + "</div>"


def cards_section(store, ctx):
    d = ctx.diagnosis
    if not d.available:
        return section("Probe cards", [Note(d.missing)])
    current = d.current_rows()
    stats = {p["probe"]: p for p in d.probe_stats()}
    cards = [card(p, stats[p], sorted((r for r in current if r["probe"] == p),
                                      key=lambda r: (r["max_tokens"], r["sample_index"])), d.probe_history(p))
             for p in sorted({r["probe"] for r in current}, key=lambda p: (stats[p]["domain"], p))]
    md = ["Legend: **bold** = copied from the prompt (prompt_echo), <ins>underlined</ins> = repetition loop."]
    html = ['<p class="legend">Legend: <mark class="echo">copied from the prompt</mark> (prompt_echo), '
            '<mark class="loop">repetition loop</mark> (repetition_loop); hover a failure mode for its evidence.</p>']
    return section("Probe cards", [Raw("\n\n".join(md + [card_md(c) for c in cards]),
                                       "\n".join(html + [card_html(c) for c in cards]))])
