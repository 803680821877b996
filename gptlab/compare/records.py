"""A comparison and claim verdicts as plain JSON records: what `gptlab compare --json` and `gptlab check
--json` print instead of their tables.

    gptlab compare runs/code_heavy runs/prose_heavy --no-eval --json
    gptlab check examples/claims.toml --json
    python -m pytest tests/test_cli.py

The field names are a stable contract (docs/compare.md, "Results out of the store"; tests/test_cli.py pins
them). An interval is {"value", "low", "high", "n"} (n: the units resampled) or null where a model has no
number. The numbers are those of the tables (ranking.build, claims_verdict.check), unrounded.
"""

from __future__ import annotations

import math

INTERVAL_FIELDS = ("value", "low", "high", "n")
MODEL_FIELDS = ("label", "given_as", "run", "step", "weights_hash")
ROW_FIELDS = ("section", "quantity", "units", "lower_is_better", "paired", "values", "ranks", "ranking")
LENGTH_FIELDS = ("model", "what", "pairs", "short", "long", "effect")
CLAIM_FIELDS = ("statement", "comment", "verdict", "evidence", "margin", "parts")
COMPARISON_FIELDS = ("models", "temperature", "detector_version", "suite", "resamples", "notes", "rows",
                     "prompt_length", "claims")
SECTIONS = (("bpb", "bpb"), ("failure_rate", "failures"), ("failure_mode", "modes"), ("pass_at_k", "pass_at"),
            ("benchmark", "benchmarks"))


def _finite(x):
    return float(x) if x is not None and math.isfinite(x) else None


def interval(iv) -> dict | None:
    if iv is None:
        return None
    return {"value": _finite(iv.value), "low": _finite(iv.low), "high": _finite(iv.high), "n": int(iv.n)}


def _row(section: str, q, labels: list[str]) -> dict:
    return {"section": section, "quantity": q.name, "units": q.units, "lower_is_better": q.lower_is_better,
            "paired": q.paired, "values": {lab: interval(q.cells.get(lab)) for lab in labels},
            "ranks": {r.label: r.rank for r in q.ranking}, "ranking": q.order_text()}


def claim_records(results) -> list[dict]:
    """Per claim: statement, comment, verdict, evidence, margin d (an interval) and the measured parts."""
    return [{"statement": r.statement, "comment": r.comment, "verdict": str(r.verdict), "evidence": r.evidence,
             "margin": interval(r.margin), "parts": [{"what": what, **(interval(iv) or dict.fromkeys(INTERVAL_FIELDS))} for what, iv in r.parts]}
            for r in results]


def comparison_record(c, claims=None) -> dict:
    """`gptlab compare --json`: the Comparison's rows (every section, per model value/low/high, the ranking),
    the prompt-length effects, and the claim records when --claims was given (else null)."""
    labels = [m.label for m in c.models]
    models = [{"label": m.label, "given_as": m.target, "run": m.row["run"], "step": m.row["step"],
               "weights_hash": m.weights_hash} for m in c.models]
    rows = [_row(section, q, labels) for section, attr in SECTIONS for q in getattr(c, attr)]
    length = [{"model": e.label, "what": e.what, "pairs": e.pairs, "short": interval(e.short),
               "long": interval(e.long), "effect": interval(e.effect)} for e in c.length]
    return {"models": models, "temperature": c.temperature, "detector_version": c.detector_version,
            "suite": c.suite, "resamples": c.resamples, "notes": list(c.notes), "rows": rows,
            "prompt_length": length, "claims": claim_records(claims) if claims is not None else None}


def check_record(results, title: str = "") -> dict:
    """`gptlab check --json`: {"title", "claims": [claim records]}."""
    return {"title": title, "claims": claim_records(results)}
