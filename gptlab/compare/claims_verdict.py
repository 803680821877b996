"""A parsed claim against the measurements: its quantities, the margin d by which it holds, the verdict and
the evidence line (the measured numbers with their 95 % intervals).

    gptlab check examples/claims.toml --db results.sqlite
    python -m pytest tests/test_claims.py

The claims file format and the verdict rule are documented in gptlab/compare/claims.py; `check` judges
every claim of a parsed file against the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gptlab.compare.claims import VERDICTS, Claim, ClaimsFile, Result, aliases_of
from gptlab.compare.claims_ladder import Ladders, Predicted
from gptlab.compare.measurements import ANY, Measurements, pick, resolve
from gptlab.errors import GptlabError
from gptlab.stats import bootstrap as stats
from gptlab.stats.bootstrap import Units
from gptlab.verdicts import ClaimVerdict


@dataclass
class Quantity:
    """A measured number: sum of sign x statistic(units) (one term, or short - long for a length effect)."""
    what: str                       # "bpb (group code)"
    model: str                      # the model's label
    terms: list[tuple[float, Units]]
    units: str                      # "37 documents", "16 samples"
    term_names: tuple[str, ...] = ()   # for two terms: ("short", "long")

    def value(self) -> float:
        return sum(sign * u.value() for sign, u in self.terms)

    def replicates(self, resamples, seed) -> np.ndarray:
        return sum(sign * stats.replicates(u, resamples=resamples, seed=seed) for sign, u in self.terms)

    def interval(self, resamples, seed) -> stats.Interval:
        if len(self.terms) == 1:
            return stats.estimate(self.terms[0][1], resamples=resamples, seed=seed)
        n = min(u.n for _, u in self.terms)
        return stats.from_replicates(self.value(), self.replicates(resamples, seed), n)


def _selected(meas: Measurements, spec: dict) -> tuple[list[str], str]:
    probes = meas.select_probes(probe=spec.get("probe"), domain=spec.get("domain"), prompts=spec.get("prompts"))
    if spec.get("probe"):
        names = ", ".join(probes) if len(probes) <= 3 else f"{', '.join(probes[:2])} and {len(probes) - 2} more"
        return probes, f"on {names}"
    if spec.get("domain"):
        return probes, f"on {spec['domain']} probes"
    if spec.get("prompts"):
        return probes, f"on {spec['prompts']} prompts ({len(probes)} probes)"
    return probes, f"on all {len(probes)} probes"


def quantity(meas: Measurements, spec: dict, label: str) -> Quantity:
    metric = spec["metric"]
    if metric == "bpb":
        u = meas.bpb(label, domain=spec.get("domain"), group=spec.get("group"))
        what = f"bpb ({spec['domain']})" if spec.get("domain") else \
            f"bpb (group {spec['group']})" if spec.get("group") else "bpb (all domains)"
        return Quantity(what, label, [(1.0, u)], f"{u.info['documents']} documents")
    if metric == "failure_rate":
        probes, where = _selected(meas, spec)
        mode = spec.get("mode", ANY)
        u = meas.failure_rate(label, probes, mode, spec.get("max_tokens"))
        if not u.n:
            raise GptlabError(f"{label} has no diagnosed samples {where}")
        length = f", {spec['max_tokens']} tokens" if spec.get("max_tokens") else ""
        return Quantity(f"failure rate ({mode}) {where}{length}", label, [(1.0, u)], f"{u.info['samples']} samples")
    if metric == "pass_at_k":
        probes, where = _selected(meas, spec)
        k = spec.get("k", 1)
        u = meas.pass_at(label, probes, k, spec.get("max_tokens"))
        length = f", {spec['max_tokens']} tokens" if spec.get("max_tokens") else ""
        return Quantity(f"pass@{k} {where}{length}", label, [(1.0, u)], f"{u.info['samples']} samples")
    # prompt_length_effect: short minus long twins
    pairs = meas.twins()
    if not pairs:
        raise GptlabError("no short/long twin probes (twin_of) have samples")
    if spec["of"] == "pass_at_k":
        pairs = [(s, lo) for s, lo in pairs if meas.probes[s]["tests"] and meas.probes[lo]["tests"]]
        k = spec.get("k", 1)
        short, long = (meas.pass_at(label, [p[i] for p in pairs], k) for i in (0, 1))
        what = f"pass@{k} short - long prompts ({len(pairs)} pairs)"
    else:
        mode = spec.get("mode", ANY)
        short, long = (meas.failure_rate(label, [p[i] for p in pairs], mode) for i in (0, 1))
        what = f"failure rate ({mode}) short - long prompts ({len(pairs)} pairs)"
    return Quantity(what, label, [(1.0, short), (-1.0, long)], f"{short.n + long.n} generations",
                    ("short", "long"))


def _n(q) -> int:
    return q.n if isinstance(q, Predicted) else min(u.n for _, u in q.terms)


def difference(a: Quantity, b: Quantity, resamples, seed) -> stats.Interval:
    """a - b: paired by unit when both are single measurements on the same units; a ladder's prediction is
    independent of any measurement."""
    if len(a.terms) == 1 and len(b.terms) == 1:
        return stats.difference(a.terms[0][1], b.terms[0][1], resamples=resamples, seed=seed)
    reps = a.replicates(resamples, seed) - b.replicates(resamples, seed)
    return stats.from_replicates(a.value() - b.value(), reps, min(_n(a), _n(b)))


def verdict(d: stats.Interval, margins: dict[str, float]) -> ClaimVerdict:
    """The rule of gptlab/compare/claims.py on d, how far the claim holds, and its interval."""
    if d.low > margins["true"]:
        return ClaimVerdict.TRUE
    if d.value > margins["mostly_true"]:
        return ClaimVerdict.MOSTLY_TRUE
    if d.high <= margins["false"]:
        return ClaimVerdict.FALSE
    return ClaimVerdict.INCONCLUSIVE


def _shown(q: Quantity, iv: stats.Interval, resamples: int = stats.RESAMPLES, seed: int = 0) -> str:
    """'code@240 0.562 [0.250, 0.812] (32 generations: short 0.812 [...], long 0.250 [...])'."""
    terms = ""
    if q.term_names:
        terms = ": " + ", ".join(f"{name} {stats.estimate(u, resamples=resamples, seed=seed).text()}"
                                 for name, (_, u) in zip(q.term_names, q.terms))
    return f"{q.model} {iv.text()} ({q.units}{terms})"


def _pair(left: Quantity, right: Quantity, resamples, seed, kind) -> tuple[stats.Interval, str, list]:
    li, ri = left.interval(resamples, seed), right.interval(resamples, seed)
    d = difference(right, left, resamples, seed) if kind == "less" else difference(left, right, resamples, seed)
    same = left.what == right.what
    head = f"{left.what}: {_shown(left, li, resamples, seed)} vs {_shown(right, ri, resamples, seed)}" if same \
        else f"{left.what}: {_shown(left, li, resamples, seed)}; {right.what}: {_shown(right, ri, resamples, seed)}"
    how = "paired by document" if len(left.terms) == 1 and len(right.terms) == 1 and \
        stats.paired(left.terms[0][1], right.terms[0][1]) else "independent samples"
    sign = "right - left" if kind == "less" else "left - right"
    return d, f"{head}; d = {sign} = {d.text(signed=True)} ({how})", [(f"{left.what} {left.model}", li),
                                                                      (f"{right.what} {right.model}", ri)]


def _quantity(meas, ladders: Ladders | None, spec: dict, labels: dict[str, str]):
    if "ladder" in spec:
        return ladders.quantity(spec)
    return quantity(meas, spec, labels[spec["model"]])


def judge_claim(claim: Claim, meas: Measurements | None, labels: dict[str, str], *, resamples: int, seed: int,
                ladders: Ladders | None = None) -> Result:
    c = claim.check
    kind = c["kind"]
    if kind in ("less", "greater"):
        left = _quantity(meas, ladders, c["left"], labels)
        right = _quantity(meas, ladders, c["right"], labels)
        d, evidence, parts = _pair(left, right, resamples, seed, kind)
    elif kind in ("above", "below"):
        left = _quantity(meas, ladders, c["left"], labels)
        li = left.interval(resamples, seed)
        v = c["value"]
        d = stats.Interval(li.value - v, li.low - v, li.high - v, li.n) if kind == "above" else \
            stats.Interval(v - li.value, v - li.high, v - li.low, li.n)
        how = f"measured - {v:g}" if kind == "above" else f"{v:g} - measured"
        evidence = f"{left.what}: {_shown(left, li, resamples, seed)}; d = {how} = {d.text(signed=True)}"
        parts = [(f"{left.what} {left.model}", li)]
    else:
        spec = c["measure"]
        qs = [quantity(meas, dict(spec, model=a), labels[a]) for a in c["models"]]
        step = "less" if c["better"] == "lower" else "greater"
        pairs = [_pair(a, b, resamples, seed, step) for a, b in zip(qs, qs[1:])]
        d = min((p[0] for p in pairs), key=lambda iv: iv.value)
        worst = max(VERDICTS.index(verdict(p[0], claim.margins)) for p in pairs)
        sign = " < " if c["better"] == "lower" else " > "
        ivs = [q.interval(resamples, seed) for q in qs]
        evidence = (f"{qs[0].what}: " + sign.join(f"{q.model} {iv.text()}" for q, iv in zip(qs, ivs)) + "; " +
                    "; ".join(f"d({a.model}, {b.model}) = {p[0].text(signed=True)}"
                              for (a, b), p in zip(zip(qs, qs[1:]), pairs)))
        return Result(claim.statement, VERDICTS[worst], evidence, d,
                      [(f"{q.what} {q.model}", iv) for q, iv in zip(qs, ivs)], claim.comment)
    return Result(claim.statement, verdict(d, claim.margins), evidence, d, parts, claim.comment)


# ---------------------------------------------------------------- checking


def check(cf: ClaimsFile, store, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> list[Result]:
    """Every claim's verdict; a claim the store cannot answer is an error naming it."""
    used = {a for c in cf.claims for a in aliases_of(c.check)}
    aliases = [a for a in cf.models if a in used]
    rows = []
    for a in aliases:
        try:
            rows.append(pick(store, cf.models[a]))
        except GptlabError as e:
            raise GptlabError(f"{cf.path}: [models] {a}: {e}") from None
    try:
        refs = resolve(store, [cf.models[a] for a in aliases], rows)
    except GptlabError as e:
        raise GptlabError(f"{cf.path}: [models]: {e}") from None
    labels = {a: r.label for a, r in zip(aliases, refs)}
    meas = Measurements(store, refs, suite=cf.suite, temperature=cf.temperature) if refs else None
    ladders = Ladders(store, resamples, seed)
    out = []
    for c in cf.claims:
        try:
            out.append(judge_claim(c, meas, labels, resamples=resamples, seed=seed, ladders=ladders))
        except GptlabError as e:
            short = c.statement if len(c.statement) <= 60 else c.statement[:57] + "..."
            raise GptlabError(f"{cf.path}: claim {c.index + 1} ('{short}'): {e}") from None
    return out


def claims_failed(results: list[Result], fail_on: str) -> bool:
    """Whether `gptlab check --fail-on FAIL_ON` fails on these verdicts: "false" (a false claim fails),
    "inconclusive" (a false or an inconclusive one) or "never"."""
    bad = {"false": {ClaimVerdict.FALSE}, "inconclusive": {ClaimVerdict.FALSE, ClaimVerdict.INCONCLUSIVE},
           "never": set()}[fail_on]
    return any(r.verdict in bad for r in results)
