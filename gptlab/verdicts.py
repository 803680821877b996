"""The verdicts gptlab's measurements end in, as string enums: the convergence of a training curve, a probe
domain's outcome, a claim's truth, where a model ladder says a capability threshold is crossed.

    gptlab report runs/demo --db results.sqlite          (convergence and domain verdicts)
    gptlab check examples/claims.toml --db results.sqlite (claim verdicts)
    python -m pytest tests/test_report.py tests/test_trend.py tests/test_claims.py

Each member's value is the word the report, the terminal tables and the store have always used, and a
StrEnum member equals its string ("plateau" == Convergence.PLATEAU), formats as it and serialises to JSON as
it, so code that still passes plain strings keeps working. The bottom layer: nothing from gptlab is imported.
Who decides each: gptlab/stats/trend.py (Convergence), gptlab/diagnose/rollup.py (DomainVerdict),
gptlab/compare/claims_verdict.py (ClaimVerdict), gptlab/stats/capability.py (Extrapolation).
"""

from __future__ import annotations

import enum


class Convergence(enum.StrEnum):
    """Is a val-bpb curve still falling? The plateau rule of gptlab/stats/trend.py."""
    STILL_DESCENDING = "still descending"   # fell more than the tolerance and beyond noise
    PLATEAU = "plateau"                     # moved less than the tolerance over the window
    RISING = "rising"                       # rose more than the tolerance and beyond noise
    UNCLEAR = "unclear"                     # moved more than the tolerance, but within noise
    TOO_FEW_POINTS = "too few points"       # fewer than 2 checkpoints at distinct steps


class DomainVerdict(enum.StrEnum):
    """How a probe domain's samples fare (the diagnosis rollup's rule)."""
    WORKS = "works"
    PARTLY = "partly"
    FAILS = "fails"


class ClaimVerdict(enum.StrEnum):
    """How far a written claim holds against its measurements, best first (the order `order` claims rely
    on: the worst verdict over neighbours is the one latest in this order)."""
    TRUE = "true"
    MOSTLY_TRUE = "mostly true"
    INCONCLUSIVE = "inconclusive"
    FALSE = "false"


class Extrapolation(enum.StrEnum):
    """Where a model ladder puts the size at which a rate crosses a threshold (gptlab/stats/capability.py's
    `predict_crossing`)."""
    MEASURED = "measured"                                # crossed inside the ladder's range, by the fit
    PREDICTED = "predicted"                              # beyond the largest rung, within max_factor x it, bounded
    BEYOND_RANGE = "beyond the ladder's range"           # too far out, or the interval is unbounded
    NOT_REACHABLE = "not reachable"                      # needs a bpb below the irreducible E (most replicates)


__all__ = ["ClaimVerdict", "Convergence", "DomainVerdict", "Extrapolation"]
