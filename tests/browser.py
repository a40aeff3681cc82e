"""Headless Chromium driven over the DevTools protocol, with nothing but the standard library.

``--remote-debugging-pipe`` makes Chromium read protocol commands from file descriptor 3 and write its
answers to descriptor 4, each message JSON ended by a NUL byte: no port, no WebSocket client, no driver.

    python tests/browser.py data/browse/index.html docs/browse.png             # a screenshot of any page
    python tests/browser.py 'data/browse/index.html#split=test' shot.png 1200x1600  # a filtered view, taller
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("chromium", "chromium-browser")  # Debian's package installs the first


def find() -> str | None:
    return next((path for path in map(shutil.which, NAMES) if path), None)


class Browser:
    """One headless browser with one tab; ``evaluate`` runs JavaScript in the page and returns its value."""

    def __init__(self, width: int = 1200, height: int = 900):
        binary = find()
        if binary is None:
            raise RuntimeError(f"no Chromium on PATH (looked for {', '.join(NAMES)})")
        self.profile = tempfile.mkdtemp(prefix="diffseg-chromium-")
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()

        def wire() -> None:  # in the child: the protocol's two descriptors
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        # --no-sandbox: CI and containers run as root, where Chromium's sandbox refuses to start.
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--allow-file-access-from-files", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"], pass_fds=(3, 4), preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._next, self._buffer = 0, b""
        target = self._send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self._send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._send("Emulation.setDeviceMetricsOverride", self.session, width=width, height=height,
                   deviceScaleFactor=1, mobile=False)

    def _send(self, method: str, session: str | None = None, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:  # events arrive in between; keep reading until the answer to this command
            while b"\0" not in self._buffer:
                chunk = os.read(self._answers, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the protocol pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression: str):
        result = self._send("Runtime.evaluate", self.session, expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 30) -> None:
        """Poll until ``expression`` is true in the page."""
        deadline = time.monotonic() + timeout
        while self.evaluate(expression) is not True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout} s: {expression}")
            time.sleep(0.05)

    def open(self, url: str) -> None:
        """Load ``url`` and wait until the page and its images have loaded."""
        self._send("Page.navigate", self.session, url=url)
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def screenshot(self, path: Path) -> None:
        data = self._send("Page.captureScreenshot", self.session, format="png", captureBeyondViewport=False)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._commands)
            os.close(self._answers)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    path, _, fragment = sys.argv[1].partition("#")
    out = Path(sys.argv[2])
    width, height = map(int, (sys.argv[3] if len(sys.argv) > 3 else "1200x900").split("x"))
    with Browser(width, height) as browser:
        browser.open(Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else ""))
        # Lazy images load only near the viewport: wait for those, then give them a frame to paint.
        shown = "Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight)"
        browser.wait(f"{shown}.every(i => i.complete)")
        browser.evaluate("new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        browser.screenshot(out)
    print(f"{out}: screenshot of {sys.argv[1]}")
