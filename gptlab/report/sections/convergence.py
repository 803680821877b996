"""The "Convergence" and "What the numbers mean" sections: is the curve still falling, and what a bpb says.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

Convergence restates gptlab/stats/trend.py's measurements (recent slope with its standard error, the
plateau rule, the power law and its projection at 2x tokens) and, when the run's stored config gives its
learning-rate schedule, gptlab/stats/schedule_fit.py's law with its intervals: this run's predicted end, a
run 2x as long with the same schedule, and that run at constant rate (tests/test_schedule_fit.py). The
meaning section turns each domain's bpb into per-byte perplexity 2^bpb and bits per token (bpb x bytes /
tokens of that domain's val text), and sorts domains into entropy classes relative to the pooled bpb: below
0.9x is low entropy (formulaic text the model predicts well), above 1.1x high entropy, in between middle.
"""

from __future__ import annotations

from gptlab.report import plots
from gptlab.report.blocks import Cell, Figure, Note, P, Table, fmt, human
from gptlab.report.context import pooled
from gptlab.report.render import section
from gptlab.stats.trend import REL_TOL, WINDOW, per_unit
from gptlab.verdicts import Convergence, DomainVerdict

LOW, HIGH = 0.9, 1.1
PROBE_GOOD = {DomainVerdict.WORKS: True, DomainVerdict.FAILS: False}     # partly: not coloured
PROBES_DO = {DomainVerdict.WORKS: "work", DomainVerdict.PARTLY: "partly work", DomainVerdict.FAILS: "fail"}


def convergence_section(store, ctx):
    t, c = ctx.trend, ctx.curve
    blocks = [P(f"**Verdict: {t.verdict}.** {t.sentence[0].upper()}{t.sentence[1:]}.")]
    rows = []
    if t.slope is not None:
        rate, unit = per_unit(t.slope.slope, c.unit, max(t.x))
        se = "" if t.slope.stderr is None else f" ± {abs(per_unit(t.slope.stderr, c.unit, max(t.x))[0]):.4f}"
        rows += [["recent slope (least squares, last %d checkpoints)" % t.slope.n, f"{rate:+.4f}{se} bpb {unit}"],
                 ["change across that window", f"{-t.slope.drop:+.4f} bpb"],
                 [f"plateau tolerance ({REL_TOL:.1%} of the latest bpb)", fmt(t.tol)],
                 ["noise across the window (2 standard errors)", fmt(t.slope.noise)]]
    if t.fit is not None:
        f = t.fit
        rng = (f" (leave-one-out range {f.projected_range[0]:.4f} – {f.projected_range[1]:.4f})"
               if f.projected_range else "")
        t_name = "t in tokens" if c.unit == "tokens" else "t in steps"
        rows += [["power law bpb(t) = a + b·t^-c", f"a = {f.a:.4f}, b = {f.b:.4g}, c = {f.c:.3f} ({t_name}); "
                                                  f"rmse {f.rmse:.4f} over {f.n} points"],
                 [f"projected bpb at 2x the {c.unit} ({human(2 * f.t_last)})", f"{f.projected:.4f}{rng}"],
                 ["projected gain from doubling", f"{f.gain:.4f} bpb"]]
    if t.law is not None:
        rows += law_rows(t.law)
    if rows:
        blocks.append(Table(["measurement", "value"], rows, caption=f"curve: val bpb from {c.source}, "
                                                                    f"{len(t.x)} points"))
    for m in t.missing:
        blocks.append(Note(m))
    if t.law_note:
        blocks.append(Note(t.law_note[0].upper() + t.law_note[1:] + ".", kind="info"))
    domain_rows = []
    for d, dt in sorted(ctx.domain_trends.items()):
        if not dt.y:
            continue
        domain_rows.append([d, fmt(dt.y[-1]), fmt(-dt.slope.drop) if dt.slope else "–",
                            Cell(dt.verdict, good=False if dt.verdict == Convergence.RISING else None),
                            fmt(dt.projection[0]) if dt.projection else "–"])
    if domain_rows:
        blocks.append(Table(["domain", "latest bpb", "change over window", "verdict", "projected at 2x"],
                            domain_rows, numeric=[False, True, True, False, True],
                            caption="the same rule applied to each domain's curve (projected: the "
                                    "schedule-aware law's 2x run where it judged, else the power law at 2x)"))
    blocks.append(P(f"Rule: over the last {WINDOW} checkpoints (all of them when there are fewer), a change "
                    f"within {REL_TOL:.1%} of the latest bpb is a plateau; a fall larger than that and than two "
                    f"standard errors of the slope is \"still descending\". With the run's learning-rate schedule "
                    f"(a warmdown, >= 5 val points, 2 in the warmdown) the schedule-aware law judges instead: "
                    f"\"still descending\" when a run 2x as long with the same schedule would end lower by more "
                    f"than the tolerance across its whole 95% bootstrap interval; see docs/report.md."))
    return section("Convergence", blocks)


