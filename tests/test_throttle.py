"""Sender throttles: the pure rolling-window rules, then as claims apply them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app
from relance.enrollments import enroll
from relance.store import Store
from relance.throttle import Caps, SendLog, next_allowed
from tests.store_support import (
    BUSINESS_HOURS,
    T0,
    RecordingSender,
    dispatcher_for,
    people,
    step,
    tick,
    touch_rows,
    write_project,
)


def log_of(*minutes: int, domain: str = "client.example") -> SendLog:
    log = SendLog()
    for minute in minutes:
        log.note(T0 + timedelta(minutes=minute), domain)
    return log


def test_no_caps_allow_now() -> None:
    assert next_allowed(Caps(), log_of(0, 1, 2), "a.example", T0) == (T0, "")


def test_an_hourly_cap_waits_for_the_oldest_send_to_leave_the_hour() -> None:
    now = T0 + timedelta(minutes=30)
    log = log_of(0, 10, 20)
    assert next_allowed(Caps(hourly_cap=4), log, "x", now) == (now, "")
    assert next_allowed(Caps(hourly_cap=3), log, "x", now) == (
        T0 + timedelta(hours=1),
        "hourly cap of 3",
    )
    assert next_allowed(Caps(hourly_cap=2), log, "x", now)[0] == T0 + timedelta(minutes=70)


def test_daily_cap_spacing_and_domain_cap_take_the_latest_limit() -> None:
    now = T0 + timedelta(minutes=30)
    log = log_of(0, 29)
    log.note(T0 + timedelta(minutes=5), "other.example")
    assert next_allowed(Caps(daily_cap=3), log, "x", now) == (
        T0 + timedelta(days=1),
        "daily cap of 3",
    )
    assert next_allowed(Caps(min_spacing=timedelta(minutes=2)), log, "x", now) == (
        T0 + timedelta(minutes=31),
        "120 s spacing",
    )
    assert next_allowed(Caps(domain_daily_cap=2), log, "client.example", now) == (
        T0 + timedelta(days=1),
        "daily cap of 2 for client.example",
    )
    assert next_allowed(Caps(domain_daily_cap=2), log, "other.example", now) == (now, "")


def test_a_capped_email_moves_to_the_next_allowed_slot_inside_the_window(
    store: Store, tmp_path: Path
) -> None:
    project = write_project(
        tmp_path, [step("intro", "email")], send_window=BUSINESS_HOURS, timezone="UTC"
    )
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender, sender_hourly_cap=3)
    enroll(store, project.sequence, people(5), start=T0 + timedelta(hours=7), now=T0)
    late = T0 + timedelta(hours=9)  # Monday 17:00 UTC: 30 minutes before the window closes
    report = tick(store, dispatcher, late)
    assert (report.sent, report.deferred) == (3, 2)
    waiting = [row for row in touch_rows(store) if row.status == "planned"]
    # The cap frees at 18:00, after the window: the touches move to Tuesday 09:00.
    assert {row.due_at for row in waiting} == {T0.replace(day=3, hour=9)}
    assert all("hourly cap of 3 reached" in row.moved[-1] for row in waiting)
    assert tick(store, dispatcher, T0.replace(day=3, hour=9)).sent == 2


def test_a_sequence_throttle_replaces_the_settings_caps(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("intro", "email")], throttle={"min_spacing": "10m"})
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender, sender_hourly_cap=100)
    enroll(store, project.sequence, people(3), start=T0, now=T0)
    assert tick(store, dispatcher, T0).sent == 1
    assert tick(store, dispatcher, T0 + timedelta(minutes=5)).sent == 0
    assert tick(store, dispatcher, T0 + timedelta(minutes=10)).sent == 1


def test_meeting_confirmations_are_never_throttled(store: Store, tmp_path: Path) -> None:
    from relance.signals import book

    project = write_project(
        tmp_path, [step("intro", "email"), step("confirm", "meeting_confirmation")]
    )
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender, sender_daily_cap=1)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    assert tick(store, dispatcher, T0).sent == 1
    book(
        store,
        "p0001@example.com",
        starts_at=T0 + timedelta(days=2),
        duration=timedelta(minutes=30),
        now=T0,
    )
    report = tick(store, dispatcher, T0 + timedelta(minutes=1))
    assert report.sent == 1
    assert [m.step_id for m in sender.sent] == ["intro", "confirm"]


def test_plan_forecasts_a_cap_from_the_emails_already_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_project(tmp_path, [step("intro", "email"), step("next", "email", "1d")])
    settings = project.settings()
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "demo.yaml").write_text(
        yaml.safe_dump(project.sequence.model_dump(mode="json", exclude_none=True))
    )
    enroll(Store(settings.store_url), project.sequence, people(3), start=T0, now=T0)
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(settings.data_dir))
    arguments = ["plan", "demo", "--start", T0.isoformat(), "--json"]
    free = json.loads(CliRunner().invoke(app, arguments).stdout)
    assert [touch["due_at"] for touch in free] == [
        "2026-03-02T08:00:00+00:00",
        "2026-03-03T08:00:00+00:00",
    ]
    monkeypatch.setenv("RELANCE_SENDER_HOURLY_CAP", "3")
    capped = json.loads(CliRunner().invoke(app, arguments).stdout)
    # Three emails already wait at 08:00: the fourth goes when the first leaves the hour...
    assert capped[0]["due_at"] == "2026-03-02T09:00:00+00:00"
    assert capped[0]["moved"][-1] == (
        "hourly cap of 3 reached by the emails already queued: moved to 2026-03-02 09:00 UTC"
    )
    # ... and so does the next day's, queued behind the same three.
    assert capped[1]["due_at"] == "2026-03-03T09:00:00+00:00"
