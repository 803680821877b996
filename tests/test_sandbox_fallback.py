"""The sandbox when isolation is missing: refusal without --unsafe-exec, and what "none" still does.

The "unshare" fallback runs every adversarial test of tests/test_sandbox.py; this file covers a machine
with neither bubblewrap nor unshare, made real by running with a PATH that has neither. Run:
    python -m pytest tests/test_sandbox_fallback.py -q
"""

import os
import uuid
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.sandbox import Limits, SandboxRefused, check_isolation, isolation, mechanisms, run, run_tests


@pytest.fixture
def no_isolation_tools(monkeypatch, tmp_path):
    """This machine as one without bwrap, unshare, prlimit or setpriv on PATH (the probes re-run)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    mechanisms.probe.cache_clear()
    yield
    mechanisms.probe.cache_clear()


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            pass
    return found


def test_without_isolation_running_is_refused(no_isolation_tools):
    assert isolation() is None
    r = run("print(1)")
    assert (r.status, r.isolation, r.returncode, r.stdout) == ("refused", "none", None, "")
    assert "--unsafe-exec" in r.message and "bwrap" in r.message
    assert run_tests("x = 1", "assert x == 1").status == "refused"
    with pytest.raises(SandboxRefused, match="--unsafe-exec"):
        check_isolation()
    assert check_isolation(unsafe_exec=True) == "none"


def test_unsafe_exec_runs_and_says_so(no_isolation_tools):
    r = run("import os\nprint(os.getcwd() != '/')", unsafe_exec=True)
    assert (r.status, r.stdout, r.isolation) == ("ok", "True\n", "none (--unsafe-exec)"), r.stderr


def test_mechanism_none_needs_unsafe_exec_even_where_isolation_exists():
    r = run("print(1)", mechanism="none")
    assert r.status == "refused" and "--unsafe-exec" in r.message


def test_unsafe_exec_still_applies_the_limits():
    r = run("while True:\n    pass\n", limits=Limits(cpu_s=1, wall_s=10), mechanism="none", unsafe_exec=True)
    assert r.status == "timeout" and "CPU" in r.message
    r = run("x = bytearray(1 << 30)\n", limits=Limits(memory_mb=256), mechanism="none", unsafe_exec=True)
    assert r.status == "error" and "memory limit" in r.message
    r = run("import sys\nsys.stdout.write('y' * 100000)\n", limits=Limits(output_bytes=10),
            mechanism="none", unsafe_exec=True)
    assert r.truncated and r.stdout == "y" * 10


def test_unsafe_exec_kills_what_the_program_leaves_behind():
    token = uuid.uuid4().hex
    code = (f"import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{token}'],\n"
            f"                 start_new_session=True)\nprint('detached')\n")
    r = run(code, mechanism="none", unsafe_exec=True)
    assert r.status == "ok" and r.duration_s < 5
    assert _processes_with(token) == []


def test_unsafe_exec_kills_the_tree_at_the_wall_clock():
    token = uuid.uuid4().hex
    code = (f"import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{token}'],\n"
            f"                 start_new_session=True)\ntime.sleep(60)\n")
    r = run(code, limits=Limits(wall_s=1), mechanism="none", unsafe_exec=True)
    assert r.status == "timeout" and r.duration_s < 5
    assert _processes_with(token) == []


def test_an_unknown_mechanism_is_a_user_error():
    with pytest.raises(GptlabError, match="mechanism"):
        run("print(1)", mechanism="docker")
