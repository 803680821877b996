"""Run model-written code (Python, or JavaScript when `node` is installed) as if it were hostile.

    from gptlab.evaluate.sandbox import run, run_tests, Limits
    run("print(1)").stdout                                 # '1\\n'
    run_tests(program, "assert add(1, 2) == 3").status     # 'ok' iff every assert passes

Exercised by `python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py` (one adversarial test
per property below) and measured by `python bench/sandbox.py`. Nothing here patches the interpreter that
runs the code: in-process guards (monkey-patched `os`) are undone by `importlib.reload(os)` or
`posix.system`, so every protection is enforced by the kernel from outside the program.

Protected (mechanisms "bwrap" and "unshare"; which one is used: `isolation()`):
  * network: a new network namespace with only its own loopback; host sockets on 127.0.0.1, abstract
    unix sockets and the internet are unreachable.
  * files: `/` is visible read-only; /root, /home, $HOME, /run, /var/tmp, /mnt, /media, /srv are empty
    read-only tmpfs (the interpreter's own folders under them are bound back read-only); /tmp is a
    private, empty, writable tmpfs of `Limits.tmp_mb` that vanishes with the run; /dev is a minimal
    fresh one (bwrap) or the host's made read-only with /dev/shm hidden (unshare).
  * environment: cleared; the program gets PATH, HOME=/tmp, TMPDIR, a UTF-8 locale, one-thread BLAS.
  * identity: as root, the program runs as a uid of its own (1_900_000_000 + slot, one per concurrent
    sandbox), no groups, no capabilities, no_new_privs: it reads only world-readable files, cannot
    signal or ptrace host processes, and setuid binaries do not raise it. Not root: the caller's uid
    inside a user namespace, capabilities dropped.
  * processes: a new PID namespace; the program sees only its own processes, and when it exits (or is
    killed at the wall-clock limit) the kernel kills everything left in the namespace, daemons included.
  * limits: wall clock (SIGKILL to the whole namespace, so ignoring SIGTERM/SIGALRM does not help),
    CPU seconds per process (SIGXCPU then SIGKILL), memory per process (RLIMIT_AS for Python;
    RLIMIT_DATA plus RLIMIT_AS of memory + 1 GiB for node, whose V8 reserves ~700 MB of address space
    up front), file size, open files, processes (RLIMIT_NPROC for the sandbox uid: threads count too,
    and when not root the sandbox's own PID 1 counts as well), no core dumps, stdout/stderr each capped
    at `output_bytes` (the rest is read and dropped). The result comes back only once the kernel has
    emptied the PID namespace.
Not protected:
  * total memory of a sandbox is bounded only by processes x memory_mb plus tmp_mb (no memory cgroup is
    used: the one on this machine belongs to the host); total CPU by wall_s x cores.
  * the kernel itself: no seccomp filter, so a kernel bug reachable from an unprivileged process is an
    escape. The program may still create user namespaces of its own (harmless for mounts: ours are
    locked) and read anything world-readable outside the hidden folders (e.g. the repository).
  * unix sockets with world-writable permissions in folders that stay visible can be connected to.
  * timing side channels, CPU contention with the host.
  * "none (--unsafe-exec)": rlimits, a scratch folder as cwd, and a launcher that, as a child subreaper,
    kills every descendant at the end; as root, a uid of its own (then also swept) only when the
    interpreter is reachable by other users, else the program runs as root. No network, file or PID
    isolation at all.

Findings on the machine this was built on (root in a container, kernel 6.18, bubblewrap 0.8.0,
util-linux 2.38, no seccomp on us, all capabilities): bwrap works privileged and with
--unshare-user/--unshare-all, --die-with-parent, --new-session, --ro-bind / /, --tmpfs with
--size/--perms, --dev, --proc, --info-fd. But with --unshare-user as root, bwrap maps the sandbox uid to
real uid 0: the program then owns root's files (it read /etc/shadow) and RLIMIT_NPROC does nothing (a
fork loop under `prlimit --nproc=10` made 100 children: the kernel exempts kuid 0). Hence bwrap runs
privileged, without a user namespace, and `setpriv` drops to a per-sandbox uid, for which RLIMIT_NPROC
counts that sandbox alone. bwrap's outer process may exit before its PID 1 has emptied the namespace,
so `sandbox_process` waits on PID 1 itself (pidfd, PID from --info-fd). V8 aborts under RLIMIT_AS below
~768 MB. `unshare` with mount/net/pid/ipc/uts works as root and, unprivileged, with --map-root-user;
mount_setattr(2) makes the whole view read-only in one call; its loopback starts down. As an
unprivileged user (uid 1000 here) both mechanisms work through user namespaces. A cgroup v1 pids
hierarchy was writable but is not used, so hosts without one behave the same.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gptlab.errors import GptlabError
from gptlab.evaluate import sandbox_isolation as iso
from gptlab.evaluate.sandbox_process import execute

PROTECTS = {
    "network": "own network namespace: no host loopback, no internet",
    "filesystem": "read-only view of /, home and runtime folders hidden, private size-capped /tmp",
    "identity": "dedicated unprivileged uid (root callers) or user namespace; no capabilities",
    "processes": "own PID namespace; everything left is killed when the program ends",
    "limits": "wall clock, CPU, memory, file size, open files, processes, output size",
}
NOT_PROTECTED = {
    "total memory": "bounded per process (x processes), no memory cgroup",
    "kernel": "no seccomp filter; kernel bugs are escapes",
    "visible world-readable files": "anything world-readable outside the hidden folders can be read",
    "unsafe-exec": "mechanism 'none' has no network, file or PID isolation",
}


class SandboxRefused(GptlabError):
    """No isolation is available here and the caller did not pass --unsafe-exec."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0        # wall clock for the whole run
    cpu_s: float = 5.0          # CPU seconds per process (rounded up to whole seconds)
    memory_mb: int = 512        # per process
    file_mb: int = 16           # largest file the program may write
    open_files: int = 64
    processes: int = 16         # processes and threads of the sandbox uid
    output_bytes: int = 65536   # kept of stdout, and of stderr
    tmp_mb: int = 64            # size of the private /tmp

    def __post_init__(self):
        for name, value in vars(self).items():
            kinds = (int, float) if name in ("wall_s", "cpu_s") else (int,)
            if not isinstance(value, kinds) or isinstance(value, bool) or value <= 0:
                what = "number" if float in kinds else "integer"
                raise GptlabError(f"sandbox Limits.{name}: must be a positive {what}, got {value!r}")


