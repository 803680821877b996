"""The report's "Capability by size" section: what a ladder of sizes (`gptlab ladder`) measured, the fitted
laws, and what they predict for bigger models, with intervals and a leave-one-out check.

    gptlab ladder ladder-demo --out ladder_run          (writes ladder_run/report/ with this section)
    gptlab report ladder-demo --db ladder_run/results.sqlite
    python -m pytest tests/test_ladder_analysis.py

The section appears when the report covers at least three rungs of a ladder recorded in the store. It reads
gptlab/compare/ladder.py's analysis and shows, for each ladder:
  * the rungs: axis value, parameters, training tokens, bpb per domain group with 95 % intervals;
  * bpb against size on log axes with each group's law E + A * N^-alpha and its band, and the fits' numbers;
  * the leave-one-out check: the largest rung predicted from the others, and the error;
  * failure rate (and pass@1) against bpb with each probe's logistic fit, and per probe the size at which it
    would be clean (pass) more often than not, or "beyond the ladder's range";
  * "What each size can do": size | what it can do | what it cannot, each cell citing measured rates, plus
    predicted rows at 4x and 10x the largest rung, a probe placed only when its whole interval is on one side.
"""

from __future__ import annotations

import math

from gptlab.compare.ladder import ALL, MAX_FACTOR, MIN_RUNGS, THRESHOLD, analyse, ladder_names, load_ladder
from gptlab.errors import GptlabError
from gptlab.report import ladder_plots
from gptlab.report.blocks import Figure, Note, P, Table, human
from gptlab.report.render import section
from gptlab.stats.capability import predict_at
from gptlab.verdicts import Extrapolation

TITLE = "Capability by size"
LISTED = 6                   # probes named per cell of the size table
PREDICTED_FACTORS = (4.0, 10.0)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _iv(iv, digits: int = 3) -> str:
    return iv.text(digits)


def _rung_table(an) -> Table:
    groups = list(an.loss)
    rows = []
    for i, r in enumerate(an.ladder.rungs):
        rows.append([r.run, r.value, human(r.non_embedding_params), human(r.params), human(r.tokens),
                     f"{r.tokens / max(r.non_embedding_params, 1):.1f}"] + [_iv(an.bpb[g][i]) for g in groups])
    return Table(["rung", an.ladder.axis, "params (non-emb.)", "params (total)", "tokens", "tokens / non-emb. param"]
                 + [f"bpb {g}" for g in groups], rows, numeric=[False, True, True, True, True, True] +
                 [True] * len(groups), caption="bpb at each rung's last checkpoint, 95 % bootstrap intervals over "
                                               "the evaluation documents")


def _fit_table(an) -> Table:
    rows = []
    for g, fit in an.loss.items():
        loo = an.loo_loss.get(g)
        check = "–" if loo is None else (f"{loo.predicted.text(3)} vs {loo.actual:.3f} measured "
                                         f"({loo.rel_error:+.1%}{'' if loo.inside else ', outside'})")
        rows.append([g, fit.form, fit.interval_E.text(3), fit.interval_alpha.text(3), f"{fit.rmse:.4f}", check])
    if an.compute is not None:
        fit = an.compute
        rows.append([f"{ALL}, by compute (C in FLOPs)", fit.form, fit.interval_E.text(3), fit.interval_alpha.text(3),
                     f"{fit.rmse:.4f}", "–"])
    return Table(["group", "law", "E (irreducible) [95 %]", "alpha [95 %]", "rmse", "largest rung from the others"],
                 rows, numeric=[False, False, True, True, True, False])


def _crossing(p, an) -> str:
    """Where the probe's rate crosses 50 %, in words, non-embedding parameters and the training compute the
    ladder's budget rule would give that size."""
    c = p.crossing
    goal = f"{'below' if p.below else 'above'} {_pct(THRESHOLD)}"
    if c.status == Extrapolation.MEASURED:
        return f"{goal} from {human(c.x)} (measured)"
    if c.status == Extrapolation.NOT_REACHABLE:
        if (p.fit.b <= 0) == p.below:
            return f"never {goal}: it does not improve as bpb falls"
        return f"never {goal}: it needs a bpb below the fitted floor E"
    hi = "∞" if c.hi == float("inf") else human(c.hi)
    span = f"[{human(c.lo)}, {hi}]"
    at = f"{human(c.x)} {span}" if math.isfinite(c.x) else span
    if c.status == Extrapolation.PREDICTED:
        return f"{goal} at {at} (~{an.compute_at(c.x):.2g} FLOPs)"
    return f"{goal} at {at}: {c.status}"


def _flat(p) -> bool:
    """Failing at every rung (or passing at none): nothing to fit a trend to."""
    return p.fit is not None and bool((p.k == p.n).all() if p.below else (p.k == 0).all())


def _probe_table(an) -> Table:
    rows = []
    for p in an.probes:
        if _flat(p):
            continue
        if p.fit is None:
            rows.append([p.probe, p.metric] + ["–"] * len(an.ladder.rungs) + ["–", p.error])
            continue
        rows.append([p.probe, p.metric] + [f"{_pct(r)} ({int(k)}/{int(n)})" for r, k, n in zip(p.rates, p.k, p.n)]
                    + [f"{p.fit.b:+.2f}", _crossing(p, an)])
    return Table(["probe", "metric"] + [r.value for r in an.ladder.rungs] + ["slope per bpb", "size needed"], rows,
                 caption=f"columns: the ladder's {an.ladder.axis}; the size needed is in non-embedding parameters, "
                         f"with its 95 % interval; beyond {MAX_FACTOR:g}x the largest rung nothing is predicted")


