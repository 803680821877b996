"""Executes one prepared sandbox command: output capped, wall clock enforced, nothing left running after.

`execute()` takes the `Launch` that `mechanisms.prepare` built and returns an `Outcome`, which
`gptlab.sandbox.api` turns into the public `Result`. It protects the caller, not the view (that is the
mechanism's job): a program that prints a gigabyte gets `output_bytes` kept and the rest drained; one
that ignores SIGTERM/SIGALRM is SIGKILLed with its whole PID namespace at `wall_s`; and `execute`
returns only once the kernel has emptied that namespace (for "none": once the launcher, a child
subreaper, has killed what the program left and, as root, the sandbox uid has been swept).

Exercised by `python -m pytest tests/test_sandbox.py tests/test_sandbox_fallback.py` (the wall-clock,
fork-bomb, output and background-process tests).
"""

from __future__ import annotations

import json
import os
import select
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from gptlab.sandbox.limits import SANDBOX_PATH
from gptlab.sandbox.mechanisms import Launch, sweep_command


@dataclass
class Outcome:
    """What one execution did, before `api` classifies it into a `Result`."""
    returncode: int          # exit status, 128 + signal under a namespace, -signal under "none"
    stdout: str
    stderr: str
    truncated: bool
    timed_out: bool          # killed at the wall-clock limit
    duration_s: float


def execute(launch: Launch, wall_s: float, output_bytes: int) -> Outcome:
    """Start `launch`, keep the first `output_bytes` of stdout and of stderr (draining the rest), kill
    everything at `wall_s`, and return only once no process of the sandbox is left."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(launch.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=launch.env, cwd=launch.cwd,
                                pass_fds=launch.pass_fds, start_new_session=True)
    finally:
        for fd in launch.pass_fds:    # the child has its copies; ours would keep the info pipe open
            os.close(fd)
    out, err, info = _Capture(output_bytes), _Capture(output_bytes), _Capture(4096)
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    if launch.info_fd is not None:
        streams[launch.info_fd] = info
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pidfd = os.pidfd_open(proc.pid)
    sel.register(pidfd, selectors.EVENT_READ)
    sandbox = _SandboxInit()
    deadline, timed_out, exited = start + wall_s, False, False
    try:
        while not (exited and not sel.get_map()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = not exited
                break
            for key, _ in sel.select(remaining):
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                    # Whatever outlived the program dies now, so it cannot hold the pipes open.
                    _kill_rest(proc, launch, sandbox, exited)
                    continue
                try:
                    chunk = os.read(key.fd, 1 << 20)
                except BlockingIOError:
                    continue
                if chunk:
                    streams[key.fd].add(chunk)
                    if key.fd == launch.info_fd:
                        sandbox.watch(bytes(info.data))
                else:
                    sel.unregister(key.fd)
    finally:
        if not exited:
            _kill_rest(proc, launch, sandbox, exited)
        proc.wait()
        sandbox.wait_gone()
        sel.close()
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    return Outcome(proc.returncode, out.text(), err.text(), out.truncated or err.truncated, timed_out,
                   time.monotonic() - start)


class _SandboxInit:
    """PID 1 of the sandbox's PID namespace, held by pidfd. The kernel empties the namespace before
    that process is gone, so waiting for it means no process of the sandbox is left. (bwrap's own
    process may exit before that, so waiting for it is not enough.)"""

    def __init__(self):
        self.pidfd = None

    def watch(self, info: bytes):
        """Called with everything read from the info pipe so far; acts once a whole JSON object came."""
        if self.pidfd is not None:
            return
        try:
            report, _ = json.JSONDecoder().raw_decode(info.decode())
            pid = int(report["child-pid"])
            pidfd = os.pidfd_open(pid)
        except (ValueError, KeyError, TypeError, OSError):   # incomplete yet, or already gone
            return
        # Held by pidfd from here on; make sure the PID was not reused before we opened it: it must be
        # PID 1 of a namespace below ours.
        try:
            with open(f"/proc/{pid}/status") as f:
                nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
        except OSError:
            nspid = []
        if len(nspid) >= 2 and nspid[-1] == "1":
            self.pidfd = pidfd
        else:
            os.close(pidfd)

    def kill(self):
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait_gone(self, timeout_s: float = 10.0):
        if self.pidfd is not None:
            select.select([self.pidfd], [], [], timeout_s)
            os.close(self.pidfd)
            self.pidfd = None


class _Capture:
    """Keeps the first `cap` bytes of a stream and counts the rest."""

    def __init__(self, cap: int):
        self.cap, self.data, self.total = cap, bytearray(), 0

    def add(self, chunk: bytes):
        self.total += len(chunk)
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill_rest(proc: subprocess.Popen, launch: Launch, sandbox: _SandboxInit, exited: bool):
    if not launch.namespaced and not exited:
        # "none": no PID namespace; the launcher, a child subreaper, kills the program's descendants
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    if proc.returncode is None:   # not reaped yet, so its PID (our group id) cannot have been reused
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sandbox.kill()
    if launch.uid is not None and not launch.namespaced:   # and as root, a uid of its own to sweep
        subprocess.run(sweep_command(launch.uid), env={"PATH": SANDBOX_PATH})
