"""Processes of a cluster on one machine, each in its own process group, stopped together.

``Cluster.start`` runs a long-lived service with its output in a log file,
``Cluster.run`` a command to its end, ``Cluster.wait_for`` polls until a service is
ready (or has died, or the deadline passed), and ``Cluster.stop_all`` stops everything,
including what the services started in sessions of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


class ClusterError(RuntimeError):
    """A step of the recipe failed or did not finish in time."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_last: bool = False

    def logged(self, words: str) -> bool:
        return words in self.tail(50)

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """Processes started on loopback, stopped in reverse order by ``stop_all``."""

    workdir: Path
    env: dict[str, str]
    deadline: float
    services: list[Service] = field(default_factory=list)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ClusterError("the recipe did not finish within --timeout")
        return left

    def start(self, name: str, argv: Sequence[str], *, stop_last: bool = False) -> Service:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            process = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        service = Service(name, process, log, stop_last)
        self.services.append(service)
        return service

    def run(self, name: str, argv: Sequence[str]) -> str:
        """Run a command to its end; its output, or ClusterError with it."""
        try:
            done = subprocess.run(
                list(argv),
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.remaining(),
            )
        except subprocess.TimeoutExpired as error:
            raise ClusterError(f"{name}: did not finish within --timeout") from error
        output = done.stdout + done.stderr
        (self.workdir / "logs").mkdir(exist_ok=True)
        (self.workdir / "logs" / f"{name}.log").write_text(output)
        if done.returncode != 0:
            raise ClusterError(f"{name} exited {done.returncode}:\n{_last_lines(output)}")
        return output

    def run_together(self, name: str, argv: Sequence[str], times: int) -> list[str]:
        """Run a command ``times`` times at once; their outputs, or ClusterError."""
        runs = [self.start(f"{name}-{n}", argv) for n in range(1, times + 1)]
        for run in runs:
            try:
                code = run.process.wait(timeout=self.remaining())
            except subprocess.TimeoutExpired as error:
                raise ClusterError(f"{run.name}: did not finish within --timeout") from error
            if code != 0:
                raise ClusterError(f"{run.name} exited {code}:\n{run.tail()}")
        return [run.log.read_text(errors="replace") for run in runs]

    def wait_for(self, what: str, ready: Callable[[], bool], service: Service | None) -> None:
        while not _answers(ready):
            if service is not None and service.process.poll() is not None:
                raise ClusterError(f"{service.name} stopped while {what}:\n{service.tail()}")
            if time.monotonic() > self.deadline:
                raise ClusterError(f"timed out while {what}")
            time.sleep(0.25)

    def stop_all(self) -> None:
        """Stop the workers and the webhook service, then the Prefect server they talk to."""
        self.stop([service for service in self.services if not service.stop_last])
        self.stop([service for service in self.services if service.stop_last])
        self.services.clear()

    def stop(self, services: list[Service]) -> None:
        """SIGINT to each process group at once, then SIGTERM, then SIGKILL to what is left.

        Flow runs are started by the workers in sessions of their own: they are found
        among the workers' descendants before anything is signalled, and killed last if
        they are still there (the same process: its start time is checked).
        """
        running = [service for service in services if service.process.poll() is None]
        leftovers = [found for s in running for found in _descendants(s.process.pid)]
        for signum, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for service in running:
                with suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signum)
            until = time.monotonic() + grace
            for service in running:
                with suppress(subprocess.TimeoutExpired):
                    service.process.wait(timeout=max(0.0, until - time.monotonic()))
            running = [service for service in running if service.process.poll() is None]
            if not running:
                break
        for pid, started in leftovers:
            if _start_time(pid) == started:
                with suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _answers(ready: Callable[[], bool]) -> bool:
    try:
        return ready()
    except (httpx.HTTPError, OSError):
        return False


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return None if fields is None else fields[19]


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields is not None:
            children[int(fields[1])].append((int(entry.name), fields[19]))
    found: list[tuple[int, str]] = []
    pending = [pid]
    while pending:
        below = children.get(pending.pop(), [])
        found += below
        pending += [child for child, _ in below]
    return found


def _last_lines(output: str, lines: int = 25) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