def _flat_note(an) -> list:
    fails = [p.probe for p in an.probes if _flat(p) and p.below]
    never = [p.probe for p in an.probes if _flat(p) and not p.below]
    out = []
    if fails:
        out.append(P(f"Failing in every sample at every rung ({len(fails)} probes, so no trend to fit and no size "
                     f"to predict): {', '.join(fails)}."))
    if never:
        out.append(P(f"Passing their tests in no sample at any rung: {', '.join(never)}."))
    return out


def _listed(items: list[str]) -> str:
    if not items:
        return "–"
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def _size_table(an) -> Table:
    """size | can do | cannot: measured rows per rung, then predicted rows beyond the largest rung."""
    fails = [p for p in an.probes if p.metric == "failure rate" and p.fit is not None]
    rows = []
    for i, r in enumerate(an.ladder.rungs):
        ranked = sorted(fails, key=lambda p: p.rates[i])
        can = [f"{p.probe} ({_pct(1 - p.rates[i])} clean)" for p in ranked if p.rates[i] < THRESHOLD]
        cannot = [f"{p.probe} ({_pct(p.rates[i])} fail)" for p in reversed(ranked) if p.rates[i] >= THRESHOLD]
        rows.append([f"{human(r.non_embedding_params)} ({r.value}, measured)", _listed(can), _listed(cannot)])
    top = an.ladder.sizes.max()
    for factor in PREDICTED_FACTORS:
        can, cannot = [], []
        for p in fails:
            if _flat(p):
                continue
            iv = predict_at(an.loss[p.group], p.fit, top * factor)
            if iv.high < THRESHOLD:
                can.append((iv.value, f"{p.probe} ({_pct(1 - iv.value)} clean [{_pct(1 - iv.high)}, "
                                      f"{_pct(1 - iv.low)}])"))
            elif iv.low >= THRESHOLD:
                cannot.append((-iv.value, f"{p.probe} ({_pct(iv.value)} fail [{_pct(iv.low)}, {_pct(iv.high)}])"))
        flat = sum(_flat(p) for p in fails)
        unknown = _listed([t for _, t in sorted(cannot)])
        if flat:
            skipped = f"not predicted: the {flat} probes that failed at every rung"
            unknown = skipped if not cannot else f"{unknown}; {skipped}"
        rows.append([f"{human(top * factor)} ({factor:g}x, predicted)", _listed([t for _, t in sorted(can)]), unknown])
    return Table(["size (non-embedding parameters)", "what it can do (clean more often than not)",
                  "what it cannot (fails more often than not)"], rows,
                 caption="measured rows cite each probe's share of clean (failing) samples at that rung; predicted "
                         "rows name a probe only when its whole 95 % interval is on one side of 50 %")


def _one(store, name: str) -> list:
    ladder = load_ladder(store, name)
    if len(ladder.rungs) < MIN_RUNGS:
        return [Note(f"ladder {name}: {len(ladder.rungs)} evaluated rung(s); the fits need at least {MIN_RUNGS} "
                     f"(run gptlab ladder again to finish it)")]
    an = analyse(ladder)
    fits = [p for p in an.probes if p.fit is not None]
    loo = an.loo_rate
    loo_text = "" if loo is None else (
        f" Predicted from the smaller rungs, the largest rung's pooled failure rate is {loo.predicted.text(3)}; it "
        f"measured {loo.actual:.3f} (error {loo.error:+.3f}{'' if loo.inside else ', outside the interval'}).")
    blocks = [P(f"**Ladder {name}**: {len(ladder.rungs)} rungs along `{ladder.axis}`, "
                f"{human(ladder.sizes.min())} to {human(ladder.sizes.max())} non-embedding parameters, each measured at "
                f"its last checkpoint. Size N is the non-embedding parameter count; bpb per group follows "
                f"bpb = E + A · N^-alpha (least squares; intervals resample the evaluation documents and the "
                f"scatter between rungs)."),
              _rung_table(an),
              Figure("ladder_loss", ladder_plots.loss_svg(an, MAX_FACTOR),
                     "bpb by size on log axes; dashed: the fitted law, shaded: its 95 % band"),
              _fit_table(an),
              P(f"How far to trust the extrapolation: the last column predicts the largest rung from the others, "
                f"as a user would predict the next size.{loo_text}")]
    trends = [p for p in fits if not _flat(p)]
    if trends:
        bpb_of = {g: [iv.value for iv in ivs] for g, ivs in an.bpb.items()}
        blocks += [Figure("ladder_capability", ladder_plots.capability_svg(trends, bpb_of),
                          "each probe's rate at each rung against the bpb of its domain group, with a logistic fit"),
                   _probe_table(an)]
    if fits:
        blocks += _flat_note(an) + [P("**What each size can do**, measured at each rung and predicted beyond it:"),
                                    _size_table(an)]
    blocks += [Note(n, "info") for n in an.notes]
    return blocks


def ladder_section(store, ctx):
    """None (left out) unless the report covers rungs of a ladder."""
    runs = {m["run"] for m in ctx.models}
    names = ladder_names(store, runs)
    if not names:
        return None
    blocks = []
    for name in names:
        try:
            blocks += _one(store, name)
        except GptlabError as e:
            blocks.append(Note(f"ladder {name}: {e}"))
    return section(TITLE, blocks)
