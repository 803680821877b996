"""Which isolation mechanism works on this machine, and the prepared command for one execution in it.

`prepare()` turns one program plus its `Limits` into a `Launch` (argv, environment, file descriptors,
cleanup) that `process.execute` runs; `probe()` and `isolation()` say which mechanisms work here, by
running /bin/true inside each (cached per process). Three mechanisms, best first:

* "bwrap":   bubblewrap builds the view (read-only `/`, tmpfs over home/runtime folders, private /tmp,
             fresh /dev and /proc, own net/pid/ipc/uts namespaces); `prlimit` sets the rlimits and, when
             we are root, `setpriv` drops to a dedicated uid.
* "unshare": util-linux `unshare` makes the namespaces; `launcher.py`, PID 1 inside, builds the same
             view with mount(2)/mount_setattr(2) and drops privileges itself.
* "none":    only rlimits, a scratch folder, the launcher as reaper, a dedicated uid when root and the
             interpreter allows it; used only with `--unsafe-exec`.

What each mechanism protects, and what it does not, is the contract in `gptlab/sandbox/__init__.py`.
Security-relevant choices made here: the environment is built from nothing (`sandbox_env`); folders in
`HIDE` and $HOME are hidden except the interpreter's own, bound back read-only; as root, every
concurrent sandbox holds its own uid (`UidSlot`), so RLIMIT_NPROC counts that sandbox alone.

Exercised by `python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py`.
"""

from __future__ import annotations

import fcntl
import functools
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from gptlab.errors import GptlabError
from gptlab.sandbox.limits import HIDE, SANDBOX_PATH, SANDBOX_TMP, UID_BASE, UID_SLOTS, Limits, rlimits

MECHANISMS = ("bwrap", "unshare", "none")
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")


@dataclass
class Launch:
    """Everything `process.execute` needs to start one program under one mechanism."""
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    info_fd: int | None = None        # read end: {"child-pid": PID 1 of the sandbox, as the host sees it}
    cwd: str | None = None
    uid: int | None = None                                 # the sandbox uid, to sweep afterwards
    namespaced: bool = True                                # False for "none": no PID namespace
    cleanup: list = field(default_factory=list)            # callables run after the program ended


def interpreter(language: str) -> tuple[list[str], str] | str:
    """(argv before the program path, file suffix) for a language, or a one-line reason it cannot run."""
    if language == "python":
        if not sys.executable or not os.access(sys.executable, os.X_OK):
            return "no Python interpreter (sys.executable is empty)"
        # -I: ignore PYTHON* variables, user site and the script's folder; -B: the view is read-only anyway
        return [sys.executable, "-I", "-B"], ".py"
    if language in ("javascript", "js", "node"):
        node = shutil.which("node")
        if node is None:
            return "no JavaScript interpreter: `node` is not on PATH"
        return [node], ".js"
    return f"unknown language {language!r} (expected 'python' or 'javascript')"


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hidden_folders() -> list[str]:
    """Existing folders to hide: the fixed list plus whatever $HOME is, never `/` or a parent of /tmp."""
    names = list(HIDE) + [os.environ.get("HOME", ""), os.path.expanduser("~")]
    out = []
    for name in names:
        real = os.path.realpath(name) if name else ""
        if real in ("", "/") or not os.path.isdir(real) or _under(SANDBOX_TMP, real):
            continue
        if not any(_under(real, kept) for kept in out):
            out = [kept for kept in out if not _under(kept, real)] + [real]
    return sorted(out)


def kept_folders(program_argv: list[str], hide: list[str]) -> list[str]:
    """Folders under a hidden one that the interpreter needs (a pyenv under /root, nvm's node...)."""
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    real_exe = os.path.realpath(program_argv[0])
    wanted.add(os.path.dirname(os.path.dirname(real_exe)))    # <prefix>/bin/<exe> -> <prefix>
    wanted = {os.path.realpath(p) for p in wanted if p}
    keep = sorted(p for p in wanted if os.path.isdir(p) and any(_under(p, h) for h in hide))
    return [p for p in keep if not any(p != q and _under(p, q) for q in keep)]


