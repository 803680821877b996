"""The report's "Benchmarks" section: the lm-evaluation-harness scores of each checkpoint.

    gptlab bench runs/demo --tasks arc_easy,hellaswag && gptlab report runs/demo
    python -m pytest tests/test_benchmarks.py

The report shows one table per checkpoint that has scores: task, its version, n-shot, documents, metric (↑
higher is better, ↓ lower), lm-eval's value and lm-eval's standard error, newest score per setting. A report of
checkpoints without any score has no Benchmarks section (scores need the optional extra [bench]). The compare
page ranks models on the same scores (gptlab/report/sections/compare.py, gptlab/compare/benchmarks.py).
"""

from __future__ import annotations

from collections import defaultdict

from gptlab.compare.benchmarks import metric_name, metric_records, newest_rows
from gptlab.report.blocks import P, Table
from gptlab.report.render import section

TITLE = "Benchmarks"


def _arrow(better) -> str:
    return "↑" if better else "↓" if better is False else ""


def _num(x) -> str:
    """4 decimals; 4 significant digits for large values (perplexities)."""
    return "–" if x is None else f"{x:.4f}" if abs(x) < 1000 else f"{x:.4g}"


def checkpoint_table(rows: list[dict], caption: str) -> Table:
    out = []
    for row in sorted(rows, key=lambda r: (r["task"], r["num_fewshot"], r["doc_limit"])):
        for r in metric_records(row):
            limit = f" (limit {r['limit']:g})" if r["limit"] else ""
            out.append([r["task"], str(r["task_version"]), str(r["num_fewshot"]), f"{r['n_docs']}{limit}",
                        f"{metric_name('', r['metric'], r['filter']).strip()} {_arrow(r['higher_is_better'])}".strip(),
                        _num(r["value"]), _num(r["stderr"])])
    return Table(["task", "version", "n-shot", "documents", "metric", "value", "± stderr"], out,
                 numeric=[False, False, True, True, False, True, True], caption=caption)


def benchmarks_section(store, ctx):
    """The report's section (None, so left out, when no covered checkpoint has a score)."""
    rows = newest_rows(store.benchmark_rows([m["weights_hash"] for m in ctx.models]))
    if not rows:
        return None
    per_model = defaultdict(list)
    for r in rows:
        per_model[r["weights_hash"]].append(r)
    blocks = [P("Scores from lm-evaluation-harness (`gptlab bench`), as lm-eval computes them; `± stderr` is "
                "lm-eval's standard error of the value. `gptlab compare` ranks models on them with bootstrap "
                "intervals.")]
    for m in ctx.models:
        if per_model.get(m["weights_hash"]):
            label = f"{m['run']}@{m['step']}" if m["step"] is not None else (m["run"] or m["path"])
            rows = per_model[m["weights_hash"]]
            protocols = ", ".join(sorted({r["protocol"] for r in rows}))
            versions = ", ".join(sorted({str(r["lm_eval_version"]) for r in rows}))
            blocks += [P(f"**{label}**"),
                       checkpoint_table(rows, f"adapter protocol {protocols}; lm-eval {versions}")]
    return section(TITLE, blocks)

