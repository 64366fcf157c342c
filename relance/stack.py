"""The production stack ``relance up`` runs in the foreground, and stops as one.

    Prefect server   python -m relance.prefect_server   (unless PREFECT_API_URL is set)
    deployments      flows/deployments.py: work pool, dispatch on a schedule, notify-owner
    worker           prefect worker start --pool relance (the flow runs are its processes)
    web service      relance serve (webhooks, unsubscribe, SDR page)

Each is a process in its own process group, its output in ``<data_dir>/logs/<name>.log``.
The console gets the URLs, then one line per tick (the dispatch flow's own summary line)
and every error the worker logs. SIGINT or SIGTERM stops them all, in reverse order: SIGTERM,
then SIGKILL to what is still there after the grace period, so that nothing is left
listening. If one of them dies, the others are stopped and ``relance up`` exits 1.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from relance.errors import RelanceError

TICK_LINE = re.compile(r"tick at (?P<rest>.*)$")
ERROR_LINE = re.compile(r"\|\s*(ERROR|CRITICAL)\s*\|")
STOP_GRACE_SECONDS = 20.0


class StackError(RelanceError):
    """The stack could not start, or one of its processes stopped."""


@dataclass(frozen=True)
class StackOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    prefect_port: int = 4200
    interval_seconds: float = 60.0
    worker_only: bool = False
    worker_limit: int = 4


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Stack:
    """The processes of one ``relance up``; ``say`` prints a line on the console."""

    home: Path
    data_dir: Path
    options: StackOptions
    say: Callable[[str], None]
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    def environment(self, api_url: str) -> dict[str, str]:
        """What every process of the stack runs with: absolute paths, the API, offline."""
        env = dict(os.environ)
        env.update(
            RELANCE_HOME=str(self.home),
            RELANCE_DATA_DIR=str(self.data_dir),
            PREFECT_API_URL=api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env

    # --- starting ------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one, not by our ^C
        )
        child = Child(name, process, log_path)
        self.children.append(child)
        assert process.stdout is not None
        threading.Thread(target=self.copy_output, args=(child, process.stdout), daemon=True).start()
        return child

    def copy_output(self, child: Child, stream: IO[bytes]) -> None:
        """Keep a child's output in its log; tell the console of ticks and errors."""
        with child.log_path.open("ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                if child.name != "worker":
                    continue
                tick = TICK_LINE.search(line)
                if tick:
                    self.say(f"tick at {tick['rest']}")
                elif ERROR_LINE.search(line):
                    self.say(f"worker: {line.split('|', 2)[-1].strip()} (see {child.log_path})")

    def start_prefect_server(self) -> str:
        """Prefect's server on ``prefect_port``, its database under the data directory."""
        port = self.options.prefect_port
        ensure_free(self.options.host, port, "--prefect-port")
        prefect_home = self.data_dir / "prefect"
        prefect_home.mkdir(parents=True, exist_ok=True)
        api_url = f"http://{connect_host(self.options.host)}:{port}/api"
        env = self.environment(api_url)
        env.update(
            PREFECT_HOME=str(prefect_home),
            PREFECT_SERVER_API_HOST=self.options.host,
            PREFECT_SERVER_API_PORT=str(port),
        )
        env.pop("PREFECT_API_URL")  # the server is not a client of itself
        argv = [sys.executable, "-m", "relance.prefect_server", "--host", self.options.host]
        self.start("prefect-server", [*argv, "--port", str(port)], env)
        self.wait_until(f"{api_url}/health", "the Prefect server", timeout=120)
        return api_url

    def start_worker(self, api_url: str) -> None:
        env = self.environment(api_url)
        env["PREFECT_LOGGING_LEVEL"] = "INFO"  # the flow runs' summary lines reach the log
        argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "relance"]
        argv += ["--type", "process", "--limit", str(self.options.worker_limit)]
        self.start("worker", argv, env)

    def start_web(self, api_url: str) -> str:
        ensure_free(self.options.host, self.options.port, "--port")
        argv = [sys.executable, "-m", "relance", "serve", "--host", self.options.host]
        self.start("web", [*argv, "--port", str(self.options.port)], self.environment(api_url))
        base = f"http://{connect_host(self.options.host)}:{self.options.port}"
        self.wait_until(f"{base}/healthz", "the web service", timeout=60)
        return base

    def wait_until(self, url: str, what: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            with suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            self.check_children()
            if time.monotonic() > deadline:
                raise StackError(f"{what} did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.25)
        raise StackError("stopped while starting")

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise StackError(
                    f"{child.name} stopped (exit code {code}); its log: {child.log_path}\n"
                    + tail(child.log_path)
                )

    # --- running -------------------------------------------------------------------------

    def run(self) -> None:
        """Start everything, then watch it until a signal or a child's death."""
        external = os.environ.get("PREFECT_API_URL", "").strip()
        if self.options.worker_only and not external:
            raise StackError(
                "--worker-only adds a worker to a running stack: set PREFECT_API_URL to its "
                "Prefect API (e.g. http://server:4200/api)"
            )
        if external:
            api_url = external.rstrip("/")
            self.wait_until(f"{api_url}/health", "the Prefect API in PREFECT_API_URL", timeout=30)
            self.say(f"Prefect API    {api_url} (PREFECT_API_URL)")
        else:
            api_url = self.start_prefect_server()
            self.say(f"Prefect UI     {api_url.removesuffix('/api')}")
        if not self.options.worker_only:
            os.environ["PREFECT_API_URL"] = api_url
            from flows.deployments import apply_deployments

            ticks = 1 if self.store_is_sqlite() else 4
            names = asyncio.run(
                apply_deployments(self.options.interval_seconds, concurrent_ticks=ticks)
            )
            self.say(
                f"Deployments    {', '.join(names)} "
                f"(a tick every {self.options.interval_seconds:g} s)"
            )
            base = self.start_web(api_url)
            self.say(f"SDR page       {base}/sdr")
            self.say(f"Webhooks       {base}/webhooks/...")
        self.start_worker(api_url)
        self.say(f"Worker         pool relance; logs in {self.logs}")
        self.say("Running. Press Ctrl-C to stop.")
        while not self.stopping.wait(0.5):
            self.check_children()

    def store_is_sqlite(self) -> bool:
        url = os.environ.get("RELANCE_DATABASE_URL", "")
        return not url or url.startswith("sqlite")

    def stop(self) -> None:
        """Stop every child, last started first: SIGTERM, then SIGKILL after the grace."""
        self.stopping.set()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in reversed(self.children):
            signal_group(child.process, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        for child in self.children:
            signal_group(child.process, signal.SIGKILL)  # the group: grandchildren too
            with suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)


@contextmanager
def signals_stop(stack: Stack) -> Iterator[None]:
    """SIGINT and SIGTERM stop the stack (the main thread then leaves ``run``)."""

    def handle(signum: int, _frame: object) -> None:
        if not stack.stopping.is_set():
            stack.say(f"{signal.Signals(signum).name}: stopping...")
        stack.stopping.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_stack(stack: Stack) -> None:
    """``relance up``: run the stack until a signal; always stop what was started."""
    with signals_stop(stack):
        try:
            stack.run()
        finally:
            stack.stop()
            stack.say("Stopped.")


def signal_group(process: subprocess.Popen[bytes], number: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, number)


def ensure_free(host: str, port: int, option: str) -> None:
    """A clear error, before anything starts, when ``port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StackError(
                f"cannot listen on {host}:{port} ({error.strerror}): choose another with {option}"
            ) from None


def connect_host(host: str) -> str:
    """Where to reach a service listening on ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
