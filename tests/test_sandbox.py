"""One adversarial test per sandbox property: each attack is contained and the host is unchanged.

Every attack runs under each isolation mechanism that works here ("bwrap", and the "unshare" fallback);
a mechanism that does not work on this machine is skipped with the reason. The last tests check the
package layout (each module imports on its own; the launcher imports nothing from gptlab). Run:
    python -m pytest tests/test_sandbox.py -q
"""

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from gptlab.errors import GptlabError
from gptlab.sandbox import Limits, isolation, mechanisms, run, run_many, run_tests


@pytest.fixture(params=["bwrap", "unshare"])
def mechanism(request):
    why = mechanisms.probe(request.param)
    if why:
        pytest.skip(f"isolation not available here: {why}")
    return request.param


def _code(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def _processes_with(token: str) -> list[int]:
    """Host PIDs whose command line contains token (the sandboxes' PID namespaces are visible here)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(entry))
    return found


def test_best_mechanism_is_one_that_works():
    best = isolation()
    assert best is None or mechanisms.probe(best) == ""


def test_runs_python_and_reports_its_isolation(mechanism):
    r = run("import sys\nprint(sum(range(10)))\nprint('oops', file=sys.stderr)", mechanism=mechanism)
    assert (r.status, r.returncode, r.stdout, r.stderr) == ("ok", 0, "45\n", "oops\n")
    assert r.isolation == mechanism and not r.truncated


def test_infinite_loop_is_stopped_by_the_cpu_limit(mechanism):
    r = run("while True:\n    pass\n", limits=Limits(wall_s=10, cpu_s=1), mechanism=mechanism)
    assert r.status == "timeout" and "CPU" in r.message     # the CPU limit, well before the wall clock


def test_ignoring_sigterm_sigalrm_and_sigxcpu_does_not_outlive_the_wall_clock(mechanism):
    token = uuid.uuid4().hex
    code = _code(f"""
        import os, signal, sys, time
        if len(sys.argv) == 1:   # re-exec so that the host can find this process by its command line
            os.execv(sys.executable, [sys.executable, sys.argv[0], "{token}"])
        for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(1)
        print("ignoring", flush=True)
        while True:
            time.sleep(0.01)
    """)
    r = run(code, limits=Limits(wall_s=1.5, cpu_s=5), mechanism=mechanism)
    assert r.status == "timeout" and "wall-clock" in r.message
    assert r.stdout == "ignoring\n" and r.duration_s < 4
    assert _processes_with(token) == []


def test_fork_bomb_is_contained_and_leaves_nothing(mechanism):
    token = uuid.uuid4().hex
    code = _code(f"""
        import os, sys
        if len(sys.argv) == 1:
            os.execv(sys.executable, [sys.executable, sys.argv[0], "{token}"])
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    r = run(code, limits=Limits(wall_s=2, cpu_s=5, processes=8), mechanism=mechanism)
    assert r.status == "timeout"
    assert r.duration_s < 5
    assert _processes_with(token) == []


def test_spawning_subprocesses_stops_at_the_process_limit(mechanism):
    code = _code("""
        import subprocess
        children = []
        for _ in range(40):
            try:
                children.append(subprocess.Popen(["sleep", "30"]))
            except OSError:
                break
        print(len(children))
    """)
    r = run(code, limits=Limits(wall_s=5, processes=6), mechanism=mechanism)
    assert r.status == "ok", r.stderr
    assert 1 <= int(r.stdout) <= 5        # the program itself is one of the 6


def test_memory_bomb_fails_at_the_memory_limit(mechanism):
    code = _code("""
        chunks = []
        while True:
            chunks.append(bytearray(32 << 20))   # zero-filled, so every page is really allocated
            print(len(chunks), flush=True)
    """)
    r = run(code, limits=Limits(wall_s=10, memory_mb=256), mechanism=mechanism)
    assert r.status in ("error", "killed") and "memory limit" in r.message
    reached = int(r.stdout.split()[-1])
    assert 1 <= reached and reached * 32 < 256


def test_a_gigabyte_of_output_is_capped(mechanism):
    code = "import sys\nblock = b'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.buffer.write(block)\n"
    r = run(code, limits=Limits(wall_s=20, output_bytes=1000), mechanism=mechanism)
    assert r.status == "ok" and r.truncated
    assert r.stdout == "x" * 1000


def test_writes_outside_the_private_tmp_do_not_reach_the_host(mechanism, tmp_path):
    targets = [tmp_path / "escaped", Path.home() / f".gptlab-escaped-{uuid.uuid4().hex}",
               Path("/var/tmp") / f"gptlab-escaped-{uuid.uuid4().hex}",
               Path(__file__).resolve().parent / f"escaped-{uuid.uuid4().hex}",
               Path("/dev/shm") / f"gptlab-escaped-{uuid.uuid4().hex}",
               Path("/etc") / f"gptlab-escaped-{uuid.uuid4().hex}"]
    code = _code(f"""
        import os
        written = []
        for path in {[str(t) for t in targets]!r}:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("escaped")
                written.append(path)
            except OSError:
                pass
        with open("/tmp/private.txt", "w") as f:   # the one writable place
            f.write("fine")
        print(open("/tmp/private.txt").read(), len(written))
    """)
    r = run(code, mechanism=mechanism)
    assert r.status == "ok", r.stderr
    assert r.stdout.startswith("fine")
    for target in targets:
        assert not target.exists(), target
    assert not Path("/tmp/private.txt").exists()


def test_a_secret_in_the_home_directory_cannot_be_read(mechanism):
    token = uuid.uuid4().hex
    secret = Path.home() / f".gptlab-sandbox-secret-{token[:8]}"
    secret.write_text(token)
    secret.chmod(0o600)
    try:
        code = _code(f"""
            import os, stat, sys
            seen = []
            try:
                seen.append(open({str(secret)!r}).read())
            except OSError as e:
                print(type(e).__name__)
            for top in ("/root", "/home", {str(Path.home())!r}):
                for folder, _, files in os.walk(top):
                    if folder.startswith(sys.base_prefix):   # the interpreter, bound back in on purpose
                        continue
                    for name in files:
                        path = os.path.join(folder, name)
                        seen.append(path)
                        try:
                            st = os.lstat(path)
                            if stat.S_ISREG(st.st_mode) and st.st_size < 65536:
                                seen.append(open(path, errors="replace").read())
                        except OSError:
                            pass
            print("\\n".join(seen))
        """)
        r = run(code, mechanism=mechanism)
        assert r.status == "ok", r.stderr
        assert r.stdout.startswith("FileNotFoundError")
        assert token not in r.stdout
    finally:
        secret.unlink()


def test_the_callers_environment_does_not_leak(mechanism, monkeypatch):
    token = uuid.uuid4().hex
    monkeypatch.setenv("GPTLAB_TEST_API_KEY", token)
    r = run("import os\nprint(sorted(os.environ.items()))", mechanism=mechanism)
    assert r.status == "ok" and "HOME" in r.stdout
    assert token not in r.stdout


def test_files_only_root_may_read_stay_unreadable(mechanism):
    if os.geteuid() != 0 or not Path("/etc/shadow").exists():
        pytest.skip("needs root and /etc/shadow to be meaningful")
    r = run("open('/etc/shadow').read()\n", mechanism=mechanism)
    assert r.status == "error" and "PermissionError" in r.stderr


def test_a_socket_on_host_localhost_is_unreachable(mechanism):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = _code(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
                print("connected")
            except OSError as e:
                print(type(e).__name__)
        """)
        r = run(code, mechanism=mechanism)
        assert r.status == "ok" and r.stdout.strip() in ("ConnectionRefusedError", "OSError")
        with pytest.raises(BlockingIOError):
            server.accept()


def test_undoing_in_process_guards_changes_nothing(mechanism, tmp_path):
    marker = Path(__file__).resolve().parent / f"reloaded-{uuid.uuid4().hex}"
    code = _code(f"""
        import importlib, os, posix
        os = importlib.reload(os)
        print(posix.system("touch {marker} 2>/dev/null"), os.system("ls /root/.bashrc 2>/dev/null"))
    """)
    r = run(code, mechanism=mechanism)
    assert r.status == "ok", r.stderr
    assert all(int(x) != 0 for x in r.stdout.split())     # both commands failed in the sandbox
    assert not marker.exists()


def test_a_background_process_is_killed_when_the_program_ends(mechanism):
    token = uuid.uuid4().hex
    code = _code(f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "{token}"],
                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("detached")
    """)
    r = run(code, limits=Limits(wall_s=10), mechanism=mechanism)
    assert r.status == "ok" and r.stdout == "detached\n"
    assert r.duration_s < 5           # it did not wait for the sleeper
    assert _processes_with(token) == []


def test_file_size_open_files_and_tmp_size_limits(mechanism):
    r = run("open('/tmp/big', 'wb').write(b'x' * (2 << 20))\n", limits=Limits(file_mb=1),
            mechanism=mechanism)
    assert r.status == "error" and "File too large" in r.stderr
    r = run("fs = [open('/dev/null') for _ in range(200)]\n", limits=Limits(open_files=32),
            mechanism=mechanism)
    assert r.status == "error" and "Too many open files" in r.stderr
    code = "for i in range(8):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20))\n"
    r = run(code, limits=Limits(tmp_mb=4, file_mb=2), mechanism=mechanism)
    assert r.status == "error" and "No space left" in r.stderr


def test_tests_pass_fail_and_humaneval_entry_points(mechanism):
    program = "def add(a, b):\n    return a + b\n"
    assert run_tests(program, "assert add(1, 2) == 3", mechanism=mechanism).status == "ok"
    failed = run_tests(program, "assert add(1, 2) == 4, 'wrong sum'", mechanism=mechanism)
    assert failed.status == "error" and "wrong sum" in failed.stderr
    check = "def check(candidate):\n    assert candidate(2, 2) == 4\n"
    assert run_tests(program, check, entry_point="add", mechanism=mechanism).status == "ok"
    wrong = run_tests(program, check.replace("4", "5"), entry_point="add", mechanism=mechanism)
    assert wrong.status == "error"


def test_javascript_runs_when_node_is_installed(mechanism):
    if isinstance(mechanisms.interpreter("javascript"), str):
        pytest.skip("node is not installed")
    r = run("console.log([1, 2, 3].map(x => x * 2).join(','))", "javascript", mechanism=mechanism)
    assert (r.status, r.stdout) == ("ok", "2,4,6\n"), r.stderr
    tests = "const assert = require('assert');\nassert.strictEqual(add(2, 3), 6);"
    r = run_tests("function add(a, b) { return a + b; }", tests, "javascript", mechanism=mechanism)
    assert r.status == "error" and "AssertionError" in r.stderr
    r = run("while (true) {}", "javascript", limits=Limits(wall_s=10, cpu_s=1), mechanism=mechanism)
    assert r.status == "timeout"


def test_run_many_keeps_order_and_mixes_runs_and_tests(mechanism):
    jobs = [{"code": f"print({i})", "mechanism": mechanism} for i in range(5)]
    jobs.insert(2, {"program": "x = 1", "tests": "assert x == 2", "mechanism": mechanism})
    results = run_many(jobs, workers=2)
    assert [r.stdout for r in results] == ["0\n", "1\n", "", "2\n", "3\n", "4\n"]
    assert [r.status for r in results] == ["ok", "ok", "error", "ok", "ok", "ok"]


def test_exit_codes_and_syntax_errors(mechanism):
    r = run("import sys\nsys.exit(3)\n", mechanism=mechanism)
    assert (r.status, r.returncode) == ("error", 3)
    r = run("def broken(:\n", mechanism=mechanism)
    assert r.status == "error" and "SyntaxError" in r.stderr


# ---------------------------------------------------------------- bad input: a clear result, never a hang


def test_code_that_is_not_utf8_is_invalid():
    r = run(b"print('caf\xe9')")
    assert r.status == "invalid" and "UTF-8" in r.message and r.returncode is None


def test_empty_program_and_empty_tests_are_invalid():
    assert run("   \n").status == "invalid"
    r = run_tests("def f():\n    return 1\n", " \n\t")
    assert r.status == "invalid" and "tests is empty" in r.message
    assert run_tests("x = 1", "assert x", entry_point="not an identifier").status == "invalid"


def test_a_missing_interpreter_is_invalid(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # an empty PATH: no node anywhere
    r = run("console.log(1)", "javascript")
    assert r.status == "invalid" and "node" in r.message
    assert run("print 1", "cobol").status == "invalid"


def test_bad_limits_and_bad_jobs_are_user_errors():
    with pytest.raises(GptlabError, match="wall_s"):
        Limits(wall_s=0)
    with pytest.raises(GptlabError, match="job 1"):
        run_many([{"code": "print(1)"}, {"program": "x = 1"}])
    with pytest.raises(GptlabError, match="workers"):
        run_many([{"code": "print(1)"}], workers=0)
    assert run_many([]) == []


# ---------------------------------------------------------------- layout: each module imports on its own


@pytest.mark.parametrize("module", ["gptlab.sandbox", "gptlab.sandbox.api", "gptlab.sandbox.process",
                                    "gptlab.sandbox.mechanisms", "gptlab.sandbox.limits"])
def test_each_module_imports_in_a_fresh_interpreter(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_launcher_runs_standalone_and_imports_nothing_from_gptlab():
    path = Path(mechanisms.LAUNCHER)
    assert path.name == "launcher.py" and path.is_file()
    code = (f"import importlib.util as u, sys\ns = u.spec_from_file_location('launcher', {str(path)!r})\n"
            "s.loader.exec_module(u.module_from_spec(s))\n"
            "print(sorted(m for m in sys.modules if 'gptlab' in m))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr
