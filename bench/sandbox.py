"""Throughput of the sandbox: executions per second of `print(1)`, serial and parallel, and the overhead
per execution against a bare `python -c 'print(1)'`.

    python bench/sandbox.py                 # every mechanism that works here, 40 executions each
    python bench/sandbox.py --runs 100 --mechanism bwrap
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from gptlab.sandbox import mechanisms, run, run_many


def _per_second(seconds: float, runs: int) -> float:
    return runs / seconds if seconds > 0 else float("inf")


def bare_ms(runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True, check=True)
    return (time.perf_counter() - start) / runs * 1000


def measure(mechanism: str, runs: int, workers: int) -> tuple[float, float]:
    """(serial executions/s, parallel executions/s); exits if any execution does not print 1."""
    unsafe = mechanism == "none"
    run("print(1)", mechanism=mechanism, unsafe_exec=unsafe)          # warm the probe and page cache
    start = time.perf_counter()
    for _ in range(runs):
        r = run("print(1)", mechanism=mechanism, unsafe_exec=unsafe)
        if r.stdout != "1\n":
            raise SystemExit(f"{mechanism}: unexpected result {r}")
    serial = _per_second(time.perf_counter() - start, runs)
    jobs = [{"code": "print(1)", "mechanism": mechanism, "unsafe_exec": unsafe}] * runs
    start = time.perf_counter()
    results = run_many(jobs, workers=workers)
    parallel = _per_second(time.perf_counter() - start, runs)
    if any(r.stdout != "1\n" for r in results):
        raise SystemExit(f"{mechanism}: a parallel execution failed")
    return serial, parallel


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--mechanism", choices=mechanisms.MECHANISMS, action="append",
                    help="repeatable; default: bwrap and unshare where they work")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    chosen = args.mechanism or [m for m in ("bwrap", "unshare") if not mechanisms.probe(m)]
    bare = bare_ms(args.runs)
    print(f"{os.cpu_count()} cores, {args.runs} runs, {args.workers} workers in parallel")
    print(f"bare `python -c 'print(1)'`: {bare:.1f} ms/run = {1000 / bare:.1f} runs/s")
    print(f"{'mechanism':<10} {'serial/s':>9} {'parallel/s':>11} {'ms/run':>7} {'overhead ms':>12}")
    for mechanism in chosen:
        serial, parallel = measure(mechanism, args.runs, args.workers)
        ms = 1000 / serial
        print(f"{mechanism:<10} {serial:>9.1f} {parallel:>11.1f} {ms:>7.1f} {ms - bare:>12.1f}")


if __name__ == "__main__":
    main()
