"""Test support for the webhook service: a real HTTP server on loopback, and a project
(the shipped sequences and templates, a temporary store) whose emails go through the
official SendGrid client to the fake SendGrid, which validates every request.

    def test_x(web: WebProject) -> None:
        web.enroll("outbound-2w", [prospect])
        web.tick(now)                      # dispatch: claims, sends through the fake
        web.post("/webhooks/...", ...)     # over real HTTP, to `relance serve`'s app
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from relance.catalog import resolve_sequence
from relance.claims import due_groups
from relance.dispatcher import Dispatcher, StepReport
from relance.enrollments import EnrollResult, enroll
from relance.prospect import Prospect
from relance.rendering import template_environment
from relance.runtime import email_sender
from relance.settings import Settings
from relance.store import Store
from relance.web.app import create_app
from tests.fakes.sendgrid_server import FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent
MONDAY = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Monday 2 March 2026, 09:00 in Paris."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class FixedClock:
    now: datetime = MONDAY

    def __call__(self) -> datetime:
        return self.now


@dataclass
class WebProject:
    settings: Settings
    store: Store
    sendgrid: FakeSendGrid
    clock: FixedClock
    server: LiveServer
    dispatcher: Dispatcher
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.server.url, timeout=10)

    def enroll(
        self, sequence_id: str, people: list[Prospect], start: datetime | None = None
    ) -> EnrollResult:
        sequence = resolve_sequence(sequence_id, self.settings)
        begin = start or self.clock.now
        return enroll(self.store, sequence, people, start=begin, now=self.clock.now)

    def tick(self, now: datetime | None = None) -> list[StepReport]:
        """One dispatch tick at ``now`` (default: the clock), as the flow runs it."""
        moment = now or self.clock.now
        return [
            self.dispatcher.run_step(group.sequence_id, group.step_id, now=moment, limit=10_000)
            for group in due_groups(self.store, moment)
        ]

    def advance(self, **delta: float) -> datetime:
        self.clock.now += timedelta(**delta)
        return self.clock.now

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def sent_to(self, email: str) -> list[dict[str, Any]]:
        """Every Mail Send body the fake SendGrid accepted for this address."""
        return [
            body
            for body in self.sendgrid.requests
            if any(
                to.get("email") == email
                for personalization in body.get("personalizations", [])
                for to in personalization.get("to", [])
            )
        ]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebProject]:
    """The shipped project served over real HTTP, emails through the fake SendGrid."""
    with FakeSendGrid() as sendgrid:
        settings = Settings(
            home=ROOT,
            data_dir=tmp_path / "data",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_host=sendgrid.url,
            public_url="https://relance.example.com",
            inbound_secret="inbound-secret",
            calendly_signing_key="calendly-signing-key",
            calcom_secret="calcom-secret",
            claim_chunk=8,
        )
        store = Store(settings.store_url)
        clock = FixedClock()
        dispatcher = Dispatcher(
            store, settings, email_sender(settings), template_environment(settings.templates_path)
        )
        with LiveServer(create_app(settings, store=store, clock=clock)) as server:
            project = WebProject(settings, store, sendgrid, clock, server, dispatcher)
            yield project
            project.client.close()
