"""Headless Chromium for the tests: find it, take a screenshot or the DOM of a page, or drive
it through the DevTools protocol (no Playwright, no Selenium: a websocket and a few commands).

    path = require_chromium()              # skips (fails under CI=true) without chromium
    screenshot(url, Path("page.png"), (1280, 900))
    html = dump_dom(url)
    with Browser() as browser:
        browser.navigate(url)
        browser.act("document.querySelector('button').click()")   # waits for the next page
        browser.screenshot(Path("after.png"))

Chromium is Debian's package (``make browser`` installs it). Every run uses a fresh profile
and no network beyond the page asked for.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium", "/usr/lib/chromium/chromium")


class BrowserError(Exception):
    """Chromium did not start, or a page did not do what the test expected."""


def chromium_path() -> str | None:
    """The chromium executable ($CHROMIUM, else Debian's), or None."""
    for candidate in (os.environ.get("CHROMIUM"), *CANDIDATES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def require_chromium() -> str:
    """The chromium executable; the test is skipped without one, and fails under CI=true."""
    path = chromium_path()
    if path is not None:
        return path
    reason = "chromium is not installed (make browser installs Debian's chromium package)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def _run(arguments: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    path = require_chromium()
    with tempfile.TemporaryDirectory(
        prefix="relance-chromium-", ignore_cleanup_errors=True
    ) as profile:
        return subprocess.run(
            [path, *FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def screenshot(
    url: str, png: Path, size: tuple[int, int] = (1280, 900), timeout: float = 60
) -> Path:
    """A screenshot of ``url`` at this window size, written to ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", url], timeout)
    if not png.is_file():
        raise BrowserError(f"chromium wrote no screenshot of {url}: {done.stderr[-2000:]}")
    return png


def dump_dom(url: str, timeout: float = 60) -> str:
    """The DOM of ``url`` once loaded, serialized as HTML."""
    done = _run(["--dump-dom", url], timeout)
    if done.returncode != 0 or not done.stdout:
        raise BrowserError(f"chromium could not load {url}: {done.stderr[-2000:]}")
    return done.stdout


class Browser:
    """One headless Chromium page driven over the DevTools protocol."""

    def __init__(self, size: tuple[int, int] = (1280, 900), timeout: float = 30) -> None:
        self.size = size
        self.timeout = timeout
        self.ids = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        path = require_chromium()
        self.profile = tempfile.TemporaryDirectory(
            prefix="relance-chromium-", ignore_cleanup_errors=True
        )
        profile = Path(self.profile.name)
        self.log = (profile / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [
                path,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={self.size[0]},{self.size[1]}",
                "about:blank",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its helpers (zygote, renderers) share its process group
        )
        try:
            port = self._devtools_port(profile / "DevToolsActivePort")
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(target for target in targets if target["type"] == "page")
            self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            self.call("Page.enable")
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        self._stop()

    def _stop(self) -> None:
        """End the chromium started here and its helpers (its own process group), then
        drop the profile."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        self._wait_for_helpers()
        self.log.close()
        self.profile.cleanup()

    def _wait_for_helpers(self) -> None:
        """Helpers of the group may outlive the browser by a moment; wait until none is left."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def _devtools_port(self, marker: Path) -> int:
        """Chromium writes the port it picked (``--remote-debugging-port=0``) to this file."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}")
            if marker.is_file() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port")

    # --- the protocol -----------------------------------------------------------------

    def _receive(self, deadline: float, what: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"timed out waiting for {what}")
        try:
            message: dict[str, Any] = json.loads(self.socket.recv(timeout=remaining))
        except TimeoutError:
            raise BrowserError(f"timed out waiting for {what}") from None
        return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result; events seen meanwhile are kept."""
        self.ids += 1
        self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == self.ids:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The next DevTools event called ``event`` (kept ones first)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, message in enumerate(self.events):
                if message["method"] == event:
                    return self.events.pop(index)
            message = self._receive(deadline, event)
            if "method" in message:
                self.events.append(message)

    # --- what a test does ---------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression}: {text}")
        return result.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait until the page has loaded."""
        self.events.clear()
        answer = self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired")

    def act(self, expression: str) -> None:
        """Run ``expression`` (a click, a form submit) and wait for the page it leads to."""
        self.events.clear()
        self.evaluate(expression)
        self.wait_for("Page.loadEventFired")

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def screenshot(self, png: Path, full_page: bool = True) -> Path:
        """The page as PNG: the whole page, or the window only."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": max(size["width"], self.size[0]),
                "height": size["height"],
                "scale": 1,
            }
        data = self.call("Page.captureScreenshot", **params)["data"]
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(data))
        return png
