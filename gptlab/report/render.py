"""Blocks rendered into a Section (Markdown and HTML at once), and pages written whole into a folder.

    gptlab report runs/demo --db results.sqlite        (report.md + index.html)
    gptlab compare runs/a runs/b --no-eval             (compare.md + compare.html)
    python -m pytest tests/test_report.py

`section(title, blocks)` is what every section function returns. `write_pages(out, files)` writes every
file into a temporary folder inside `out` and then moves each into place, the pages last (they are what a
watcher reloads), so a failure never leaves a half-written page.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gptlab.errors import GptlabError
from gptlab.report import html, markdown
from gptlab.report.blocks import Figure, Section, slug


def section(title: str, blocks: list, id: str | None = None) -> Section:
    blocks = [b for b in blocks if b is not None]
    files = {f"{b.name}.svg": b.svg for b in blocks if isinstance(b, Figure)}
    return Section(title=title, markdown=markdown.blocks(blocks), html=html.blocks(blocks),
                   id=id or slug(title), files=files)


def write_pages(out_dir, files: dict[str, str], pages: tuple[str, ...], what: str) -> Path:
    """Write {name: text} into out_dir; the names in `pages` are moved into place last, in that order."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GptlabError(f"{out}: exists and is not a folder; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=f".{what}-") as tmp:
            for name, text in files.items():
                (Path(tmp) / name).write_text(text, encoding="utf-8")
            for name in [n for n in files if n not in pages] + list(pages):
                os.replace(Path(tmp) / name, out / name)
    except OSError as e:
        raise GptlabError(f"{out}: cannot write the {what} ({e.strerror or e})") from None
    return out
