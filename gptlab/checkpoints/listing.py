"""What `gptlab models PATH` prints: one row per checkpoint found, in any format.

    gptlab models tests/fixtures/peers           # nanoGPT, nanochat, llm.c and transformers checkpoints
    gptlab models runs/d12 --json                # one JSON object per checkpoint (FIELDS), one per line
    python -m pytest tests/test_models_cli.py

The checkpoints are what `gptlab.checkpoints.discover` finds, the same set every other command sees.

Each checkpoint is loaded (weights and tokenizer), so a row also proves the checkpoint is readable; one that
is not (found but unreadable, or failing to load) becomes an error line instead of a row, the others are still
listed, and the command exits 2.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gptlab.checkpoints import ModelInfo, discover_all, load
from gptlab.errors import GptlabError

# `gptlab models --json`: a stable contract (README, docs/compare.md; tests/test_models_cli.py pins it)
FIELDS = ("format", "path", "run", "step", "family", "params", "vocab_size", "context", "tokens_seen",
          "weights_hash")


def list_checkpoints(path: str | Path) -> tuple[list[ModelInfo], list[str]]:
    """(infos of the checkpoints that load, one-line errors for those that do not: those found but refused
    while looking, then those that fail to load)."""
    infos = []
    refs, errors = discover_all(path)
    for ref in refs:
        try:
            infos.append(load(ref).info)
        except GptlabError as e:
            errors.append(str(e))
    return infos, errors


def human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def render(infos: list[ModelInfo], console=None) -> None:
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))   # pipes and tests get whole rows, not ellipses
    table = Table(show_edge=False, header_style="bold")
    for name, justify in (("checkpoint", "left"), ("format", "left"), ("step", "right"), ("params", "right"),
                          ("vocab", "right"), ("context", "right"), ("tokens seen", "right"), ("path", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "path")
    for i in infos:
        table.add_row(i.run, i.format, "-" if i.step is None else str(i.step), human(i.params), str(i.vocab_size),
                      str(i.context), human(i.tokens_seen), i.path)
    console.print(table)


def json_lines(infos: list[ModelInfo]) -> str:
    """One JSON object per checkpoint (FIELDS), one per line."""
    return "\n".join(json.dumps({f: str(i.path) if f == "path" else getattr(i, f) for f in FIELDS})
                     for i in infos)
