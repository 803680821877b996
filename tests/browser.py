"""Open a page in headless Chromium and report what a person (and the console) would see.

    python tests/browser.py runs/demo/report/index.html shot.png     (prints the checks, saves a screenshot)

Talks the Chrome DevTools protocol over `--remote-debugging-pipe` (file descriptors 3 and 4, messages
ended by NUL), so it needs nothing but the `chromium` binary: no selenium, no websocket library, no port.
Collected while the page loads: console errors and warnings, uncaught exceptions, browser log errors
(e.g. a resource that failed to load) and every network request that is not file: or data:.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    console: list[str] = field(default_factory=list)     # console.error / warn / assert, exceptions, log errors
    requests: list[str] = field(default_factory=list)    # URLs fetched that are not file: or data:
    value: object = None                                 # what `expression` evaluated to
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, binary: str, profile: str, log_path: Path):
        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        to_r, from_w = self._to_r, self._from_w

        def wire():                      # the browser reads commands on fd 3 and answers on fd 4
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                     preexec_fn=wire, pass_fds=(3, 4))
        os.close(self._to_r)
        os.close(self._from_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(timeout)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe (see its log)")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_w, self._from_r):
            os.close(fd)
        self._log.close()


def visit(page: Path, expression: str = "document.title", width: int = 1366, height: int = 800,
          full_page: bool = False, binary: str | None = None) -> PageVisit:
    """Load `page` at a laptop-sized viewport, evaluate `expression` (JSON-able) and take a screenshot."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found")
    profile = tempfile.mkdtemp(prefix="gptlab-chromium-")
    browser = _Pipe(binary, profile, Path(profile) / "chromium.log")
    out = PageVisit()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                            "deviceScaleFactor": 1, "mobile": False},
                     session=session)
        browser.send("Page.navigate", {"url": Path(page).resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating the check failed: {result['exceptionDetails']}")
        out.value = result["result"].get("value")
        shot = {"format": "png"}
        if full_page:
            size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": width,
                                                          "height": min(size["height"], 16000), "scale": 1})
        out.screenshot = base64.b64decode(browser.send("Page.captureScreenshot", shot, session=session)["data"])
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)   # drain late console events
    finally:
        events = browser.events
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            out.console.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                   for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.console.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.console.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:")):
                out.requests.append(url)
    return out


if __name__ == "__main__":
    v = visit(Path(sys.argv[1]), "document.title", full_page="--full" in sys.argv)
    print(json.dumps({"title": v.value, "console": v.console, "requests": v.requests}, indent=1))
    if len(sys.argv) > 2 and not sys.argv[2].startswith("--"):
        Path(sys.argv[2]).write_bytes(v.screenshot)