@dataclass
class Result:
    status: str        # ok | error | timeout | killed | refused | invalid
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    isolation: str     # bwrap | unshare | none (--unsafe-exec) | none
    truncated: bool
    message: str = ""


def isolation() -> str | None:
    """Best mechanism available here ("bwrap" or "unshare"), or None."""
    return iso.isolation()


def check_isolation(unsafe_exec: bool = False) -> str:
    """The mechanism runs will use; raises SandboxRefused when there is none and unsafe_exec is off."""
    mechanism = iso.isolation()
    if mechanism is None and not unsafe_exec:
        raise SandboxRefused(_refusal())
    return mechanism or "none"


def _refusal() -> str:
    why = "; ".join(iso.probe(m) for m in ("bwrap", "unshare"))
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
    """Run one program in a fresh sandbox. `mechanism` forces "bwrap", "unshare" or "none" (tests)."""
    if not isinstance(limits, Limits):
        raise GptlabError(f"sandbox limits: expected a Limits, got {type(limits).__name__}")
    text = _as_text(code, "program")
    if isinstance(text, Result):
        return text
    found = iso.interpreter(language)
    if isinstance(found, str):
        return _invalid(found)
    prefix, suffix = found
    if mechanism is None:
        mechanism = iso.isolation()
        if mechanism is None and not unsafe_exec:
            return Result("refused", None, "", "", 0.0, "none", False, _refusal())
        mechanism = mechanism or "none"
    elif mechanism not in iso.MECHANISMS:
        raise GptlabError(f"sandbox mechanism {mechanism!r}: expected one of {', '.join(iso.MECHANISMS)}")
    elif mechanism == "none" and not unsafe_exec:
        return Result("refused", None, "", "", 0.0, "none", False,
                      "mechanism 'none' runs without isolation; it needs --unsafe-exec")
    elif mechanism != "none" and iso.probe(mechanism):
        return Result("refused", None, "", "", 0.0, "none", False, iso.probe(mechanism))
    with iso.UidSlot() as uid:
        launch = iso.prepare(mechanism, text.encode("utf-8"), prefix, suffix, limits, language, uid)
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
    """Program, then tests, in one process: status "ok" iff it exits 0, i.e. every assert passed.
    With `entry_point`, the tests define `check(candidate)` (HumanEval style) and get `check(<entry>)`."""
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
    """Each job is the keyword arguments of run_tests (has "tests") or run; runs them in parallel on at
    most os.cpu_count() sandboxes at a time; results come back in the order of `jobs`."""
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
