"""The `gptlab compare` page: models side by side (compare.md and a self-contained compare.html).

    gptlab compare runs/code_heavy runs/prose_heavy --db results.sqlite --out compare
    python -m pytest tests/test_compare.py

Sections are built from blocks (gptlab/report/blocks.py) and written with the report's own Markdown and
HTML templates, so the two pages look alike. Every number is `value [low, high]`, the 95 % bootstrap interval
of gptlab/stats/bootstrap.py; rankings join models with "≈" where the difference is not significant.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table as RichTable

from gptlab.report.blocks import Cell, Note, P, Table, human
from gptlab.report.html import page
from gptlab.report.markdown import document
from gptlab.report.render import section, write_pages
from gptlab.report.sections.claims import claims_section_for
from gptlab.report.sections.length import headline, length_blocks, verdict

FEW_DOCUMENTS = 5


def _num(iv, digits=3) -> str:
    return iv.text(digits) if iv is not None else "–"


def _pct(iv) -> str:
    if iv is None:
        return "–"
    return f"{iv.value:.0%} [{iv.low:.0%}, {iv.high:.0%}]"


def _points(x: float) -> str:
    p = round(x * 100) or 0                       # never "-0%"
    return f"{p:+d}%"


def _pct_diff(d) -> str:
    return f"{_points(d.value)} [{_points(d.low)}, {_points(d.high)}]"


def _diff_text(row, labels, fmt) -> str:
    if len(labels) != 2:
        return ""
    a, b = labels
    d = row.diffs.get((a, b)) or row.diffs.get((b, a))
    if d is None:
        return "–"
    if (a, b) not in row.diffs:                   # diffs are stored best - worse; show first - second
        d = type(d)(-d.value, -d.high, -d.low, d.n, d.confidence)
    return fmt(d) + ("" if d.significant else " n.s.")


def _table(rows, labels, fmt, first: str, diff_fmt, caption: str) -> Table:
    header = [first] + labels + ["ranking"] + (["difference (first - second)"] if len(labels) == 2 else [])
    out = []
    for r in rows:
        split = len({x.rank for x in r.ranking}) > 1
        cells = [Cell(fmt(r.cells.get(lab)), good=True if split and any(x.label == lab and x.rank == 1
                                                                        for x in r.ranking) else None)
                 for lab in labels]
        line = [r.name + (f" ({r.units})" if r.units else "")] + cells + [r.order_text()]
        if len(labels) == 2:
            line.append(_diff_text(r, labels, diff_fmt))
        out.append(line)
    return Table(header, out, numeric=[False] + [True] * len(labels) + [False] + [True] * (len(labels) == 2),
                 caption=caption)


def models_section(c, store_path):
    rows = [[m.label, m.row["format"] or "–", m.row["family"] or "–", human(m.row["params"]),
             human(m.row["tokens_seen"]), f"`{m.target}`"] for m in c.models]
    blocks = [Table(["model", "format", "family", "parameters", "tokens seen", "given as"], rows),
              P(f"Results from `{store_path}`. Every number is the estimate on all the data with its 95 % "
                f"bootstrap interval `[low, high]` ({c.resamples} resamples; bpb over documents, resampled "
                f"within each domain and paired by document between models; rates and pass@k over "
                f"generations, resampled within each probe). In a ranking, `≈` means the interval of the "
                f"difference includes 0: not significant."),
              ]
    if c.notes:
        blocks.append(Note("; ".join(c.notes), kind="info"))
    return section("Models", blocks)


def bpb_section(c):
    labels = [m.label for m in c.models]
    if not c.bpb:
        return section("Bits per byte", [Note("no bpb in the store for these models: run `gptlab eval`")])
    few = [f"{r.name} ({r.effective:.1f})" for r in c.bpb if r.effective is not None and r.effective < FEW_DOCUMENTS]
    blocks = [_table(c.bpb, labels, _num, "domain", lambda d: d.text(3, signed=True),
                     "bits per byte (lower is better) on the same held-out text; groups pool their domains' "
                     "documents")]
    if few:
        blocks.append(Note(f"fewer than {FEW_DOCUMENTS} effective documents (Kish: (sum of bytes)^2 / sum of "
                           f"bytes^2) in {', '.join(few)}: a bootstrap over so few, or so unequal, documents "
                           f"misstates the uncertainty; score more val text, in documents of similar size, "
                           f"for a trustworthy interval", kind="info"))
    return section("Bits per byte", blocks)


def failures_section(c):
    labels = [m.label for m in c.models]
    if not c.failures:
        return section("Failure rates", [Note("no diagnosed probe samples for these models: run `gptlab eval`")])
    blocks = [P(f"Share of samples at temperature **{c.temperature:g}** with at least one failure mode "
                f"(suite {c.suite or 'all stored probes'}, detectors `{c.detector_version}`)."),
              _table(c.failures, labels, _pct, "probes", _pct_diff, "any failure (lower is better)")]
    if c.modes:
        blocks.append(_table(c.modes, labels, _pct, "failure mode", _pct_diff,
                             "each failure mode over all probes (lower is better)"))
    return section("Failure rates", blocks)


def pass_section(c):
    labels = [m.label for m in c.models]
    if not c.pass_at:
        return section("pass@k", [Note("no probe with executed tests has samples for these models")])
    return section("pass@k", [_table(c.pass_at, labels, lambda iv: _num(iv, 2), "probe", lambda d: d.text(2, True),
                                     "unbiased pass@k of the longest samples (higher is better), intervals "
                                     "over the probe's samples")])


def benchmarks_section(c):
    labels = [m.label for m in c.models]
    return section("Benchmarks", [_table(c.benchmarks, labels, _num, "task metric", lambda d: d.text(3, signed=True),
                                         "lm-evaluation-harness metrics (`gptlab bench`), each in lm-eval's own "
                                         "direction; 95 % bootstrap intervals over the task's documents, paired by "
                                         "document")])


def length_section(c):
    return section("Prompt length", length_blocks(c.length, c.twins))


def sections(c, verdicts=None, store_path="", claims_title=""):
    out = [models_section(c, store_path), bpb_section(c), failures_section(c), pass_section(c), length_section(c)]
    if c.benchmarks:                             # only models scored with `gptlab bench` have them
        out.insert(4, benchmarks_section(c))
    if verdicts is not None:
        out.append(claims_section_for(verdicts, claims_title))
    return out


def write_comparison(c, verdicts, out_dir, store_path="", claims_title="", *, now: float | None = None) -> dict:
    """compare.md and compare.html into out_dir, each replaced whole (never half-written); `now`: the time
    the subtitle states (seconds since the epoch; None: the current time)."""
    secs = sections(c, verdicts, store_path, claims_title)
    title = "gptlab compare — " + " vs ".join(m.label for m in c.models)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    subtitle = f"{len(c.models)} models from `{store_path}`, written {when} from stored results only"
    files = {"compare.md": document(title, subtitle, secs), "compare.html": page(title, subtitle, secs)}
    out = write_pages(out_dir, files, pages=("compare.md", "compare.html"), what="comparison")
    return {"markdown": out / "compare.md", "html": out / "compare.html"}


def print_comparison(c, console=None) -> None:
    """The headline tables on the terminal: bpb, any-failure rates, prompt length."""
    console = console or Console()
    labels = [m.label for m in c.models]
    for title, rows, fmt in (("bits per byte (lower is better)", c.bpb, _num),
                             (f"any failure, T={c.temperature:g} (lower is better)" if c.temperature is not None
                              else "failures", c.failures, _pct),
                             ("benchmarks (lm-eval, in each metric's direction)", c.benchmarks, _num)):
        if not rows:
            continue
        t = RichTable(title=title)
        for h in [""] + labels + ["ranking"]:
            t.add_column(h, justify="left" if h in ("", "ranking") else "right")
        for r in rows:
            t.add_row(r.name, *[fmt(r.cells.get(lab)) for lab in labels], r.order_text())
        console.print(t)
    effects = headline(c.length)
    if effects:
        t = RichTable(title="prompt length: one-line prompts vs their long twins (intervals: the page)")
        for h in ("model", "measure", "short", "long", "short - long", ""):
            t.add_column(h, justify="right" if h in ("short", "long", "short - long") else "left",
                         no_wrap=h in ("model", "short", "long", "short - long"))
        for e in effects:
            what = e.what.replace("failure rate (", "failure: ").rstrip(")")
            t.add_row(e.label, what, f"{e.short.value:.2f}", f"{e.long.value:.2f}",
                      e.effect.text(2, signed=True), verdict(e))
        console.print(t)
