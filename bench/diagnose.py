"""How long diagnosing 10,000 samples takes, phase by phase (target: under a minute on 2 cores).

    python bench/diagnose.py [--n 10000] [--workers 2] [--tests 200]

The samples are the hand-labelled set (tests/data/diagnose_labelled.jsonl: every domain and language, in
its mix of ~50% code), each completion cut at a random 60-100% of its length so that no two are alike
(nothing is answered from a cache). The main run uses --no-exec semantics (no sandboxed tests), as the
target says; then --tests samples with tests are run in the sandbox to measure that part separately.
Wall time and this process's CPU time (children included) are printed: on a machine shared with other
jobs, CPU seconds / cores is the better estimate of the time on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from pathlib import Path

from gptlab.diagnose import Sample, diagnose_many, minilm
from gptlab.diagnose.io import sample_from_dict

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "diagnose_labelled.jsonl"


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def make_samples(n: int, seed: int) -> list[Sample]:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        row = dict(rnd.choice(rows))
        text = row["completion"]
        row["completion"] = text[:max(1, int(len(text) * rnd.uniform(0.6, 1.0)))]
        row["id"] = f"{row['id']}#{i}"
        out.append(sample_from_dict(row))
    return out


def timed(label: str, samples, **kw):
    phases = {}

    def progress(done, total, phase):
        phases.setdefault(phase, [time.perf_counter(), None])[1] = time.perf_counter()

    wall, cpu = time.perf_counter(), cpu_seconds()
    out = diagnose_many(samples, progress=progress, **kw)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"{label}: {len(samples):,} samples in {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({len(samples) / wall:,.0f} samples/s)")
    for phase, (start, end) in phases.items():
        print(f"    {phase:10s} last progress at {end - start:6.1f} s after its first")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tests", type=int, default=200, help="samples with tests to run in the sandbox (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.1f}; workers={args.workers}")
    samples = make_samples(args.n, args.seed)
    t = time.perf_counter()
    minilm.encoder()
    print(f"sentence encoder loaded in {time.perf_counter() - t:.1f} s (once per process; included below: no)")
    prose = sum(s.language is None for s in samples)
    print(f"mix: {prose:,} prose, {len(samples) - prose:,} code")
    found = timed("detectors, --no-exec", samples, execute=False, workers=args.workers)
    counts = {}
    for d in found:
        for m in d.failures:
            counts[m] = counts.get(m, 0) + 1
    print("    failures found:", ", ".join(f"{m} {c}" for m, c in sorted(counts.items(), key=lambda x: -x[1])))
    if args.tests:
        with_tests = [s for s in samples if s.tests][:args.tests]
        timed(f"with sandboxed tests ({len(with_tests)} samples that have tests)", with_tests,
              execute=True, workers=args.workers)


if __name__ == "__main__":
    main()
