"""What every sandbox gets: the `Limits` of one execution, their rlimits, and the fixed settings.

`Limits` is part of the public API (`from gptlab.sandbox import Limits`); a bad value is a `GptlabError`
at construction, never a sandbox that starts with it. `rlimits()` turns one `Limits` into the per-process
resource limits that `mechanisms.py` (through `prlimit`) and `launcher.py` (through setrlimit(2)) apply.
The constants are the settings shared by every mechanism: the view of the file system, the
environment, and the range of uids that root callers hand to sandboxes.

Imports only `gptlab.errors`. Exercised by `python -m pytest tests/test_sandbox.py` (the limit tests,
and `test_bad_limits_and_bad_jobs_are_user_errors`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gptlab.errors import GptlabError

# Folders that hold secrets or live sockets: replaced by empty read-only tmpfs inside the sandbox.
HIDE = ("/root", "/home", "/run", "/var/tmp", "/mnt", "/media", "/srv")
SANDBOX_TMP = "/tmp"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# When root, each running sandbox gets its own uid from this range, so that RLIMIT_NPROC (a per-uid
# count the kernel does not apply to root) counts that sandbox's processes and nothing else.
UID_BASE, UID_SLOTS = 1_900_000_000, 4096
# Address space node reserves without touching; V8 aborts when RLIMIT_AS leaves it less than ~768 MB.
V8_RESERVE_MB = 1024


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed execution (one call of run or run_tests)."""
    wall_s: float = 10.0        # wall clock for the whole execution
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


def rlimits(limits: Limits, language: str) -> dict[str, int | list[int]]:
    """The rlimits for one execution, by resource name. Node gets RLIMIT_DATA as its memory bound and a
    larger address space, because V8 reserves ~700 MB it never touches and dies below that."""
    mem = limits.memory_mb << 20
    cpu = max(1, math.ceil(limits.cpu_s))
    out = {"RLIMIT_CPU": [cpu, cpu + 1],          # SIGXCPU at the limit, SIGKILL one second later
           "RLIMIT_DATA": mem,
           "RLIMIT_AS": mem + (V8_RESERVE_MB << 20 if language != "python" else 0),
           "RLIMIT_FSIZE": limits.file_mb << 20,
           "RLIMIT_NOFILE": limits.open_files,
           "RLIMIT_NPROC": limits.processes,
           "RLIMIT_CORE": 0}
    return out
