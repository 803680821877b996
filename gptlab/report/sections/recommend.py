"""The "What would help" section: recommendations derived from the measurements, each citing its number.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

`recommendations(ctx)` returns typed Recommendations — which Rule fired, on which domain, at what measured
value — and the section only words them. Each rule reads one measurement and fires only when it crosses its
threshold; docs/report.md lists the rules. Nothing here is advice a person typed in for a particular run:
remove the measurement and the recommendation disappears.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gptlab.report.blocks import Bullets, Note, P, Table
from gptlab.report.context import pooled
from gptlab.report.render import section
from gptlab.report.sections.convergence import domain_table
from gptlab.report.sections.run import CHINCHILLA_TOKENS_PER_PARAM, budget
from gptlab.verdicts import Convergence, DomainVerdict

LOOP_RATE = 0.2          # repetition loops in more than this share of samples deserve a recommendation
ECHO_RATE = 0.3
CODE_FAIL_RATE = 0.5


class Rule(enum.StrEnum):
    """Which rule fired; the comment says what Recommendation.value then holds."""
    TRAIN_LONGER = "train longer"                    # convergence "still descending"; value: bpb fall over the window
    SCALE_OR_SCHEDULE = "larger model or schedule"   # "plateau"; value: bpb fall over the window
    ROLL_BACK = "stop or roll back"                  # "rising"; value: bpb fall over the window (negative)
    MORE_CHECKPOINTS = "evaluate more"               # "unclear"; value: bpb fall over the window
    MORE_TOKENS = "more tokens"                      # value: tokens per parameter
    MORE_DOMAIN_DATA = "more domain data"            # subject: the domain; value: its share of training tokens
    REPETITION = "repetition loops"                  # value: loop rate at the report's temperature
    PROMPT_ECHO = "prompt echo"                      # value: prompt_echo rate
    FAILING_DOMAIN = "failing domain"                # subject: the probe domain; value: its top mode's rate


@dataclass(frozen=True)
class Recommendation:
    rule: Rule
    action: str                  # what to do, in a few words
    because: str                 # the measurement that triggered it, with its number
    value: float | None = None   # that measurement (see Rule)
    subject: str | None = None   # the domain a per-domain rule is about


def recommendations(ctx) -> list[Recommendation]:
    """Every rule that fires on the context's measurements, in the order the section lists them."""
    recs: list[Recommendation] = []
    t, b = ctx.trend, budget(ctx)
    if t is not None and t.verdict == Convergence.STILL_DESCENDING:
        why = f"val bpb fell {t.slope.drop:.4f} over the last {t.slope.n} checkpoints"
        if t.slope.noise is not None:
            why += f" (noise {t.slope.noise:.4f})"
        if t.law is not None:
            why += (f"; the schedule-aware law projects {t.law.longer:.4f} for a run 2x as long with the same "
                    f"schedule, a gain of {t.law.gain:.4f} bpb")
        elif t.fit is not None:
            why += (f"; the power law projects {t.fit.projected:.4f} at 2x the {ctx.curve.unit}, a gain of "
                    f"{t.fit.gain:.4f} bpb")
        recs.append(Recommendation(Rule.TRAIN_LONGER, "Train longer: the curve has not flattened", why,
                                   t.slope.drop))
    elif t is not None and t.verdict == Convergence.PLATEAU:
        why = f"val bpb moved {-t.slope.drop:+.4f} over the last {t.slope.n} checkpoints (tolerance {t.tol:.4f})"
        if t.law is not None:
            why = (f"a run 2x as long with the same schedule would end only {t.law.gain:.4f} bpb lower (tolerance "
                   f"{t.tol:.4f}); {t.law.annealing_drop():.4f} bpb of the late drop is the warmdown's annealing")
        recs.append(Recommendation(Rule.SCALE_OR_SCHEDULE, "More steps at this size will not help much: try a "
                                   "larger model or a new learning-rate schedule", why, t.slope.drop))
    elif t is not None and t.verdict == Convergence.RISING:
        best = min(zip(t.y, ctx.curve.steps if ctx.curve else []), default=None)
        why = f"val bpb rose {-t.slope.drop:.4f} over the last {t.slope.n} checkpoints"
        if best:
            why += f"; the best checkpoint is step {best[1]} at {best[0]:.4f}"
        recs.append(Recommendation(Rule.ROLL_BACK, "Stop or roll back: look for repeated data (several epochs) or "
                                   "a learning rate that is too high", why, t.slope.drop))
    elif t is not None and t.verdict == Convergence.UNCLEAR:
        recs.append(Recommendation(Rule.MORE_CHECKPOINTS, "Evaluate more checkpoints, or more val text per "
                                   "domain, before deciding",
                                   f"the last window moved {-t.slope.drop:+.4f} bpb, within its noise "
                                   f"({t.slope.noise:.4f})", t.slope.drop))
    if b["per_param"] and b["per_param"] < 0.5 * CHINCHILLA_TOKENS_PER_PARAM:
        need = CHINCHILLA_TOKENS_PER_PARAM * b["params"]
        steps = f" ({need / b['tokens_per_step']:,.0f} steps at {b['tokens_per_step']:,} tokens per step)" \
            if b["tokens_per_step"] else ""
        recs.append(Recommendation(Rule.MORE_TOKENS, "The model is far from compute-optimal: give it more tokens",
                                   f"{b['per_param']:.1f} tokens per parameter against the ~20 of the Chinchilla "
                                   f"rule; 20 would be {need:,.0f} tokens{steps}", b["per_param"]))
    rows = domain_table(ctx)
    if len(rows) > 1:
        even = 1 / len(rows)
        overall = pooled(ctx.latest_bpb)
        for r in rows:
            if r["class"] == "high" and r["share"] is not None and r["share"] < even:
                recs.append(Recommendation(Rule.MORE_DOMAIN_DATA, f"More {r['domain']} data in the mixture",
                                           f"its bpb {r['bpb']:.3f} is {r['bpb'] / overall:.2f}x the pooled "
                                           f"{overall:.3f} "
                                           f"while it is {r['share']:.1%} of training tokens (an even share would "
                                           f"be {even:.1%})", r["share"], r["domain"]))
    recs += _from_diagnosis(ctx)
    return recs


