"""The stored findings of the report's checkpoints, summarised once for the diagnosis, cards and advice.

    gptlab report runs/demo --db results.sqlite
    python -m pytest tests/test_report.py

The diagnosed checkpoint is the newest one with findings; the report's temperature is PREFERRED_TEMPERATURE
(0.8) when it was sampled, else the most sampled one. Mode rates, pass@k and the per-domain verdicts are
gptlab.diagnose.rollup's, the single definition of those numbers; the verdicts are read as
gptlab.verdicts.DomainVerdict. The report asks the rollup per probe over all sample lengths (the failure
matrix), per length, per temperature and per checkpoint by grouping the rows it passes; this module only
selects rows and reads the results.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

from gptlab.diagnose import MODES
from gptlab.diagnose.rollup import rollup
from gptlab.verdicts import DomainVerdict

PREFERRED_TEMPERATURE = 0.8


@dataclass
class FailureSummary:
    available: bool
    missing: str = ""
    step: int | None = None
    temperature: float | None = None
    modes: list[str] = field(default_factory=list)           # the detector's modes, in its order
    rollup: object = None                                    # Rollup of the diagnosed checkpoint
    by_step: dict = field(default_factory=dict)              # step -> Rollup at the report's temperature
    by_length: dict = field(default_factory=dict)            # max_tokens -> {"n", "rates"} (diagnosed step)
    repetition_by_temperature: dict = field(default_factory=dict)   # T -> (loop rate, samples) (diagnosed step)
    rows: list[dict] = field(default_factory=list)           # sample rows with findings, all checkpoints

    @property
    def verdicts(self) -> dict[str, dict]:
        """domain -> {"verdict": DomainVerdict, "dominant": [...], "why": "..."} at the diagnosed checkpoint."""
        return verdicts(self.rollup) if self.rollup else {}

    def step_verdicts(self, step) -> dict[str, DomainVerdict]:
        return {d: v["verdict"] for d, v in verdicts(self.by_step[step]).items()} if step in self.by_step else {}

    def mode_rate(self, mode: str) -> float | None:
        """Share of the diagnosed checkpoint's samples (report temperature) showing `mode`."""
        domains = self.rollup.domains.values() if self.rollup else []
        n = sum(d["n"] for d in domains)
        return sum(d["counts"].get(mode, 0) for d in domains) / n if n else None

    def domain_rates(self, domain: str) -> dict[str, float]:
        return dict(self.rollup.domains.get(domain, {}).get("rates", {})) if self.rollup else {}

    def probe_stats(self) -> list[dict]:
        """Per probe at the diagnosed checkpoint, over all its lengths: domain, n, rates, {"pass@k": v}."""
        out = [{"probe": p["probe"], "domain": p["domain"], "n": p["n"], "rates": p["rates"],
                "pass_at": {k: v for k, v in p.items() if k.startswith("pass@")}} for p in self.rollup.probes]
        return sorted(out, key=lambda p: (p["domain"], p["probe"]))

    def current_rows(self) -> list[dict]:
        return [r for r in self.rows if r["step"] == self.step and r["temperature"] == self.temperature]

    @cached_property
    def _at_temperature(self) -> dict:
        """(probe, step) -> sample rows at the report's temperature, grouped once for every card."""
        out: dict = {}
        for r in self.rows:
            if r["temperature"] == self.temperature:
                out.setdefault((r["probe"], r["step"]), []).append(r)
        return out

    def probe_history(self, probe: str) -> dict:
        """step -> (one-line summary, first sample at the longest length) for one probe."""
        out = {}
        for step, roll in sorted(self.by_step.items()):
            rows = self._at_temperature.get((probe, step), [])
            stats = next((p for p in roll.probes if p["probe"] == probe), None)
            if not rows or stats is None:
                continue
            longest = max(r["max_tokens"] for r in rows)
            first = min((r for r in rows if r["max_tokens"] == longest), key=lambda r: r["sample_index"])
            top = sorted(stats["rates"].items(), key=lambda kv: -kv[1])[:3]
            summary = ", ".join(f"{m} {v:.0%}" for m, v in top) or "no failures"
            if stats.get("tested"):
                summary += f"; {stats['passed']}/{stats['tested']} passed"
            out[step] = (summary, first)
        return out


def verdicts(roll) -> dict[str, dict]:
    """The rollup's per-domain verdicts as dicts, the verdict word as a DomainVerdict."""
    out = {d: asdict(v["verdict"]) for d, v in roll.domains.items()}
    for v in out.values():
        v["verdict"] = DomainVerdict(v["verdict"])
    return out


def _loads(text, default):
    try:
        return json.loads(text) if text else default
    except (TypeError, json.JSONDecodeError):
        return default


def _row(r: dict, **group) -> dict:
    """A rollup input row; `group` overrides keys to pool over them (max_tokens=None: all lengths)."""
    row = {"probe": r["probe"], "domain": r["domain"], "failures": r["failures"], "passed": r["passed"],
           "max_tokens": r["max_tokens"], "temperature": r["temperature"]}
    row.update(group)
    return row


def summarise_failures(samples: list[dict]) -> FailureSummary:
    if not samples:
        return FailureSummary(False, "no probe samples for these checkpoints: `gptlab eval` samples the probe suite")
    rows = [dict(r, failures=_loads(r["failures_json"], []), evidence=_loads(r["evidence_json"], {}),
                 passed=None if r["passed"] is None else bool(r["passed"]))
            for r in samples if r["failures_json"] is not None]
    if not rows:
        return FailureSummary(False, f"{len(samples)} samples are stored but none has findings from the installed "
                                f"detectors: run `gptlab eval` again (it diagnoses stored samples)")
    temps = {r["temperature"] for r in rows}
    temperature = PREFERRED_TEMPERATURE if PREFERRED_TEMPERATURE in temps else \
        max(temps, key=lambda t: sum(r["temperature"] == t for r in rows))
    at_t = [r for r in rows if r["temperature"] == temperature]
    step = max(r["step"] or 0 for r in at_t)
    by_step = {s: rollup([_row(r, max_tokens=None) for r in at_t if r["step"] == s])
               for s in sorted({r["step"] for r in at_t})}
    now = [r for r in at_t if r["step"] == step]
    # Pooling by a key: the rollup groups by domain, so the key goes where the domain would.
    lengths = rollup([_row(r, domain=str(r["max_tokens"])) for r in now]).domains
    latest = [r for r in rows if r["step"] == step]
    temps_roll = rollup([_row(r, domain=repr(r["temperature"])) for r in latest]).domains
    return FailureSummary(
        True, step=step, temperature=temperature, modes=list(MODES), rollup=by_step[step], by_step=by_step,
        by_length={int(k): {"n": v["n"], "rates": v["rates"]} for k, v in lengths.items()},
        repetition_by_temperature={float(k): (v["rates"].get("repetition_loop", 0.0), v["n"])
                                   for k, v in temps_roll.items()},
        rows=rows)
