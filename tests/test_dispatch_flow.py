"""The real dispatch flow on Prefect, over the shipped outbound sequence.

One harness for the session; the clock of Relance is injected (``now``), Prefect's is not.
"""

from __future__ import annotations

import asyncio
import email
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from icalendar import Calendar

from flows.dispatch import dispatch, run_tick
from relance.catalog import resolve_sequence
from relance.engine import Signal
from relance.enrollments import enroll
from relance.notify import emit_prospect_event
from relance.prospect import Prospect
from relance.settings import Settings
from relance.signals import book, record_signal
from relance.store import Store

ROOT = Path(__file__).resolve().parent.parent
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)
"""Monday 2 March 2026 (no holiday in France that week)."""

pytestmark = pytest.mark.prefect


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELANCE_HOME", str(ROOT))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    return Settings()


def people() -> list[Prospect]:
    return [
        Prospect(
            email=f"{name}@client{i}.example",
            first_name=name.title(),
            company=f"Client {i}",
            deal_value=15_000,
            cycle_days=60,
            timezone="Europe/Paris",
            country="FR",
            fields={"industry": "industrie"},
        )
        for i, name in enumerate(["ana", "bruno", "chloe"])
    ]


def eml(settings: Settings) -> dict[str, email.message.Message]:
    return {
        path.stem: email.message_from_bytes(path.read_bytes())
        for path in settings.outbox_path.glob("*.eml")
    }


def test_ticks_send_calls_emails_and_confirmation(prefect_api_url: str, project: Settings) -> None:
    store = Store(project.store_url)
    sequence = resolve_sequence("outbound-2w", project)
    enroll(store, sequence, people(), start=MONDAY + timedelta(hours=8), now=MONDAY)

    first = run_tick(now=MONDAY + timedelta(hours=9, minutes=30))
    assert first["sequences"]["outbound-2w"]["call-intro"]["tasks"] == 3
    assert eml(project) == {}

    reply = record_signal(
        store, "ana@client0.example", Signal.REPLIED, now=MONDAY + timedelta(hours=12)
    )
    assert emit_prospect_event("replied", reply.prospect_id, [c[0] for c in reply.changed])

    second = run_tick(now=MONDAY + timedelta(days=1, hours=9, minutes=30))
    assert second["sequences"]["outbound-2w"]["email-benchmark"]["sent"] == 2
    recipients = sorted(str(message["To"]) for message in eml(project).values())
    assert len(recipients) == 2
    assert not any("ana@" in to for to in recipients)

    meeting_at = MONDAY + timedelta(days=3, hours=13)
    book(
        store,
        "bruno@client1.example",
        starts_at=meeting_at,
        duration=timedelta(minutes=30),
        now=MONDAY + timedelta(days=1, hours=11),
    )
    third = run_tick(now=MONDAY + timedelta(days=1, hours=11, minutes=1))
    assert third["sequences"]["outbound-2w"]["meeting-confirmation"]["sent"] == 1
    invites = [
        Calendar.from_ical(part.get_payload(decode=True))
        for message in eml(project).values()
        for part in message.walk()
        if part.get_content_type() == "text/calendar"
    ]
    assert len(invites) == 1
    event = invites[0].walk("VEVENT")[0]
    assert str(invites[0]["METHOD"]) == "REQUEST"
    assert event.decoded("DTSTART") == meeting_at
    assert "bruno@client1.example" in str(event["ATTENDEE"]).lower()

    later = run_tick(now=MONDAY + timedelta(days=10, hours=9, minutes=30))
    sent_to = [str(m["To"]) for m in eml(project).values()]
    assert not any("ana@" in to for to in sent_to), "a prospect who replied was emailed"
    assert later["sequences"]  # chloe is still being chased


def test_prefect_reads_like_the_yaml(prefect_api_url: str, project: Settings) -> None:
    store = Store(project.store_url)
    sequence = resolve_sequence("outbound-2w", project)
    enroll(store, sequence, people()[:1], start=MONDAY + timedelta(hours=8), now=MONDAY)
    state = asyncio.run(dispatch(now=MONDAY + timedelta(hours=9, minutes=30), return_state=True))
    parent_id = str(state.state_details.flow_run_id)
    api = httpx.Client(base_url=prefect_api_url)
    flows = {f["id"]: f["name"] for f in api.post("/flows/filter", json={"limit": 200}).json()}
    runs = api.post("/flow_runs/filter", json={"limit": 200}).json()
    parent = next(run for run in runs if run["id"] == parent_id)
    tasks = api.post("/task_runs/filter", json={"limit": 200}).json()
    parent_tasks = {task["id"] for task in tasks if task["flow_run_id"] == parent_id}
    children = [run for run in runs if run["parent_task_run_id"] in parent_tasks]
    assert flows[parent["flow_id"]] == "dispatch"
    assert [flows[run["flow_id"]] for run in children] == ["outbound-2w"]
    child_tasks = [task["name"] for task in tasks if task["flow_run_id"] == children[0]["id"]]
    assert child_tasks == ["call-intro batch"]


def test_signals_reach_prefect_as_events(prefect_api_url: str) -> None:
    assert emit_prospect_event("booked", 42, [7], {"source": "test"})
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        response = httpx.post(
            f"{prefect_api_url}/events/filter",
            json={"filter": {"event": {"name": ["relance.prospect.booked"]}}, "limit": 10},
        )
        response.raise_for_status()
        found = [
            e
            for e in response.json()["events"]
            if e["resource"]["prefect.resource.id"] == "relance.prospect.42"
        ]
        if not found:
            time.sleep(0.5)
    assert found, "relance.prospect.booked never reached the Prefect API"
    assert found[0]["related"][0]["prefect.resource.id"] == "relance.enrollment.7"
