"""Recording what happens to a prospect, on SQLite and PostgreSQL: replies, pauses, resumes,
snoozes, stops, bounces and unsubscribes, bookings, and enrolling itself."""

from __future__ import annotations

import email
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from store_support import (
    BUSINESS_HOURS,
    T0,
    Clock,
    Project,
    count_rows,
    dispatcher_for,
    enrollment_row,
    enrollment_status,
    people,
    step,
    tick,
    touch_rows,
    write_project,
)

from relance.cadence import plan_touchpoints
from relance.claims import due_groups, next_due
from relance.dispatcher import Dispatcher
from relance.engine import Signal, Status
from relance.enrollments import enroll
from relance.errors import InputError, NotFoundError, StateError
from relance.outbox import OutboxSender
from relance.prospect import Prospect
from relance.signals import book, record_signal
from relance.store import Store
from relance.tables import (
    enrollments,
    events,
    meetings,
    prospects,
    sequence_versions,
    suppressions,
    tasks,
)
from relance.workdays import work_calendar

ADA = "ada@example.com"


def chase(root: Path, sequence_id: str = "chase", **fields: Any) -> Project:
    """email now, call two days later, email three days after that, and a confirmation."""
    return write_project(
        root,
        [
            step("hello", "email", "0d"),
            step("ring", "call", "2d"),
            step("follow-up", "email", "3d"),
            step("confirm", "meeting_confirmation", remind_before="1h"),
        ],
        sequence_id=sequence_id,
        **fields,
    )


def enroll_ada(store: Store, project: Project, *, at: Clock | None = None) -> int:
    now = at.now if at else T0
    result = enroll(store, project.sequence, [Prospect(email=ADA)], start=now, now=now)
    assert result.already_active == [] and result.suppressed == []
    return result.enrolled[0][1]


def outbox_dispatcher(store: Store, project: Project) -> tuple[OutboxSender, Dispatcher]:
    outbox = OutboxSender(project.root / "outbox", clock=lambda: T0, fsync=False)
    return outbox, dispatcher_for(store, project, outbox)


# --- reply, pause, resume, snooze, stop ------------------------------------------------------