def law_rows(law) -> list[list[str]]:
    """The schedule-aware fit's numbers, each with its 95% bootstrap interval."""
    iv = law.intervals

    def val(key: str, value: float, spec: str = ".4f") -> str:
        lo, hi = iv.get(key, (value, value))
        return f"{value:{spec}} ({lo:{spec}} – {hi:{spec}})"

    s = law.schedule
    longer = s.longer(law.factor)
    return [["schedule-aware law L = L0 + A·S1^-α − C·S2 (Tissue et al. 2024; S1 = Σ lr multiplier, S2 = "
             "annealing area with momentum λ)",
             f"L0 = {val('L0', law.L0)}, A = {val('A', law.A, '.3f')}, α = {val('alpha', law.alpha, '.3f')}, "
             f"λ = {val('lambda', law.lam, '.3f')}, C = {val('C', law.C, '.3g')}; rmse {law.rmse:.4f} over "
             f"{law.n} points; intervals: 95%, residual bootstrap"],
            [f"schedule: {s.steps:,} steps, warmup {s.warmup_steps}, warmdown {s.warmdown_frac:.0%} to "
             f"{s.final_lr_frac:g} of the peak", f"annealing credited at the end: {law.annealing_drop():.4f} bpb"],
            [f"predicted bpb at this run's end (step {s.steps:,})", val("final", law.final)],
            [f"a run {law.factor:g}x as long, same schedule shape ({longer.steps:,} steps)", val("longer", law.longer)],
            [f"a run {law.factor:g}x as long at the peak rate throughout (no warmdown)", val("constant", law.constant)],
            ["gain of the longer run over this one", val("gain", law.gain)]]


def domain_table(ctx) -> list[dict]:
    """Per domain at the newest checkpoint with bpb: bpb, perplexity, bits/token, entropy class, share."""
    rows = ctx.latest_bpb
    if not rows:
        return []
    overall = pooled(rows)
    mix = ctx.mixture
    out = []
    for d, r in sorted(rows.items(), key=lambda kv: kv[1]["bpb"]):
        ratio = r["bpb"] / overall if overall else 1.0
        klass = "middle" if len(rows) == 1 else "low" if ratio < LOW else "high" if ratio > HIGH else "middle"
        bpt = r["bpb"] * r["bytes"] / r["tokens"] if r["tokens"] and r["bytes"] else None
        out.append({"domain": d, "bpb": r["bpb"], "perplexity": 2 ** r["bpb"], "bytes_per_token":
                    r["bytes"] / r["tokens"] if r["tokens"] else None, "bits_per_token": bpt,
                    "class": klass, "share": mix.get(d, {}).get("share"), "group": mix.get(d, {}).get("group")
                    or d.split("_")[0]})
    return out


def meaning_section(store, ctx):
    rows = domain_table(ctx)
    verdicts = ctx.diagnosis.verdicts if ctx.diagnosis.available else {}
    if not rows:
        return section("What the numbers mean", [Note("no per-domain bpb measured yet: `gptlab eval` scores "
                                                      "each domain's val text")])
    overall = pooled(ctx.latest_bpb)
    p = 2 ** overall
    blocks = [P(f"At **{overall:.2f} bpb** overall the per-byte perplexity is **2^{overall:.2f} = {p:.2f}**: at "
                f"every byte the model is, on average, as uncertain as a uniform choice among {p:.1f} bytes. "
                f"A task that needs every byte right (code that compiles, an exact number) compounds that "
                f"uncertainty over its whole length; text where many continuations are acceptable does not.")]
    table_rows = []
    for r in rows:
        v = verdicts.get(r["group"], {}).get("verdict")
        table_rows.append([r["domain"], fmt(r["bpb"]), f"{r['perplexity']:.2f}", fmt(r["bytes_per_token"], 2),
                           fmt(r["bits_per_token"], 2), Cell(r["class"], good={"low": True, "high": False}.get(
                               r["class"])), f"{r['share']:.1%}" if r["share"] is not None else "–",
                           Cell(f"{r['group']}: {v}" if v else "–", good=PROBE_GOOD.get(v))])
    blocks.append(Table(["domain", "bpb", "perplexity / byte", "bytes / token", "bits / token", "entropy",
                         "share of data", "probe verdict"], table_rows,
                        numeric=[False, True, True, True, True, False, True, False],
                        caption=f"at step {fmt(ctx.latest['step'] if ctx.latest else None)}; entropy class "
                                f"relative to the pooled {overall:.3f} bpb (low < {LOW}x, high > {HIGH}x)"))
    blocks.append(Figure("domains", plots.domains_svg([(r["domain"], r["bpb"], r["class"]) for r in rows]),
                         "bits per byte per domain: green = low entropy (formulaic), red = high entropy"))
    low = [r for r in rows if r["class"] == "low"]
    high = [r for r in rows if r["class"] == "high"]
    said = []
    if low:
        said.append("Low-entropy (formulaic, well predicted): " + ", ".join(
            f"{r['domain']} ({r['bpb']:.2f} bpb, {r['perplexity']:.2f} per byte)" for r in low) + ".")
    if high:
        said.append("High-entropy (hard to predict): " + ", ".join(
            f"{r['domain']} ({r['bpb']:.2f} bpb, {r['perplexity']:.2f} per byte)" for r in high) + ".")
    joined = _joined(rows, verdicts)
    if joined:
        said.append(joined)
    if said:
        blocks.append(P(" ".join(said)))
    return section("What the numbers mean", blocks)


def _joined(rows, verdicts) -> str:
    """Each probe group's mean bpb and entropy classes next to its probes' verdict, in one sentence."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    parts = []
    for g, rs in groups.items():
        v = verdicts.get(g, {}).get("verdict")
        if not v:
            continue
        mean = sum(r["bpb"] for r in rs) / len(rs)
        classes = sorted({r["class"] for r in rs})
        parts.append(f"{g} text averages {mean:.2f} bpb ({'/'.join(classes)} entropy) and its probes "
                     f"{PROBES_DO.get(v, 'fail')}")
    return ("Against the probes: " + "; ".join(parts) + ".") if parts else ""
