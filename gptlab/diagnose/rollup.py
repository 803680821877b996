"""From findings to numbers per probe and per domain: mode rates, pass@k, and a verdict per domain.

    gptlab diagnose samples.jsonl        (the summary under the table)
    python -m pytest tests/test_diagnose_rollup.py

Rates: for each group, the share of its samples that show each mode (a sample may show several).

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): with n samples of a probe
of which c passed its tests, the unbiased estimate of "at least one of k samples passes" is
1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1..n} (1 - k/i) so that large n cannot overflow.
Only samples whose tests ran (or were known to fail: no code, does not parse) count in n; samples whose
tests could not run (no sandbox, --no-exec) are left out. A domain's pass@k is the mean over its probes.

Verdict per domain (docs/failure_modes.md). A sample is *clean* when it shows no failure mode and did
not fail its tests; a probe *works* when >= half of its samples are clean.
* works  — >= WORKS_CLEAN of the domain's samples are clean (and, where tests ran, mean pass@1 >= 0.5);
* fails  — < FAILS_CLEAN are clean and no probe works;
* partly — anything between.
`dominant` lists the modes found in >= DOMINANT_RATE of the domain's samples (most frequent first, at
most 3; else the single most frequent mode), and `why` says it in one sentence with the numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from gptlab.diagnose.modes import MODES
from gptlab.verdicts import DomainVerdict

WORKS_CLEAN = 0.6
FAILS_CLEAN = 0.2
PROBE_WORKS = 0.5
DOMINANT_RATE = 0.2
PASS_KS = (1, 5, 10)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed."""
    if not (0 <= c <= n) or k < 1 or k > n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass
class Stats:
    n: int = 0
    counts: dict = field(default_factory=dict)     # mode -> samples showing it
    clean: int = 0
    tested: int = 0                                # samples with a known test outcome
    passed: int = 0

    def add(self, failures, passed):
        self.n += 1
        for mode in failures:
            self.counts[mode] = self.counts.get(mode, 0) + 1
        if passed is not None:
            self.tested += 1
            self.passed += bool(passed)
        self.clean += not failures and passed is not False

    def rates(self) -> dict:
        return {m: round(self.counts[m] / self.n, 4) for m in MODES if self.counts.get(m)}

    def pass_at(self) -> dict:
        return {f"pass@{k}": round(pass_at_k(self.tested, self.passed, k), 4) for k in PASS_KS if k <= self.tested}

    def to_json(self) -> dict:
        out = {"n": self.n, "clean": self.clean, "clean_rate": round(self.clean / self.n, 4) if self.n else 0.0,
               "rates": self.rates(), "counts": {m: self.counts[m] for m in MODES if self.counts.get(m)}}
        if self.tested:
            out.update(tested=self.tested, passed=self.passed, **self.pass_at())
        return out


@dataclass
class Verdict:
    verdict: DomainVerdict
    dominant: list
    why: str


@dataclass
class Rollup:
    probes: list            # [{"probe", "domain", "max_tokens", "temperature", **Stats.to_json()}]
    domains: dict           # domain -> {**Stats.to_json(), "probes", "probes_working", "verdict": Verdict}

    def to_json(self) -> dict:
        return {"probes": self.probes,
                "domains": {d: {**v, "verdict": asdict(v["verdict"])} for d, v in self.domains.items()}}


def rollup(rows) -> Rollup:
    """rows: dicts {probe, domain, failures, passed (bool|None), max_tokens, temperature}."""
    by_probe: dict = defaultdict(Stats)
    by_domain: dict = defaultdict(Stats)
    for row in rows:
        key = (row["probe"], row["domain"], row.get("max_tokens"), row.get("temperature"))
        by_probe[key].add(row["failures"], row.get("passed"))
        by_domain[row["domain"]].add(row["failures"], row.get("passed"))
    probes = [{"probe": p, "domain": d, "max_tokens": mt, "temperature": t, **s.to_json()}
              for (p, d, mt, t), s in sorted(by_probe.items(), key=lambda kv: tuple(map(str, kv[0])))]
    domains = {}
    for domain, stats in sorted(by_domain.items()):
        mine = [(key, s) for key, s in by_probe.items() if key[1] == domain]
        tested = [s for _, s in mine if s.tested]
        pass_at = {}
        for k in PASS_KS:
            have = [s.pass_at()[f"pass@{k}"] for s in tested if k <= s.tested]
            if have:
                pass_at[f"pass@{k}"] = round(sum(have) / len(have), 4)
        working = sum(s.clean / s.n >= PROBE_WORKS for _, s in mine)
        entry = {**stats.to_json(), **pass_at, "probes": len(mine), "probes_working": working}
        entry["verdict"] = verdict(stats, working, len(mine), pass_at.get("pass@1"))
        domains[domain] = entry
    return Rollup(probes, domains)


def verdict(stats: Stats, working: int, probes: int, pass1: float | None) -> Verdict:
    clean = stats.clean / stats.n if stats.n else 0.0
    rates = stats.rates()
    ranked = sorted(rates.items(), key=lambda kv: -kv[1])
    dominant = [m for m, r in ranked if r >= DOMINANT_RATE][:3] or [m for m, _ in ranked[:1]]
    if clean >= WORKS_CLEAN and (pass1 is None or pass1 >= 0.5):
        word = DomainVerdict.WORKS
    elif clean < FAILS_CLEAN and working == 0:
        word = DomainVerdict.FAILS
    else:
        word = DomainVerdict.PARTLY
    parts = [f"{stats.clean}/{stats.n} samples clean ({clean:.0%})", f"{working}/{probes} probes work"]
    if pass1 is not None:
        parts.append(f"pass@1 {pass1:.2f}")
    if dominant:
        parts.append("most frequent: " + ", ".join(f"{m} {rates[m]:.0%}" for m in dominant))
    return Verdict(word, dominant, "; ".join(parts) + ".")
