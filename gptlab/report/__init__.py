"""The gptlab report: from the results store to an assessment a person can read (report.md + index.html).

    gptlab report runs/demo --db results.sqlite --out runs/demo/report
    python -m pytest tests/test_report.py tests/test_report_browser.py

`write_report(store, targets, out_dir)` reads only the SQLite store — it never loads torch or a model — and
writes report.md (GitHub renders it; the plots are SVG files beside it) and a self-contained index.html
(inline CSS, script and plots; nothing is fetched from the network). Which checkpoints are covered is
decided by gptlab/compare/select.py. Every file is rendered into a temporary folder first and then moved
into place one by one, so a failure never leaves a half-written report.

A section is a function (store, context) -> Section(title, markdown, html, id, files), or None for a section
with nothing to show that is optional (Benchmarks: only checkpoints scored with `gptlab bench`); SECTIONS below
is the one list that decides what the report contains and in what order. Model-vs-model sections add
themselves here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gptlab.compare.select import select
from gptlab.report.blocks import Section
from gptlab.report.context import build_context
from gptlab.report.html import page
from gptlab.report.markdown import document
from gptlab.report.render import write_pages
from gptlab.report.sections import (
    benchmarks,
    cards,
    convergence,
    diagnosis,
    ladder,
    length,
    recommend,
    run,
    summary,
)
from gptlab.report.sections.claims import claims_section

SECTIONS = [
    summary.summary_section,
    run.run_section,
    run.curve_section,
    convergence.convergence_section,
    convergence.meaning_section,
    diagnosis.diagnosis_section,
    length.prompt_length_section,
    benchmarks.benchmarks_section,
    ladder.ladder_section,
    cards.cards_section,
    recommend.recommendations_section,
]


def render(store, targets: list[str] | str, claims: str | None = None, *,
           now: float | None = None) -> tuple[str, str, list[Section]]:
    """(title, subtitle, sections) for the selected checkpoints; `claims`: a claims TOML whose
    Statement | Verdict | Evidence table is added last (gptlab/report/sections/claims.py); `now`: the
    time the subtitle says the report was written (seconds since the epoch; None: the current time)."""
    targets = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    subject = select(store, [str(t) for t in targets])
    ctx = build_context(store, subject)
    sections = [s for s in (fn(store, ctx) for fn in SECTIONS) if s is not None]
    if claims is not None:
        sections.append(claims_section(store, claims))
    n = len(subject.models)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    title = f"gptlab report — {subject.label or 'empty store'}"
    subtitle = (f"{n} checkpoint{'s' if n != 1 else ''} from `{store.path}`, written {when} "
                f"from stored results only" if n else f"no evaluated checkpoints in `{store.path}` ({when})")
    return title, subtitle, sections


def write_report(store, targets, out_dir, claims: str | None = None, *,
                 now: float | None = None) -> dict[str, Path]:
    """Render and write report.md, index.html and the plot SVGs into out_dir; returns their paths."""
    title, subtitle, sections = render(store, targets, claims, now=now)
    files = {"report.md": document(title, subtitle, sections), "index.html": page(title, subtitle, sections)}
    for s in sections:
        files.update(s.files)
    out = write_pages(out_dir, files, pages=("report.md", "index.html"), what="report")
    return {"markdown": out / "report.md", "html": out / "index.html", "dir": out}


__all__ = ["SECTIONS", "Section", "render", "write_report"]
