"""``relance up`` as a user runs it: the deployment's own schedule sends, an automation fires.

One stack for the module, started as the production command in a project folder that holds
only ``sequences/`` and ``templates/`` (the code is the installed package): a Prefect server
(relance/prefect_server.py), the work pool, the deployments, a worker and the web service.
Nobody triggers a run: the emails come from the dispatch deployment's interval schedule.
A reply recorded with ``relance reply`` becomes a ``relance.prospect.replied`` event, and the
notify-owner deployment's trigger runs its flow. SIGINT then stops everything: no process
of the stack and no port is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from relance.store import Store
from relance.tables import events
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.web_support import free_port

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

pytestmark = pytest.mark.prefect

SEQUENCE = """\
id: always
name: Open every day
timezone: Europe/Paris
country: FR
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
holidays: {country: false}
prospect_fields: [industry]
locales: [en]
steps:
  - id: email-benchmark
    channel: email
    wait: "0d"
    objective: Give something useful first, the benchmark, with no ask.
    resource:
      title: 2025 on-time delivery benchmark for manufacturers
      url: https://example.com/resources/on-time-delivery-benchmark-2025
    templates:
      subject: outbound-2w/{locale}/email-benchmark.subject.j2
      html: outbound-2w/{locale}/email-benchmark.html.j2
      text: outbound-2w/{locale}/email-benchmark.text.j2
  - id: email-later
    channel: email
    wait: "30d"
    objective: A second email, a month later.
    templates:
      subject: outbound-2w/{locale}/email-benchmark.subject.j2
      html: outbound-2w/{locale}/email-benchmark.html.j2
      text: outbound-2w/{locale}/email-benchmark.text.j2
"""

ANA = ("--email", "ana@client.example", "--first-name", "Ana", "--company", "Client")
ANA += ("--field", "industry=retail", "--timezone", "Europe/Paris", "--country", "FR")


@dataclass
class Running:
    process: subprocess.Popen[str]
    env: dict[str, str]
    home: Path
    api: str
    web: str
    sendgrid: FakeSendGrid
    ports: tuple[int, int]

    def relance(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "relance", *arguments],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def output(self) -> str:
        return (self.home / "up.out").read_text(errors="replace")


def wait_for(what: str, check: Callable[[], T | None], running: Running, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert running.process.poll() is None, f"relance up stopped:\n{running.output()}"
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; relance up said:\n{running.output()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("marketing-repo")
    (home / "sequences").mkdir()
    (home / "sequences" / "always.yaml").write_text(SEQUENCE)
    shutil.copytree(ROOT / "templates", home / "templates")
    web_port, prefect_port = free_port(), free_port()
    with FakeSendGrid() as sendgrid:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RELANCE_", "PREFECT_")) and key != "SENDGRID_API_KEY"
        }
        env.update(
            RELANCE_HOME=str(home),
            SENDGRID_API_KEY=sendgrid.api_key,
            RELANCE_SENDGRID_HOST=sendgrid.url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_HOME=str(home / "prefect-client"),
        )
        enrolled = subprocess.run(
            [sys.executable, "-m", "relance", "enroll", "always", *ANA],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert enrolled.returncode == 0, enrolled.stderr
        with (home / "up.out").open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relance",
                    "up",
                    "--port",
                    str(web_port),
                    *("--prefect-port", str(prefect_port), "--interval", "10"),
                ],
                env=env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        running = Running(
            process,
            env | {"PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api"},
            home,
            f"http://127.0.0.1:{prefect_port}/api",
            f"http://127.0.0.1:{web_port}",
            sendgrid,
            (web_port, prefect_port),
        )
        try:
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_the_schedule_sends_due_emails_with_nobody_triggering_a_run(stack: Running) -> None:
    wait_for("the first email", lambda: stack.sendgrid.requests, stack, timeout=180)
    request = stack.sendgrid.requests[0]
    assert request["personalizations"][0]["to"][0]["email"] == "ana@client.example"

    def finished_runs() -> list[dict[str, Any]] | None:
        runs = stack.post("/flow_runs/filter", {"limit": 50})
        flows = {f["id"]: f["name"] for f in stack.post("/flows/filter", {"limit": 50})}
        for run in runs:
            run["flow"] = flows[run["flow_id"]]
        done = [r for r in runs if r["flow"] == "always" and r["state_type"] == "COMPLETED"]
        return runs if done else None

    runs = wait_for("a completed sequence flow run", finished_runs, stack, timeout=60)
    ticks = [run for run in runs if run["flow"] == "dispatch"]
    assert ticks and all(run["auto_scheduled"] for run in ticks), "a tick was not scheduled"
    assert all(run["deployment_id"] for run in ticks)
    sequence_runs = [run for run in runs if run["flow"] == "always"]
    assert all({"relance", "sequence:always"} <= set(run["tags"]) for run in sequence_runs)

    artifacts = stack.post(
        "/artifacts/filter", {"artifacts": {"key": {"any_": ["relance-tick"]}}, "limit": 50}
    )
    tables = [a for a in artifacts if a["type"] == "table"]
    assert tables, "no relance-tick artifact"
    rows = [row for a in tables for row in _rows(a["data"])]
    sent = [row for row in rows if row["sequence"] == "always" and row["sent"] == 1]
    assert sent and sent[0]["step"] == "email-benchmark", rows
    assert "tick at" in stack.output()
    assert "1 sent" in stack.output()


def _rows(data: Any) -> list[dict[str, Any]]:
    import json

    table = json.loads(data) if isinstance(data, str) else data
    return [dict(row) for row in table]


def test_a_reply_event_runs_the_notify_owner_automation(stack: Running) -> None:
    wait_for("the first email", lambda: stack.sendgrid.requests, stack, timeout=180)
    replied = stack.relance("reply", "ana@client.example")
    assert replied.returncode == 0, replied.stderr

    def notified() -> list[Any]:
        store = Store(f"sqlite:///{stack.home / 'var' / 'relance.db'}")
        try:
            with store.reading() as connection:
                return list(
                    connection.execute(select(events).where(events.c.kind == "owner_notified"))
                )
        finally:
            store.dispose()

    rows = wait_for("the owner_notified event", notified, stack, timeout=120)
    assert rows[0].source == "prefect-automation"
    assert rows[0].data["signal"] == "replied"
    runs = stack.post("/flow_runs/filter", {"limit": 50})
    flows = {f["id"]: f["name"] for f in stack.post("/flows/filter", {"limit": 50})}
    notify = [run for run in runs if flows[run["flow_id"]] == "notify-owner"]
    assert notify and notify[0]["parameters"]["prospect"].startswith("relance.prospect.")


def test_sigint_stops_everything_and_frees_the_ports(stack: Running) -> None:
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=35) == 0, stack.output()
    assert "Stopped." in stack.output()
    for port in stack.ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    leftover = subprocess.run(
        ["pgrep", "-f", str(stack.home)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout.strip() == "", f"processes left: {leftover.stdout}"
