"""The "Prompt length" section: one-line prompts against their long twins, with the effect's interval.

    gptlab report runs/demo --db results.sqlite          (the diagnosed checkpoint)
    gptlab compare runs/code_heavy runs/prose_heavy      (every model)
    python -m pytest tests/test_compare.py tests/test_report.py

The suite pairs probes with `twin_of` (the long prompt is the same task with more context: a docstring, the
enclosing class). The effect is short minus long, for the failure rate (any mode, then each mode seen) and
for pass@1 where both twins have tests, computed by gptlab/compare/ranking.py:prompt_length with the intervals of
gptlab/stats/bootstrap.py: a positive failure-rate effect or a negative pass@1 effect means short prompts do
worse; "no significant difference" when the interval includes 0.
"""

from __future__ import annotations

from gptlab.compare.measurements import Measurements, resolve
from gptlab.compare.ranking import prompt_length
from gptlab.report.blocks import Bullets, Note, P, Table
from gptlab.report.render import section

MISSING = ("no short/long twin probes (`twin_of`) among the diagnosed samples: the default suite has four "
           "pairs; `gptlab eval` samples them")


def _fmt(what: str, iv) -> str:
    if iv is None:
        return "–"
    if what.startswith("failure"):
        return f"{iv.value:.0%} [{iv.low:.0%}, {iv.high:.0%}]"
    return iv.text(2)


def sentence(e) -> str:
    """'code@240: failure rate (any) short - long = +0.50 [+0.19, +0.81]: short prompts do worse'."""
    return f"{e.label}: {e.what} short - long = {e.effect.text(2, signed=True)}: {verdict(e)}"


def verdict(e) -> str:
    """What an effect says in words ("short prompts do worse"), or that it is within the noise."""
    eff = e.effect
    if not eff.significant:
        return "no significant difference"
    if e.what.startswith("failure rate (") and e.what != "failure rate (any)":
        # one mode can fall because another took its place (no code at all cannot have a syntax error)
        return f"{'more' if eff.value > 0 else 'less'} often after short prompts"
    worse = eff.value > 0 if e.what.startswith("failure") else eff.value < 0
    return "short prompts do worse" if worse else "short prompts do better"


def length_blocks(effects, pairs: list[tuple[str, str]]) -> list:
    if not effects:
        return [Note(MISSING)]
    rows = [[e.label, e.what, str(e.pairs), _fmt(e.what, e.short), _fmt(e.what, e.long),
             (e.effect.text(2, signed=True) + ("" if e.effect.significant else " n.s.")) if e.effect else "–"]
            for e in effects]
    names = ", ".join(f"`{s}` / `{lo}`" for s, lo in pairs)
    return [P(f"One-line prompts against their long twins (the same task with more context): {names}."),
            Table(["model", "measure", "pairs", "short prompts", "long twins", "short - long"], rows,
                  numeric=[False, False, True, True, True, True],
                  caption="95 % bootstrap intervals over generations; a positive failure-rate effect or a negative "
                          "pass@1 effect means short prompts do worse"),
            Bullets([sentence(e) for e in headline(effects)])]


def headline(effects) -> list:
    """The effects worth a sentence: any failure and pass@1 always, a single mode when significant."""
    return [e for e in effects if e.effect is not None and
            (e.what in ("failure rate (any)", "pass@1") or e.effect.significant)]


def prompt_length_section(store, ctx):
    """The report's section: the effect at the diagnosed checkpoint and temperature."""
    d = ctx.diagnosis
    model = next((m for m in reversed(ctx.models) if m["step"] == d.step), None) if d.available else None
    if model is None:
        return section("Prompt length", [Note(MISSING)])
    label = f"{model['run']}@{model['step']}" if model["run"] and model["step"] is not None else model["path"]
    meas = Measurements(store, resolve(store, [label], [model]), suite=None, temperature=d.temperature)
    effects = prompt_length(meas)
    intro = P(f"Step **{d.step}**, temperature **{d.temperature:g}**.") if effects else None
    return section("Prompt length", [intro] + length_blocks(effects, meas.twins()))