def _from_diagnosis(ctx) -> list[Recommendation]:
    d = ctx.diagnosis
    if not d.available:
        return []
    recs = []
    temps = d.repetition_by_temperature
    at = temps.get(d.temperature)
    if at and at[0] > LOOP_RATE:
        per = ", ".join(f"T={t:g}: {r:.0%} of {n}" for t, (r, n) in sorted(temps.items()))
        if len(temps) > 1:
            best = min(temps.items(), key=lambda kv: kv[1][0])
            action = (f"Sample at T={best[0]:g} (fewest loops) or add a repetition penalty; loops are "
                      f"partly a sampling effect")
        else:
            action = ("Measure loops at more temperatures (e.g. 0.5 and 1.0) to tell a sampling effect from a "
                      "model that has not learned to stop repeating")
        recs.append(Recommendation(Rule.REPETITION, action, f"repetition loops per temperature: {per}", at[0]))
    echo = d.mode_rate("prompt_echo")
    if echo is not None and echo > ECHO_RATE:
        recs.append(Recommendation(Rule.PROMPT_ECHO, "The model copies its prompt instead of continuing it: more "
                                   "training and more varied data in the echoing domains",
                                   f"prompt_echo in {echo:.0%} of samples at step {d.step}", echo))
    for domain, v in sorted(d.verdicts.items()):
        if v["verdict"] != DomainVerdict.FAILS:
            continue
        rates = d.domain_rates(domain)
        top = max(rates.items(), key=lambda kv: kv[1], default=None)
        if top and top[1] >= CODE_FAIL_RATE:
            recs.append(Recommendation(Rule.FAILING_DOMAIN, f"{domain} probes fail: more {domain} data, or a "
                                       f"larger model",
                                       f"{top[0]} in {top[1]:.0%} of {domain} samples at step {d.step}"
                                       + (f" ({v['why']})" if v.get("why") else ""), top[1], domain))
    return recs


def recommendations_section(store, ctx):
    recs = recommendations(ctx)
    if not recs:
        blocks = [P("No measurement crossed a threshold that suggests a change.")]
        if not ctx.models:
            blocks = [Note("nothing measured yet, so nothing to recommend: run `gptlab eval` on a run's "
                           "checkpoints, then this report again")]
        return section("What would help", blocks)
    return section("What would help", [
        Bullets([f"**{r.action}.** Because {r.because}." for r in recs]),
        Table(["rule", "threshold"],
              [["still descending / plateau / rising", "convergence rule (see Convergence)"],
               ["tokens per parameter", f"< {0.5 * CHINCHILLA_TOKENS_PER_PARAM:g}"],
               ["more data of a domain", "high-entropy domain with a below-even share of the mixture"],
               ["repetition loops", f"> {LOOP_RATE:.0%} of samples at the report's temperature"],
               ["prompt echo", f"> {ECHO_RATE:.0%} of samples"],
               ["failing domain", f"verdict 'fails' and its most frequent mode in >= {CODE_FAIL_RATE:.0%}"]],
              caption="the thresholds behind these recommendations")])