def test_a_reply_pauses_the_enrollment_and_holds_its_touches(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    planned = {r.id: r.due_at for r in touch_rows(store, enrollment_id)}

    outcome = record_signal(store, ADA, Signal.REPLIED, now=T0, source="inbound")

    assert outcome.changed == [(enrollment_id, "active", "paused")]
    assert outcome.duplicate is False and outcome.suppressed is False
    row = enrollment_row(store, enrollment_id)
    assert (row.status, row.reason) == ("paused", "replied")
    touches = touch_rows(store, enrollment_id)
    assert {r.status for r in touches} == {"planned"}
    assert {r.id: r.due_at for r in touches} == planned, "held touches keep their due times"
    later = T0 + timedelta(days=30)
    assert due_groups(store, later) == []
    assert next_due(store) is None
    _, dispatcher = outbox_dispatcher(store, project)
    report = tick(store, dispatcher, later)
    assert report.handled == 0
    assert not (tmp_path / "outbox").exists()


def test_a_reply_stops_when_the_exit_rule_says_stop(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path, exit={"reply": "stop"})
    enrollment_id = enroll_ada(store, project)

    outcome = record_signal(store, ADA, Signal.REPLIED, now=T0)

    assert outcome.changed == [(enrollment_id, "active", "stopped")]
    assert enrollment_status(store, enrollment_id) is Status.STOPPED
    assert {(r.status, r.reason) for r in touch_rows(store, enrollment_id)} == {
        ("skipped", "replied")
    }
    with pytest.raises(StateError, match="no active or paused enrollment"):
        record_signal(store, ADA, Signal.RESUMED, now=T0)


def test_resume_replans_the_remaining_touches_from_now_inside_the_window(
    store: Store, tmp_path: Path
) -> None:
    project = chase(tmp_path, send_window=BUSINESS_HOURS, timezone="Europe/Paris")
    sequence = project.sequence
    enrollment_id = enroll_ada(store, project)
    _, dispatcher = outbox_dispatcher(store, project)
    tick(store, dispatcher, T0)
    record_signal(store, ADA, Signal.PAUSED, now=T0 + timedelta(hours=1))
    resumed_at = T0 + timedelta(days=12, hours=11)  # Saturday 14 March, 20:00 in Paris

    outcome = record_signal(store, ADA, Signal.RESUMED, now=resumed_at)

    assert outcome.changed == [(enrollment_id, "paused", "active")]
    touches = touch_rows(store, enrollment_id)
    assert [(r.step_id, r.status) for r in touches] == [
        ("hello", "sent"),
        ("ring", "planned"),
        ("follow-up", "planned"),
    ]
    expected = plan_touchpoints(sequence, Prospect(email=ADA), resumed_at, after_step="hello")
    assert [r.due_at for r in touches[1:]] == [t.due_at for t in expected]
    calendar = work_calendar(
        sequence.country, sequence.holidays, sequence.send_window, sequence.timezone
    )
    for row in touches[1:]:
        assert row.due_at >= resumed_at
        assert calendar.next_slot(row.due_at) == row.due_at, "re-planned outside the window"
    assert touches[1].due_at < touches[2].due_at
    assert enrollment_row(store, enrollment_id).snoozed_until is None


def test_a_snooze_moves_the_planned_touches_after_its_date(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    _, dispatcher = outbox_dispatcher(store, project)
    tick(store, dispatcher, T0)
    until = T0 + timedelta(days=20)

    outcome = record_signal(store, ADA, Signal.SNOOZED, now=T0, until=until)

    assert outcome.changed == [(enrollment_id, "active", "active")]
    row = enrollment_row(store, enrollment_id)
    assert (row.status, row.snoozed_until) == ("active", until)
    planned = [r for r in touch_rows(store, enrollment_id) if r.status == "planned"]
    assert [r.step_id for r in planned] == ["ring", "follow-up"]
    assert all(r.due_at >= until for r in planned)
    assert due_groups(store, until - timedelta(minutes=1)) == []
    with pytest.raises(InputError, match="a snooze needs the date it ends"):
        record_signal(store, ADA, Signal.SNOOZED, now=T0)


def test_stop_skips_every_planned_touch_and_keeps_what_was_sent(
    store: Store, tmp_path: Path
) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    _, dispatcher = outbox_dispatcher(store, project)
    tick(store, dispatcher, T0)

    record_signal(store, ADA, Signal.STOPPED, now=T0 + timedelta(hours=1), reason="not a fit")

    row = enrollment_row(store, enrollment_id)
    assert (row.status, row.reason) == ("stopped", "not a fit")
    assert [(r.step_id, r.status, r.reason) for r in touch_rows(store, enrollment_id)] == [
        ("hello", "sent", None),
        ("ring", "skipped", "stopped"),
        ("follow-up", "skipped", "stopped"),
    ]
    assert next_due(store) is None


def test_pause_and_resume_that_do_not_fit_are_refused_and_change_nothing(
    store: Store, tmp_path: Path
) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    with pytest.raises(StateError, match="the enrollment is active, not paused"):
        record_signal(store, ADA, Signal.RESUMED, now=T0)
    record_signal(store, ADA, Signal.PAUSED, now=T0)
    with pytest.raises(StateError, match="the enrollment is already paused"):
        record_signal(store, ADA, Signal.PAUSED, now=T0)
    assert enrollment_status(store, enrollment_id) is Status.PAUSED
    assert count_rows(store, "events") == 1, "a refused signal leaves no event behind"
    with pytest.raises(NotFoundError, match=r"no prospect 'bob@example\.com'"):
        record_signal(store, "bob@example.com", Signal.REPLIED, now=T0)
    with pytest.raises(InputError, match="use book"):
        record_signal(store, ADA, Signal.BOOKED, now=T0)


def test_pause_and_resume_apply_to_the_enrollments_they_fit(store: Store, tmp_path: Path) -> None:
    """A prospect paused in one sequence and active in another is paused everywhere."""
    first = enroll_ada(store, chase(tmp_path, "first"))
    second = enroll_ada(store, chase(tmp_path, "second", allow_concurrent=True))
    record_signal(store, ADA, Signal.PAUSED, now=T0, sequence_id="first")

    outcome = record_signal(store, ADA, Signal.PAUSED, now=T0)

    assert outcome.changed == [(second, "active", "paused")]
    assert enrollment_status(store, first) is Status.PAUSED
    outcome = record_signal(store, ADA, Signal.RESUMED, now=T0, sequence_id="second")
    assert outcome.changed == [(second, "paused", "active")]
    outcome = record_signal(store, ADA, Signal.RESUMED, now=T0)
    assert outcome.changed == [(first, "paused", "active")]


# --- bounces, unsubscribes, spam reports ---------------------------------------------------


@pytest.mark.parametrize("signal", [Signal.BOUNCED, Signal.UNSUBSCRIBED, Signal.SPAM_REPORT])
def test_suppressing_signals_stop_and_suppress_the_address(
    store: Store, tmp_path: Path, signal: Signal
) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)

    outcome = record_signal(store, ADA.upper(), signal, now=T0, source="sendgrid")

    assert outcome.suppressed is True
    assert outcome.changed == [(enrollment_id, "active", "stopped")]
    assert {r.status for r in touch_rows(store, enrollment_id)} == {"skipped"}
    with store.reading() as connection:
        listed = connection.execute(select(suppressions)).one()
    assert (listed.email, listed.reason, listed.source) == (ADA, signal.value, "sendgrid")
    result = enroll(store, project.sequence, [Prospect(email=ADA)], start=T0, now=T0)
    assert (result.enrolled, result.suppressed) == ([], [ADA])


def test_a_bounce_for_an_unknown_address_still_suppresses_it(store: Store, tmp_path: Path) -> None:
    outcome = record_signal(
        store, "Ghost@Example.com", Signal.BOUNCED, now=T0, source="sendgrid", external_id="sg-1"
    )

    assert (outcome.prospect_id, outcome.suppressed, outcome.changed) == (None, True, [])
    with store.reading() as connection:
        assert connection.execute(select(suppressions.c.email)).scalars().all() == [
            "ghost@example.com"
        ]
        event = connection.execute(select(events)).one()
    assert (event.kind, event.prospect_id, event.external_id) == ("bounced", None, "sg-1")
    assert event.data == {"email_domain": "Example.com"}
    replay = record_signal(
        store, "ghost@example.com", Signal.BOUNCED, now=T0, source="sendgrid", external_id="sg-1"
    )
    assert replay.duplicate is True
    assert count_rows(store, "events") == 1
    project = chase(tmp_path)
    result = enroll(
        store, project.sequence, [Prospect(email="ghost@example.com")], start=T0, now=T0
    )
    assert result.suppressed == ["ghost@example.com"]
    assert count_rows(store, "prospects") == 0


def test_a_suppressing_signal_also_stops_a_booked_enrollment(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    book(store, ADA, starts_at=T0 + timedelta(days=2), duration=timedelta(minutes=30), now=T0)

    record_signal(store, ADA, Signal.UNSUBSCRIBED, now=T0)

    assert enrollment_status(store, enrollment_id) is Status.STOPPED
    assert {r.status for r in touch_rows(store, enrollment_id)} == {"skipped"}


# --- replays -------------------------------------------------------------------------------


def test_a_replayed_external_id_is_a_no_op(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)
    record_signal(store, ADA, Signal.REPLIED, now=T0, external_id="<reply-1@mail>")
    record_signal(store, ADA, Signal.RESUMED, now=T0 + timedelta(hours=1))

    replay = record_signal(
        store, ADA, Signal.REPLIED, now=T0 + timedelta(hours=2), external_id="<reply-1@mail>"
    )

    assert (replay.duplicate, replay.changed) == (True, [])
    assert enrollment_status(store, enrollment_id) is Status.ACTIVE
    with store.reading() as connection:
        kinds = connection.execute(select(events.c.kind).order_by(events.c.id)).scalars().all()
    assert kinds == ["replied", "resumed"]


def test_a_replay_after_the_enrollment_stopped_is_still_a_no_op(
    store: Store, tmp_path: Path
) -> None:
    """Providers retry webhooks: the second delivery of a stopping reply must not fail."""
    project = chase(tmp_path, exit={"reply": "stop"})
    enroll_ada(store, project)
    record_signal(store, ADA, Signal.REPLIED, now=T0, external_id="<reply-1@mail>")

    replay = record_signal(store, ADA, Signal.REPLIED, now=T0, external_id="<reply-1@mail>")

    assert replay.duplicate is True
    starts_at = T0 + timedelta(days=2)
    other = chase(tmp_path, "other")
    refused = enroll(store, other.sequence, [Prospect(email=ADA)], start=T0, now=T0)
    assert [str(why) for _, why in refused.refused] == ["replied: in chase, not resumed"]
    enroll(store, other.sequence, [Prospect(email="bob@example.com")], start=T0, now=T0)
    bob = "bob@example.com"
    book(store, bob, starts_at=starts_at, duration=timedelta(hours=1), now=T0, external_id="cal-1")
    again = book(
        store, bob, starts_at=starts_at, duration=timedelta(hours=1), now=T0, external_id="cal-1"
    )
    assert again.duplicate is True
    assert count_rows(store, "meetings") == 1


# --- bookings ------------------------------------------------------------------------------


def test_a_booking_stops_every_live_enrollment_and_plans_the_confirmation(
    store: Store, tmp_path: Path
) -> None:
    with_confirmation = chase(tmp_path, "with-confirmation")
    without = write_project(
        tmp_path, [step("only", "email", "1d")], sequence_id="without", allow_concurrent=True
    )
    first = enroll_ada(store, with_confirmation)
    clock = Clock()
    clock.advance(hours=1)
    second = enroll_ada(store, without, at=clock)
    record_signal(store, ADA, Signal.PAUSED, now=clock.now, sequence_id="without")
    starts_at = T0 + timedelta(days=3)

    outcome = book(
        store,
        ADA,
        starts_at=starts_at,
        duration=timedelta(minutes=45),
        now=clock.now,
        source="calendly",
        external_id="cal-42",
        join_url="https://meet.example.com/abc",
    )

    assert sorted(outcome.changed) == [(first, "active", "booked"), (second, "paused", "booked")]
    assert enrollment_status(store, first) is Status.BOOKED
    assert enrollment_status(store, second) is Status.BOOKED
    with store.reading() as connection:
        meeting = connection.execute(select(meetings)).one()
    assert outcome.meeting_id == meeting.id
    assert (meeting.enrollment_id, meeting.starts_at, meeting.ends_at) == (
        first,
        starts_at,
        starts_at + timedelta(minutes=45),
    )
    assert (meeting.source, meeting.external_id, meeting.status) == ("calendly", "cal-42", "booked")
    touches = touch_rows(store, first)
    chase_touches = [r for r in touches if r.meeting_id is None]
    assert {(r.status, r.reason) for r in chase_touches} == {("skipped", "booked")}
    booking = sorted(
        ((r.key, r.channel, r.due_at, r.status) for r in touches if r.meeting_id is not None),
        key=lambda item: item[2],
    )
    assert booking == [
        (f"confirm@meeting-{meeting.id}", "meeting_confirmation", clock.now, "planned"),
        (
            f"confirm@reminder-{meeting.id}",
            "meeting_confirmation",
            starts_at - timedelta(hours=1),
            "planned",
        ),
    ]
    assert {r.status for r in touch_rows(store, second)} == {"skipped"}

    _, dispatcher = outbox_dispatcher(store, with_confirmation)
    tick(store, dispatcher, clock.now)
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes())
    assert message["X-Relance-Step"] == "confirm"
    parts: list[Message] = list(message.walk())
    invites = [p for p in parts if p.get_content_type() == "text/calendar"]
    assert len(invites) == 1
    invite = invites[0].get_payload(decode=True)
    assert isinstance(invite, bytes) and b"METHOD:REQUEST" in invite

    tick(store, dispatcher, starts_at - timedelta(hours=1))
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
    assert {r.status for r in touch_rows(store, first) if r.meeting_id is not None} == {"sent"}


def test_a_booking_too_close_for_its_reminder_plans_only_the_confirmation(
    store: Store, tmp_path: Path
) -> None:
    project = chase(tmp_path)
    enrollment_id = enroll_ada(store, project)

    outcome = book(
        store, ADA, starts_at=T0 + timedelta(minutes=30), duration=timedelta(hours=1), now=T0
    )

    keys = [r.key for r in touch_rows(store, enrollment_id) if r.meeting_id is not None]
    assert keys == [f"confirm@meeting-{outcome.meeting_id}"]


def test_a_booking_needs_a_live_enrollment_and_a_proper_time(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enroll_ada(store, project)
    with pytest.raises(InputError, match="needs a time zone offset"):
        book(store, ADA, starts_at=T0.replace(tzinfo=None), duration=timedelta(hours=1), now=T0)
    with pytest.raises(InputError, match="positive meeting duration"):
        book(store, ADA, starts_at=T0, duration=timedelta(0), now=T0)
    book(store, ADA, starts_at=T0 + timedelta(days=1), duration=timedelta(hours=1), now=T0)
    with pytest.raises(StateError, match="no active or paused enrollment"):
        book(store, ADA, starts_at=T0 + timedelta(days=2), duration=timedelta(hours=1), now=T0)


# --- enrolling ---------------------------------------------------------------------------


def test_enrolling_twice_reports_already_active(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    first = enroll(store, project.sequence, people(3), start=T0, now=T0)
    assert [email for email, _ in first.enrolled] == [p.email for p in people(3)]
    assert first.touchpoints == 9

    again = enroll(store, project.sequence, [*people(4), people(1)[0]], start=T0, now=T0)

    assert [email for email, _ in again.enrolled] == ["p0003@example.com"]
    assert again.already_active == [
        "p0000@example.com",
        "p0001@example.com",
        "p0002@example.com",
        "p0000@example.com",
    ]
    assert count_rows(store, "enrollments") == 4
    assert count_rows(store, "touchpoints") == 12
    record_signal(store, "p0000@example.com", Signal.STOPPED, now=T0)
    third = enroll(store, project.sequence, people(1), start=T0, now=T0)
    assert third.enrolled == []
    assert [(email, str(why)) for email, why in third.refused] == [
        ("p0000@example.com", "stopped: in chase")
    ]


def test_enrolling_pins_the_sequence_version(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    changed = chase(tmp_path, name="Chase, reworded")
    enroll(store, changed.sequence, people(2)[1:], start=T0, now=T0)
    enroll(store, changed.sequence, people(3)[2:], start=T0, now=T0)
    with store.reading() as connection:
        pinned = connection.execute(
            select(prospects.c.email, sequence_versions.c.version, sequence_versions.c.spec)
            .join(enrollments, enrollments.c.prospect_id == prospects.c.id)
            .join(sequence_versions, sequence_versions.c.id == enrollments.c.sequence_version_id)
            .order_by(prospects.c.email)
        ).all()
    assert [(email, version, spec["name"]) for email, version, spec in pinned] == [
        ("p0000@example.com", 1, "Sequence chase"),
        ("p0001@example.com", 2, "Chase, reworded"),
        ("p0002@example.com", 2, "Chase, reworded"),
    ]


def test_a_suppressed_address_is_refused(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    record_signal(store, "p0001@example.com", Signal.UNSUBSCRIBED, now=T0)

    result = enroll(store, project.sequence, people(3), start=T0, now=T0)

    assert [email for email, _ in result.enrolled] == ["p0000@example.com", "p0002@example.com"]
    assert result.suppressed == ["p0001@example.com"]
    with store.reading() as connection:
        emails = connection.execute(select(prospects.c.email)).scalars().all()
    assert sorted(emails) == ["p0000@example.com", "p0002@example.com"]


def test_enrolling_is_atomic(store: Store, tmp_path: Path) -> None:
    """A prospect whose plan cannot be made (here: a time zone that does not exist) fails
    the whole enrollment: nothing of the prospects before it is written."""
    project = chase(tmp_path)
    broken = Prospect.model_construct(
        **{**Prospect(email="broken@example.com").model_dump(), "timezone": "Mars/Olympus"}
    )

    with pytest.raises(KeyError):
        enroll(store, project.sequence, [*people(3), broken], start=T0, now=T0)

    for table in ("prospects", "enrollments", "touchpoints", "sequence_versions", "events"):
        assert count_rows(store, table) == 0, table
    result = enroll(store, project.sequence, people(3), start=T0, now=T0)
    assert len(result.enrolled) == 3


def test_a_sequence_with_calls_creates_tasks_for_the_owner(store: Store, tmp_path: Path) -> None:
    project = chase(tmp_path)
    enroll(
        store, project.sequence, [Prospect(email=ADA, owner="sdr@example.com")], start=T0, now=T0
    )
    _, dispatcher = outbox_dispatcher(store, project)
    tick(store, dispatcher, T0 + timedelta(days=2))
    with store.reading() as connection:
        task = connection.execute(select(tasks)).one()
    assert (task.kind, task.owner, task.status) == ("call", "sdr@example.com", "open")
    assert task.body == "Call ada@example.com: objective of ring\n"
