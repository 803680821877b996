"""The first process inside a sandbox that bubblewrap does not build: mounts, limits, then the program.

`mechanisms.py` starts this file as `python -I -S launcher.py CONFIG` (CONFIG: a marshalled dict, in
hex) in two cases:

* mechanism "unshare": under `unshare --mount --net --pid --ipc --uts --fork --kill-child`, where it is
  PID 1 of a fresh PID namespace and root of a fresh mount namespace. It hides the home and runtime
  folders behind empty tmpfs mounts (re-binding the interpreter's own folders), makes every mount
  read-only, mounts a private size-capped tmpfs on /tmp and a fresh /proc, sets the rlimits, gives up
  root (a dedicated uid when real root, else every capability), and runs the program as its child. When
  the program ends this process exits and the kernel kills whatever else is left in the namespace.
* mechanism "none" (`--unsafe-exec`): no namespaces. It sets the rlimits and the uid of the program
  only, and, as a child subreaper, kills everything the program left behind when it ends (or on SIGTERM,
  which the caller sends at the wall-clock limit).

It imports nothing from gptlab (it runs with `-I -S`, from a read-only view) and only the standard
library; importing it has no effect beyond loading libc. Exercised by
`python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py` (the "unshare" and "none" cases).
"""

import _signal   # the C modules: `signal`, `socket`, `json` would import enum and re (slower start)
import _socket
import ctypes
import fcntl
import marshal
import os
import resource
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442          # the same number on x86-64 and arm64 (asm-generic table)
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 24, 47, 4
PR_SET_CHILD_SUBREAPER = 36


def _fail(what):
    err = ctypes.get_errno()
    sys.stderr.write(f"sandbox: {what}: {os.strerror(err)}\n")
    sys.exit(125)


def _mount(source, target, fstype, flags, data=None):
    if _libc.mount(source.encode() if source else None, target.encode(),
                   fstype.encode() if fstype else None, flags, data.encode() if data else None) != 0:
        _fail(f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _make_everything_read_only():
    """Read-only and nosuid on every mount below /, in one recursive call (Linux >= 5.12)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr),
                     ctypes.sizeof(attr)) == 0:
        return
    # Older kernels: remount each mount point; deepest last is fine since each remount is independent.
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        point = point.encode().decode("unicode_escape")
        if _libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID, None) != 0:
            if ctypes.get_errno() not in (2, 13):   # vanished or hidden below another mount
                _fail(f"read-only remount of {point}")


def _bind_back(path, fd):
    os.makedirs(path, exist_ok=True)
    _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    os.close(fd)


def _build_view(cfg):
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Open what must stay visible before the tmpfs mounts hide it; bind it back through /proc/self/fd.
    keep = [(path, os.open(path, os.O_PATH)) for path in cfg["keep"] if os.path.exists(path)]
    for hidden in cfg["hide"]:
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    in_tmp = [(path, fd) for path, fd in keep if path.startswith("/tmp/")]   # a virtualenv made in /tmp
    for path, fd in keep:
        if (path, fd) not in in_tmp:
            _bind_back(path, fd)
    _make_everything_read_only()
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmp_bytes']},mode=1777")
    for path, fd in in_tmp:
        _bind_back(path, fd)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_REC)
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _loopback_up()


def _loopback_up():
    """A new network namespace starts with `lo` down; bring it up, as bubblewrap does."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0))[:18])[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))   # SIOCSIFFLAGS, IFF_UP
    s.close()


def _set_limits(cfg):
    for name, value in cfg["rlimits"].items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _drop_privileges(cfg):
    uid = cfg.get("uid")
    if uid is not None:                       # real root: become a uid nothing else uses
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)                        # clears every capability
    elif os.geteuid() == 0:   # root of a user namespace, or "none" with an interpreter only root can
        # reach: stay uid 0 but shed every capability
        for cap in range(64):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)   # _LINUX_CAPABILITY_VERSION_3, this process
        data = (ctypes.c_uint32 * 6)()
        if _libc.capset(header, data) != 0:
            _fail("dropping capabilities")
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _fail("no_new_privs")


def _exit_like(status):
    """Exit as bubblewrap does: the child's exit code, or 128 + the signal that killed it."""
    if os.WIFSIGNALED(status):
        sys.exit(128 + os.WTERMSIG(status))
    sys.exit(os.WEXITSTATUS(status))


def _kill_descendants():
    """As a child subreaper every orphan below us is re-parented here: kill our children until none
    is left (each one killed hands its own children to us)."""
    me = str(os.getpid())
    while True:
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == me:
                try:
                    os.kill(int(entry), 9)
                except OSError:
                    pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return


def _start_program(cfg) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:   # the child: only the program is limited and unprivileged, this process stays in charge
        if cfg["mode"] == "unshare":
            os.setsid()
        _set_limits(cfg)
        _drop_privileges(cfg)
        os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as e:
        sys.stderr.write(f"sandbox: cannot run {cfg['argv'][0]}: {e}\n")
    os._exit(125)


def main():
    cfg = marshal.loads(bytes.fromhex(sys.argv[1]))
    if cfg["mode"] == "unshare":
        # The host's /proc is still mounted, so /proc/self names this process in the host's PID namespace:
        # the caller waits for that PID to be gone, which is when the kernel has emptied the namespace.
        os.write(cfg["info_fd"], b'{"child-pid": %d}' % int(os.readlink("/proc/self")))
        os.close(cfg["info_fd"])
        _build_view(cfg)
        with os.fdopen(cfg["code_fd"], "rb") as src:
            code = src.read()
        fd = os.open(cfg["program_path"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, code)
        os.close(fd)
    else:   # "none": no PID namespace, so become the reaper of everything the program leaves behind
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        _signal.signal(_signal.SIGTERM, lambda *_: (_kill_descendants(), os._exit(128 + _signal.SIGKILL)))
    os.chdir(cfg["cwd"])
    pid = _start_program(cfg)
    # Reap every orphan until the program itself ends. In "unshare" this process is PID 1, and when it
    # exits the kernel kills whatever is left in the namespace; in "none" it kills the rest itself.
    while True:
        done, status = os.waitpid(-1, 0)
        if done == pid:
            if cfg["mode"] != "unshare":
                _kill_descendants()
            _exit_like(status)


if __name__ == "__main__":
    main()