def sandbox_env(language: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from the caller."""
    env = {"PATH": SANDBOX_PATH, "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8",
           "LC_ALL": "C.UTF-8"}
    # BLAS pools start one thread per core on import, and threads count against the process limit.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _prlimit_args(limits: dict) -> list[str]:
    names = {"RLIMIT_CPU": "cpu", "RLIMIT_DATA": "data", "RLIMIT_AS": "as", "RLIMIT_FSIZE": "fsize",
             "RLIMIT_NOFILE": "nofile", "RLIMIT_NPROC": "nproc", "RLIMIT_CORE": "core"}
    args = []
    for name, value in limits.items():
        soft, hard = value if isinstance(value, list) else (value, value)
        args.append(f"--{names[name]}={soft}:{hard}")
    return args


def _bwrap_bind(folder: str, hide: list[str]) -> list[str]:
    """Bind `folder` back read-only under the tmpfs that hides it. bwrap would create the folders
    leading to it as 0700 root, which the sandbox uid could not traverse."""
    chain, parent = [], os.path.dirname(folder)
    while parent not in hide and parent != "/":
        chain.append(parent)
        parent = os.path.dirname(parent)
    args = []
    for step in reversed(chain):
        args += ["--perms", "0755", "--dir", step]
    return args + ["--ro-bind", folder, folder]


def bwrap_command(program_argv, program_path, code_fd, info_fd, limits, language, uid) -> list[str]:
    """bwrap, then prlimit, then (root only) setpriv to `uid`, then the program at `program_path`."""
    hide = hidden_folders()
    cmd = [shutil.which("bwrap"), "--info-fd", str(info_fd), "--unshare-net", "--unshare-pid",
           "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
           "--ro-bind", "/", "/"]
    # As root, no user namespace: bwrap would map the sandbox to real uid 0 (root's files readable,
    # RLIMIT_NPROC ignored), so it runs privileged and setpriv drops to the sandbox uid instead.
    if uid is None:
        cmd.append("--unshare-user")          # unprivileged: the namespaces hang off a user namespace
    for folder in hide:
        cmd += ["--tmpfs", folder]
    keep = kept_folders(program_argv, hide + [SANDBOX_TMP])
    for folder in [k for k in keep if not _under(k, SANDBOX_TMP)]:
        cmd += _bwrap_bind(folder, hide)
    for folder in hide:
        cmd += ["--remount-ro", folder]
    cmd += ["--dev", "/dev", "--proc", "/proc",
            "--size", str(limits.tmp_mb << 20), "--perms", "1777", "--tmpfs", SANDBOX_TMP,
            "--perms", "0444", "--file", str(code_fd), program_path, "--chdir", SANDBOX_TMP, "--clearenv"]
    for folder in [k for k in keep if _under(k, SANDBOX_TMP)]:    # e.g. a virtualenv made in /tmp
        cmd += _bwrap_bind(folder, [SANDBOX_TMP])
    for key, value in sandbox_env(language).items():
        cmd += ["--setenv", key, value]
    if uid is not None:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    cmd += ["--", shutil.which("prlimit"), *_prlimit_args(rlimits(limits, language)), "--"]
    if uid is not None:
        cmd += [shutil.which("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
    return cmd + program_argv + [program_path]


def unshare_command(program_argv, program_path, code_fd, info_fd, limits, language, uid) -> list[str]:
    """unshare, then launcher.py as PID 1 with its configuration (marshalled, in hex) as argument."""
    hide = hidden_folders()
    hide += [d for d in ("/dev/shm", "/dev/mqueue") if os.path.ismount(d)]
    cfg = {"mode": "unshare", "hide": hide, "keep": kept_folders(program_argv, hide + [SANDBOX_TMP]),
           "tmp_bytes": limits.tmp_mb << 20, "code_fd": code_fd, "info_fd": info_fd,
           "program_path": program_path, "cwd": SANDBOX_TMP, "uid": uid,
           "argv": program_argv + [program_path], "env": sandbox_env(language),
           "rlimits": rlimits(limits, language)}
    cmd = [shutil.which("unshare"), "--mount", "--net", "--pid", "--ipc", "--uts", "--fork",
           "--kill-child", "--propagation", "private"]
    if uid is None:
        cmd += ["--user", "--map-root-user"]
    return cmd + ["--", sys.executable, "-I", "-S", LAUNCHER, marshal.dumps(cfg).hex()]


def none_command(program_argv, program_path, workdir, limits, language, uid) -> list[str]:
    """launcher.py without namespaces: rlimits, uid, and reaping only (mechanism "none")."""
    env = sandbox_env(language) | {"HOME": workdir, "TMPDIR": workdir}
    cfg = {"mode": "none", "cwd": workdir, "uid": uid, "argv": program_argv + [program_path], "env": env,
           "rlimits": rlimits(limits, language)}
    return [sys.executable, "-I", "-S", LAUNCHER, marshal.dumps(cfg).hex()]


def reachable_by_others(executable: str) -> bool:
    """Whether a uid other than the owner can run `executable` (every folder on its real path o+x)."""
    path = os.path.realpath(executable)
    if not os.stat(path).st_mode & 0o001:
        return False
    folder = os.path.dirname(path)
    while True:
        if not os.stat(folder).st_mode & 0o001:
            return False
        if folder == "/":
            return True
        folder = os.path.dirname(folder)


def sweep_command(uid: int) -> list[str]:
    """Kills every process of the sandbox uid (kill(-1) as that uid reaches only its own processes)."""
    code = f"import os\nos.setgroups([]); os.setgid({uid}); os.setuid({uid}); os.kill(-1, 9)"
    return [sys.executable, "-I", "-S", "-c", code]


def prepare(mechanism, code: bytes, prefix, suffix, limits, language, uid) -> Launch:
    """The Launch that runs `code` (UTF-8) with interpreter argv `prefix` under `mechanism`."""
    env = {"PATH": SANDBOX_PATH}
    if mechanism == "none":
        workdir = tempfile.mkdtemp(prefix="gptlab-sandbox-")
        path = os.path.join(workdir, "main" + suffix)
        with open(path, "wb") as f:
            f.write(code)
        os.chmod(path, 0o444)
        if uid is not None and not reachable_by_others(prefix[0]):
            uid = None    # e.g. a pyenv under a 0700 /root: the interpreter would not start as another uid
        if uid is not None:
            os.chown(workdir, uid, uid)
        argv = none_command(prefix, path, workdir, limits, language, uid)
        return Launch(argv, env, cwd=workdir, uid=uid, namespaced=False,
                      cleanup=[lambda: shutil.rmtree(workdir, ignore_errors=True)])
    # The program reaches the sandbox's own /tmp through an in-memory file: nothing touches host disk.
    code_fd = os.memfd_create("gptlab-sandbox-program")
    os.write(code_fd, code)
    os.lseek(code_fd, 0, os.SEEK_SET)
    info_read, info_write = os.pipe()
    path = f"{SANDBOX_TMP}/main{suffix}"
    build = bwrap_command if mechanism == "bwrap" else unshare_command
    argv = build(prefix, path, code_fd, info_write, limits, language, uid)
    return Launch(argv, env, pass_fds=(code_fd, info_write), info_fd=info_read, uid=uid,
                  cleanup=[lambda: os.close(info_read)])


class UidSlot:
    """A uid no other running sandbox holds, reserved with an flock for as long as the execution lasts."""

    def __init__(self):
        self.uid, self._fd = None, None

    def __enter__(self) -> int | None:
        if os.geteuid() != 0:
            return None
        folder = "/run/gptlab-sandbox" if os.access("/run", os.W_OK) else "/tmp/gptlab-sandbox-root"
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.lstat(folder)
        if st.st_uid != 0 or (st.st_mode & 0o077):   # someone else made it: do not trust its locks
            raise GptlabError(f"{folder}: sandbox lock folder is not private to root; remove it")
        start = os.getpid() % UID_SLOTS
        for i in range(UID_SLOTS):
            slot = (start + i) % UID_SLOTS
            fd = os.open(os.path.join(folder, f"{slot}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.uid, self._fd = UID_BASE + slot, fd
            return self.uid
        raise GptlabError(f"all {UID_SLOTS} sandbox uids are in use (too many sandboxes at once)")

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)


def _probe_argv(mechanism: str, uid: int | None) -> list[str] | None:
    """A complete command for mechanism that runs /bin/true, or None when its tools are missing."""
    true = shutil.which("true") or "/bin/true"
    if mechanism == "bwrap":
        tools = ["bwrap", "prlimit"] + (["setpriv"] if uid is not None else [])
        if not all(shutil.which(t) for t in tools):
            return None
        return bwrap_command([true], "/tmp/probe", 0, 1, Limits(), "python", uid)
    if mechanism == "unshare":
        if not shutil.which("unshare") or not sys.executable:
            return None
        return unshare_command([true], "/tmp/probe", 0, 1, Limits(), "python", uid)
    return None


@functools.lru_cache(maxsize=None)
def probe(mechanism: str) -> str:
    """'' when `mechanism` works here (checked by running /bin/true inside it), else why not."""
    try:
        with UidSlot() as uid:
            argv = _probe_argv(mechanism, uid)
            if argv is None:
                return f"{mechanism}: tools not installed"
            # the program file is read from fd 0, an empty stdin; the sandbox's PID goes to stdout
            done = subprocess.run(argv, input=b"", capture_output=True, timeout=20,
                                  env={"PATH": SANDBOX_PATH})
    except (OSError, GptlabError, subprocess.TimeoutExpired) as e:
        return f"{mechanism}: {e}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{mechanism}: {why[-1] if why else f'exit status {done.returncode}'}"
    return ""


def isolation() -> str | None:
    """The best mechanism that works on this machine, or None when only unsafe execution is left."""
    for mechanism in ("bwrap", "unshare"):
        if probe(mechanism) == "":
            return mechanism
    return None
