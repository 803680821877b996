"""The gptlab report: from the results store to an assessment a person can read (report.md + index.html).

    gptlab report runs/demo --db results.sqlite --out runs/demo/report

`write_report(store, targets, out_dir)` reads only the SQLite store — it never loads torch or a model — and
writes report.md (GitHub renders it; the plots are SVG files beside it) and a self-contained index.html
(inline CSS, script and plots; nothing is fetched from the network). Which checkpoints are covered is
decided by gptlab/report/select.py. Every file is rendered into a temporary folder first and then moved
into place one by one, so a failure never leaves a half-written report.

A section is a function (store, context) -> Section(title, markdown, html, id, files); SECTIONS below is the
one list that decides what the report contains and in what order. Model-vs-model sections add themselves
here.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.report import (cards, recommend, sections_convergence, sections_diagnosis, sections_length, sections_run,
                           summary)
from gptlab.report.blocks import Section

SECTIONS = [
    summary.summary_section,
    sections_run.run_section,
    sections_run.curve_section,
    sections_convergence.convergence_section,
    sections_convergence.meaning_section,
    sections_diagnosis.diagnosis_section,
    sections_length.prompt_length_section,
    cards.cards_section,
    recommend.recommendations_section,
]


def render(store, targets: list[str] | str, claims: str | None = None) -> tuple[str, str, list[Section]]:
    """(title, subtitle, sections) for the selected checkpoints; `claims`: a claims TOML whose
    Statement | Verdict | Evidence table is added last (gptlab/report/sections_claims.py)."""
    from gptlab.report.context import build_context
    from gptlab.report.select import select
    targets = [targets] if isinstance(targets, (str, os.PathLike)) else list(targets)
    subject = select(store, [str(t) for t in targets])
    ctx = build_context(store, subject)
    sections = [fn(store, ctx) for fn in SECTIONS]
    if claims is not None:
        from gptlab.report.sections_claims import claims_section
        sections.append(claims_section(store, claims))
    n = len(subject.models)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    title = f"gptlab report — {subject.label or 'empty store'}"
    subtitle = (f"{n} checkpoint{'s' if n != 1 else ''} from `{store.path}`, written {when} "
                f"from stored results only" if n else f"no evaluated checkpoints in `{store.path}` ({when})")
    return title, subtitle, sections


def write_report(store, targets, out_dir, claims: str | None = None) -> dict[str, Path]:
    """Render and write report.md, index.html and the plot SVGs into out_dir; returns their paths."""
    from gptlab.report import html, markdown
    title, subtitle, sections = render(store, targets, claims)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GptlabError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = {"report.md": markdown.document(title, subtitle, sections),
                 "index.html": html.page(title, subtitle, sections)}
        for s in sections:
            files.update(s.files)
        with tempfile.TemporaryDirectory(dir=out, prefix=".report-") as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            for name in files:                        # the page last: it is what a watcher reloads
                if name not in ("report.md", "index.html"):
                    os.replace(Path(tmp) / name, out / name)
            os.replace(Path(tmp) / "report.md", out / "report.md")
            os.replace(Path(tmp) / "index.html", out / "index.html")
    except OSError as e:
        raise GptlabError(f"{out}: cannot write the report ({e.strerror or e})") from None
    return {"markdown": out / "report.md", "html": out / "index.html", "dir": out}


__all__ = ["SECTIONS", "Section", "render", "write_report"]
