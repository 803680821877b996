"""The public API of the sandbox: executions of model-written code, and their `Result`.

Every function here is one or more *executions* of a program in a fresh sandbox (not a training run,
not an evaluation job): `run` executes one program, `run_tests` executes a program followed by its
tests in the same process, `run_many` executes a batch of either in parallel. `gptlab/sandbox/__init__.py`
re-exports them and states what a sandbox protects against; this module picks the mechanism (refusing
to execute without isolation unless the caller passed `unsafe_exec`), has `prepare` build
the command and `process.execute` run it, and classifies the outcome. Bad input never raises and never
hangs: it comes back as a `Result` with status "invalid" or "refused"; only argument errors raise
`GptlabError`.

Exercised by `python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py`, measured by
`python bench/sandbox.py`.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gptlab.errors import GptlabError
from gptlab.sandbox.limits import Limits
from gptlab.sandbox.mechanisms import MECHANISMS, UidSlot, interpreter, isolation, prepare, probe
from gptlab.sandbox.process import execute


class SandboxRefused(GptlabError):
    """No isolation is available here and the caller did not pass --unsafe-exec."""


@dataclass
class Result:
    """How one execution ended. `message` says why in one line when the status is not "ok"."""
    status: str        # ok | error | timeout | killed | refused | invalid
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str     # bwrap | unshare | none (--unsafe-exec) | none
    truncated: bool
    message: str = ""


def check_isolation(unsafe_exec: bool = False) -> str:
    """The mechanism executions will use; raises SandboxRefused when there is none and unsafe_exec is
    off (for callers that want an error up front rather than "refused" results)."""
    mechanism = isolation()
    if mechanism is None and not unsafe_exec:
        raise SandboxRefused(_refusal())
    return mechanism or "none"


def _refusal() -> str:
    why = "; ".join(probe(m) for m in ("bwrap", "unshare"))
    return f"no sandbox on this machine ({why}); pass --unsafe-exec to run model code without isolation"


def _label(mechanism: str) -> str:
    return "none (--unsafe-exec)" if mechanism == "none" else mechanism


def _invalid(message: str) -> Result:
    return Result("invalid", None, "", "", 0.0, "none", False, message)   # nothing ran


def _as_text(code, what: str) -> str | Result:
    if isinstance(code, bytes):
        try:
            code = code.decode("utf-8")
        except UnicodeDecodeError as e:
            return _invalid(f"{what} is not valid UTF-8 (byte {e.start}: {code[e.start:e.start + 1]!r})")
    if not isinstance(code, str):
        return _invalid(f"{what} must be str or bytes, got {type(code).__name__}")
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as e:
        return _invalid(f"{what} has characters UTF-8 cannot encode (position {e.start})")
    if not code.strip():
        return _invalid(f"{what} is empty")
    return code


def run(code: str | bytes, language: str = "python", *, limits: Limits = Limits(),
        unsafe_exec: bool = False, mechanism: str | None = None) -> Result:
    """Execute one program in a fresh sandbox and return how it ended (never raises for bad code).
    `mechanism` forces "bwrap", "unshare" or "none" (tests, benchmarks); "none" needs `unsafe_exec`."""
    if not isinstance(limits, Limits):
        raise GptlabError(f"sandbox limits: expected a Limits, got {type(limits).__name__}")
    text = _as_text(code, "program")
    if isinstance(text, Result):
        return text
    found = interpreter(language)
    if isinstance(found, str):
        return _invalid(found)
    prefix, suffix = found
    if mechanism is None:
        mechanism = isolation()
        if mechanism is None and not unsafe_exec:
            return Result("refused", None, "", "", 0.0, "none", False, _refusal())
        mechanism = mechanism or "none"
    elif mechanism not in MECHANISMS:
        raise GptlabError(f"sandbox mechanism {mechanism!r}: expected one of {', '.join(MECHANISMS)}")
    elif mechanism == "none" and not unsafe_exec:
        return Result("refused", None, "", "", 0.0, "none", False,
                      "mechanism 'none' runs without isolation; it needs --unsafe-exec")
    elif mechanism != "none" and probe(mechanism):
        return Result("refused", None, "", "", 0.0, "none", False, probe(mechanism))
    with UidSlot() as uid:
        launch = prepare(mechanism, text.encode("utf-8"), prefix, suffix, limits, language, uid)
        try:
            done = execute(launch, limits.wall_s, limits.output_bytes)
        finally:
            for step in launch.cleanup:
                step()
    result = Result("ok", done.returncode, done.stdout, done.stderr, done.duration_s, _label(mechanism),
                    done.truncated)
    _classify(result, limits, done.timed_out)
    return result


def _classify(result: Result, limits: Limits, timed_out: bool):
    rc = result.returncode
    signum = -rc if rc is not None and rc < 0 else rc - 128 if rc is not None and 128 < rc < 128 + 65 else 0
    if timed_out:
        result.status, result.message = "timeout", f"wall-clock limit of {limits.wall_s:g} s reached"
    elif rc == 0:
        result.status = "ok"
    elif signum == signal.SIGXCPU:
        result.status, result.message = "timeout", f"CPU limit of {limits.cpu_s:g} s per process reached"
    elif signum:
        result.status = "killed"
        name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
        why = {signal.SIGXFSZ: f" (file-size limit of {limits.file_mb} MB)",
               signal.SIGKILL: " (the CPU hard limit, or out of memory)"}
        result.message = f"killed by {name}" + why.get(signum, "")
    else:
        result.status = "error"
    if result.status in ("error", "killed") and _out_of_memory(result.stderr):
        result.message = f"memory limit of {limits.memory_mb} MB per process reached"
    if rc in (1, 125) and result.stderr.startswith(("bwrap: ", "sandbox: ", "unshare: ")):
        result.status, result.message = "killed", "sandbox setup failed: " + result.stderr.splitlines()[0]


def _out_of_memory(stderr: str) -> bool:
    tail = stderr[-2000:]
    return any(s in tail for s in ("MemoryError", "heap out of memory", "allocation failed",
                                   "Fatal process OOM"))


def run_tests(program: str | bytes, tests: str | bytes, language: str = "python", *,
              entry_point: str | None = None, limits: Limits = Limits(), unsafe_exec: bool = False,
              mechanism: str | None = None) -> Result:
    """Execute a program, then its tests, in one process in a fresh sandbox: status "ok" iff it exits 0,
    i.e. every assert passed. With `entry_point`, the tests define `check(candidate)` (HumanEval style)
    and get `check(<entry>)`."""
    program_text = _as_text(program, "program")
    if isinstance(program_text, Result):
        return program_text
    tests_text = _as_text(tests, "tests")
    if isinstance(tests_text, Result):
        return tests_text
    if entry_point is not None and not entry_point.isidentifier():
        return _invalid(f"entry_point {entry_point!r} is not an identifier")
    end = ";" if language in ("javascript", "js", "node") else ""
    code = f"{program_text}\n\n{tests_text}\n"
    if entry_point is not None:
        code += f"\ncheck({entry_point}){end}\n"
    return run(code, language, limits=limits, unsafe_exec=unsafe_exec, mechanism=mechanism)


_RUN_KEYS = {"code", "language", "limits", "unsafe_exec", "mechanism"}
_TEST_KEYS = {"program", "tests", "language", "entry_point", "limits", "unsafe_exec", "mechanism"}


def run_many(jobs: list[dict], *, workers: int | None = None) -> list[Result]:
    """Execute a batch: each job is the keyword arguments of run_tests (has "tests") or run, each in its
    own sandbox, at most os.cpu_count() at a time; results come back in the order of `jobs`."""
    cores = os.cpu_count() or 1
    if workers is not None and workers < 1:
        raise GptlabError(f"run_many workers: must be >= 1, got {workers}")
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise GptlabError(f"run_many job {i}: expected a dict of keyword arguments, got {job!r:.80}")
        allowed = _TEST_KEYS if "tests" in job else _RUN_KEYS
        required = {"program", "tests"} if "tests" in job else {"code"}
        if set(job) - allowed or required - set(job):
            raise GptlabError(f"run_many job {i}: expected keys {sorted(required)} (+ optional "
                              f"{sorted(allowed - required)}), got {sorted(job)}")
    if not jobs:
        return []

    def one(job: dict) -> Result:
        return run_tests(**job) if "tests" in job else run(**job)

    with ThreadPoolExecutor(max_workers=min(workers or cores, cores, len(jobs))) as pool:
        return list(pool.map(one, jobs))
