"""test_failure: the program parses but fails its tests, raises, or times out — run only in the sandbox.

    gptlab diagnose samples.jsonl
    python -m pytest tests/test_diagnose_code.py -k "sandbox or executed or humaneval"

`sandbox_job` makes the program (program.py) and the probe's `tests` into a job for `gptlab.sandbox.run_tests`
(the pipeline runs many with `gptlab.sandbox.run_many`), which runs them in one fresh isolated process with
wall-clock, CPU and memory limits (LIMITS: 2 CPU-seconds, 5 s wall). Tests written HumanEval-style
(`def check(candidate): ...`) are called with the entry point; plain asserts run as they are.
`judge_test_outcome` turns the sandbox's result into the finding.

What counts: status "ok" passes; "error" (an assert failed, or the program raised), "timeout" and
"killed" (a limit) fail, with the status, the sandbox's message and the last lines of stderr as evidence.
"refused" (no isolation on this machine and no --unsafe-exec) and "invalid" (a language the sandbox cannot
run: only Python, and JavaScript with node) mean *not executed*: recorded in metrics as
`tests: "not run: ..."`, never as a pass or a failure, and pass@k leaves the sample out.
"""

from __future__ import annotations

from gptlab.diagnose.registry import detector
from gptlab.diagnose.text import clip
from gptlab.diagnose.types import Finding, Sample
from gptlab.sandbox import Limits

RUNNABLE = ("python", "javascript")
# A probe's tests exercise one small function: milliseconds when it works. Infinite loops are a common
# 124M failure, so the CPU limit, not the sandbox's general default, bounds what each one costs.
LIMITS = Limits(wall_s=5.0, cpu_s=2.0)


def sandbox_job(sample: Sample, program: str, *, unsafe_exec: bool) -> dict | str:
    """The keyword arguments of sandbox.run_tests for this sample, or why it is not run."""
    if sample.language not in RUNNABLE:
        return f"not run: the sandbox runs {' and '.join(RUNNABLE)} tests, not {sample.language}"
    entry = sample.entry_point if sample.entry_point and "def check(" in sample.tests else None
    return {"program": program, "tests": sample.tests, "language": sample.language, "entry_point": entry,
            "unsafe_exec": unsafe_exec, "limits": LIMITS}


@detector("test_failure", scope="code")
def judge_test_outcome(result) -> tuple[Finding | None, bool | None, str]:
    """From the sandbox's Result: (finding, or None when not executed; passed; a one-line note for metrics)."""
    status = result.status
    if status == "ok":
        return Finding(False), True, f"passed ({result.isolation})"
    if status in ("refused", "invalid"):
        return None, None, f"not run: {status}: {clip(result.message, 160)}"
    lines = [ln for ln in (result.stderr or "").strip().splitlines() if ln.strip()]
    evidence = {"status": status, "isolation": result.isolation}
    if result.message:
        evidence["message"] = clip(result.message, 160)
    if lines:
        evidence["error"] = clip(lines[-1], 200)
        evidence["stderr_tail"] = [clip(ln, 160) for ln in lines[-4:]]
    return Finding(True, {}, evidence), False, f"failed: {status}"
