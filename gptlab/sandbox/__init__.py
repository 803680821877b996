"""Execute model-written code (Python, or JavaScript when `node` is installed) as if it were hostile.

    from gptlab.sandbox import run, run_tests, Limits
    run("print(1)").stdout                                 # '1\\n'
    run_tests(program, "assert add(1, 2) == 3").status     # 'ok' iff every assert passes

`run`, `run_tests` and `run_many` are executions of a program in a fresh sandbox each (not training
runs, not evaluation jobs). Exercised by
`python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py` (one adversarial test per
property below) and measured by `python bench/sandbox.py`. Nothing here patches the interpreter that
runs the code: in-process guards (monkey-patched `os`) are undone by `importlib.reload(os)` or
`posix.system`, so every protection is enforced by the kernel from outside the program.

Modules, each importing only those after it:
  api.py          run, run_tests, run_many, check_isolation, Result, SandboxRefused (re-exported here)
  process.py      executes one prepared command: output cap, wall clock, nothing left running
  mechanisms.py   which mechanism works here (probe, isolation) and the command for one execution
  limits.py       Limits, their rlimits, and the fixed settings (hidden folders, PATH, sandbox uids)
  launcher.py     PID 1 for "unshare" and reaper for "none"; run as a file, imports nothing from gptlab

Protected (mechanisms "bwrap" and "unshare"; which one is used: `isolation()`):
  * network: a new network namespace with only its own loopback; host sockets on 127.0.0.1, abstract
    unix sockets and the internet are unreachable.
  * files: `/` is visible read-only; /root, /home, $HOME, /run, /var/tmp, /mnt, /media, /srv are empty
    read-only tmpfs (the interpreter's own folders under them are bound back read-only); /tmp is a
    private, empty, writable tmpfs of `Limits.tmp_mb` that vanishes with the execution; /dev is a minimal
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
    used); total CPU by wall_s x cores.
  * the kernel itself: no seccomp filter, so a kernel bug reachable from an unprivileged process is an
    escape. The program may still create user namespaces of its own (harmless for mounts: ours are
    locked) and read anything world-readable outside the hidden folders (e.g. the repository).
  * unix sockets with world-writable permissions in folders that stay visible can be connected to.
  * timing side channels, CPU contention with the host.
  * "none (--unsafe-exec)": rlimits, a scratch folder as cwd, and a launcher that, as a child subreaper,
    kills every descendant at the end; as root, a uid of its own (then also swept) only when the
    interpreter is reachable by other users, else the program runs as root. No network, file or PID
    isolation at all.
"""

from gptlab.sandbox.api import Result, SandboxRefused, check_isolation, run, run_many, run_tests
from gptlab.sandbox.limits import Limits
from gptlab.sandbox.mechanisms import isolation

__all__ = ["NOT_PROTECTED", "PROTECTS", "Limits", "Result", "SandboxRefused", "check_isolation", "isolation",
           "run", "run_many", "run_tests"]

# The contract above, as data for reports.
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

