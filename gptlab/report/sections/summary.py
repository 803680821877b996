"""The "Assessment" section: the whole report in one paragraph, written from the measurements.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

One sentence each for the budget and convergence verdict, the probe domains (worst verdict first, each
with its two dominant failure modes), the per-byte perplexity, and the first recommendation. Every clause
comes from a number another section shows in full; a clause whose number is missing is left out and the
missing measurement is named instead.
"""

from __future__ import annotations

from gptlab.report.blocks import Raw, human
from gptlab.report.context import pooled
from gptlab.report.html import inline
from gptlab.report.render import section
from gptlab.report.sections.recommend import recommendations
from gptlab.report.sections.run import budget
from gptlab.verdicts import Convergence, DomainVerdict

VERB = {DomainVerdict.WORKS: "works", DomainVerdict.PARTLY: "partly works", DomainVerdict.FAILS: "fails"}
WORST_FIRST = {DomainVerdict.FAILS: 0, DomainVerdict.PARTLY: 1, DomainVerdict.WORKS: 2}


def worst_first(verdicts: dict[str, dict]) -> list[tuple[str, dict]]:
    """(domain, verdict dict) pairs, failing domains first, then by name; an unknown verdict goes last."""
    return sorted(verdicts.items(), key=lambda kv: (WORST_FIRST.get(kv[1]["verdict"], 3), kv[0]))


def assessment(ctx) -> list[str]:
    """The sentences of the assessment, each carrying its numbers."""
    out = []
    b, t = budget(ctx), ctx.trend
    if not ctx.models and not ctx.metrics:
        return ["Nothing has been measured yet: the store holds no evaluated checkpoint and no training log for "
                "this selection. Run `gptlab eval RUN_DIR --db STORE`, then `gptlab report` again."]
    head = []
    if b["steps"] is not None:
        head.append(f"step {b['steps']:,}")
    if b["tokens_seen"]:
        head.append(f"{human(b['tokens_seen'])} tokens seen")
    if b["per_param"]:
        head.append(f"{b['per_param']:.1f} tokens per parameter (Chinchilla ~20)")
    first = f"**{ctx.subject.label}**" + (f" at {', '.join(head)}" if head else "")
    if t is not None and t.y:
        first += f": val bpb {t.y[-1]:.4f}, **{t.verdict}**"
        if t.verdict == Convergence.STILL_DESCENDING and t.law is not None:
            first += f" (no plateau; {t.law.longer:.4f} projected for a run 2x as long with the same schedule)"
        elif t.verdict == Convergence.STILL_DESCENDING and t.fit is not None:
            first += f" (no plateau; {t.fit.projected:.4f} projected at 2x the {ctx.curve.unit})"
        elif t.verdict == Convergence.TOO_FEW_POINTS:
            first += f" ({t.sentence})"
    out.append(first + ".")
    d = ctx.diagnosis
    if d.available and d.verdicts:
        parts = []
        for dom, v in worst_first(d.verdicts):
            rates = d.domain_rates(dom)
            why = ", ".join(f"{m} {rates[m]:.0%}" for m in v["dominant"][:2] if m in rates)
            parts.append(f"{dom} {VERB.get(v['verdict'], v['verdict'])}" + (f" ({why})" if why else ""))
        out.append(f"Probes at step {d.step}, T={d.temperature:g}: " + "; ".join(parts) + ".")
    elif not d.available:
        out.append(f"No diagnosis: {d.missing}.")
    overall = pooled(ctx.latest_bpb) if ctx.latest_bpb else (t.y[-1] if t and t.y else None)
    if overall is not None:
        out.append(f"At {overall:.2f} bpb the per-byte perplexity is {2 ** overall:.2f}.")
    recs = recommendations(ctx)
    if recs:
        out.append(f"Next: {recs[0].action[0].lower()}{recs[0].action[1:]} — {recs[0].because}.")
    return out


def summary_section(store, ctx):
    text = assessment(ctx)
    return section("Assessment", [Raw(" ".join(text), '<div class="summary">' +
                                      "".join(f"<p>{inline(s)}</p>" for s in text) + "</div>")])

