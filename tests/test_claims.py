"""Claiming and performing due touches, on SQLite and PostgreSQL: tasks and e-mails, the
send window, held enrollments, channel errors and retries, stale claims, double records."""

from __future__ import annotations

import email
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from store_support import (
    BUSINESS_HOURS,
    T0,
    Project,
    RecordingSender,
    count_rows,
    dispatcher_for,
    people,
    step,
    tick,
    touch_rows,
    write_project,
)

from relance.claims import MAX_ATTEMPTS, Outcome, claim, due_groups, record, recover_stale
from relance.dispatcher import StepReport
from relance.engine import Signal
from relance.enrollments import enroll
from relance.outbox import OutboxSender
from relance.prospect import Prospect
from relance.signals import record_signal
from relance.store import Store
from relance.tables import deliveries, suppressions, tasks, touchpoints

LEASE = timedelta(minutes=10)


def three_channels(root: Path, **fields: Any) -> Project:
    """An e-mail now, a call an hour later, a reminder an hour after that."""
    return write_project(
        root,
        [step("hello", "email"), step("ring", "call"), step("remember", "reminder")],
        **fields,
    )


def one_email(root: Path, **fields: Any) -> Project:
    return write_project(root, [step("hello", "email")], **fields)


def deliveries_of(store: Store, touchpoint_id: int) -> list[tuple[int, str, str, str | None]]:
    with store.reading() as connection:
        return [
            (row.attempt, row.status, row.provider, row.error)
            for row in connection.execute(
                select(deliveries)
                .where(deliveries.c.touchpoint_id == touchpoint_id)
                .order_by(deliveries.c.id)
            )
        ]


def test_due_touches_become_outbox_emails_and_sdr_tasks(store: Store, tmp_path: Path) -> None:
    project = three_channels(tmp_path)
    enroll(
        store,
        project.sequence,
        [Prospect(email="ada@example.com", owner="sdr@example.com")],
        start=T0,
        now=T0,
    )
    outbox = OutboxSender(tmp_path / "outbox", clock=lambda: T0, fsync=False)
    dispatcher = dispatcher_for(store, project, outbox)
    now = T0 + timedelta(hours=2)

    report = tick(store, dispatcher, now)

    assert (report.sent, report.tasks, report.handled) == (1, 2, 3)
    hello, ring, remember = touch_rows(store)
    assert [(r.step_id, r.status, r.provider, r.sent_at) for r in (hello, ring, remember)] == [
        ("hello", "sent", "outbox", now),
        ("ring", "sent", "task", now),
        ("remember", "sent", "task", now),
    ]
    assert hello.provider_message_id == f"<{hello.message_token}@relance.local>"
    assert len(hello.message_token) == 32
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    assert eml.name == f"{hello.id}.eml"
    message = email.message_from_bytes(eml.read_bytes())
    assert (message["To"], message["X-Relance-Step"]) == ("ada@example.com", "hello")
    # The tick's clock, not the outbox's own (T0) nor the wall clock.
    assert parsedate_to_datetime(message["Date"]) == now
    assert deliveries_of(store, hello.id) == [(1, "sent", "outbox", None)]
    with store.reading() as connection:
        created = connection.execute(select(tasks).order_by(tasks.c.id)).all()
    assert [(t.touchpoint_id, t.kind, t.owner, t.due_at, t.status) for t in created] == [
        (ring.id, "call", "sdr@example.com", now, "open"),
        (remember.id, "reminder", "sdr@example.com", now, "open"),
    ]
    assert tick(store, dispatcher, now + timedelta(days=1)).handled == 0


def test_a_touch_due_outside_the_window_is_deferred_to_the_next_slot(
    store: Store, tmp_path: Path
) -> None:
    project = one_email(tmp_path, send_window=BUSINESS_HOURS, timezone="Europe/Paris")
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender)
    evening = T0 + timedelta(hours=9)  # Monday 18:00 in Paris, after the window
    next_morning = T0 + timedelta(days=1)  # Tuesday 09:00 in Paris

    report = tick(store, dispatcher, evening)

    assert (report.deferred, report.sent) == (1, 0)
    assert sender.calls == []
    (touch,) = touch_rows(store)
    assert (touch.status, touch.due_at) == ("planned", next_morning)
    assert touch.moved[-1] == (f"outside the send window: moved to {next_morning.isoformat()}")
    assert due_groups(store, evening) == []
    assert tick(store, dispatcher, next_morning).sent == 1
    assert sender.sent_ids() == [touch.id]


def test_a_paused_enrollments_touches_are_held(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    record_signal(store, "p0000@example.com", Signal.PAUSED, now=T0)
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender)
    later = T0 + timedelta(days=1)

    report = dispatcher.run_step("demo", "hello", now=later, limit=100)

    assert (report.sent, report.handled) == (1, 1)
    held, sent = touch_rows(store)
    assert sender.sent_ids() == [sent.id]
    assert (held.status, held.due_at) == ("planned", T0)
    again = claim(store, sequence_id="demo", step_id="hello", now=later, limit=10, claim_id="x")
    assert (again.claimed, again.held, again.skipped, again.deferred) == ([], 0, 0, 0)
    assert due_groups(store, later) == []


def test_the_claim_rechecks_the_suppression_list(store: Store, tmp_path: Path) -> None:
    """An address suppressed by any route after planning is never mailed."""
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    with store.transaction() as connection:
        connection.execute(
            insert(suppressions),
            {
                "email": "p0001@example.com",
                "reason": "bounced",
                "source": "import",
                "created_at": T0,
            },
        )
    sender = RecordingSender()

    report = tick(store, dispatcher_for(store, project, sender), T0)

    assert (report.sent, report.skipped) == (1, 1)
    first, second = touch_rows(store)
    assert sender.sent_ids() == [first.id]
    assert (second.status, second.reason) == ("skipped", "suppressed: bounced")


def test_run_step_stops_at_its_limit(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(5), start=T0, now=T0)
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender, claim_chunk=2)

    report = dispatcher.run_step("demo", "hello", now=T0, limit=3)

    assert report.sent == 3
    assert len(sender.sent_ids()) == 3
    assert dispatcher.run_step("demo", "hello", now=T0, limit=10).sent == 2
    assert sender.duplicates() == {}


# --- channel errors -------------------------------------------------------------------------


def test_a_transient_error_retries_later_with_a_delivery_row(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    failing, fine = (r.id for r in touch_rows(store))
    sender = RecordingSender(transient=[failing])
    dispatcher = dispatcher_for(store, project, sender)

    report = tick(store, dispatcher, T0)

    assert (report.sent, report.retried, report.failed) == (1, 1, 0)
    touch = next(r for r in touch_rows(store) if r.id == failing)
    assert (touch.status, touch.attempts, touch.claim_id) == ("planned", 1, None)
    assert touch.due_at == T0 + timedelta(seconds=30)
    assert touch.reason == f"retrying: touchpoint {failing}: try later"
    assert deliveries_of(store, failing) == [
        (1, "retry", "fake", f"touchpoint {failing}: try later")
    ]
    assert tick(store, dispatcher, T0 + timedelta(seconds=29)).handled == 0
    sender.transient.clear()
    assert tick(store, dispatcher, T0 + timedelta(seconds=30)).sent == 1
    assert [r.status for r in touch_rows(store)] == ["sent", "sent"]
    assert [d[:2] for d in deliveries_of(store, failing)] == [(1, "retry"), (2, "sent")]
    assert sender.sent_ids() == [fine, failing]


def test_a_provider_retry_after_is_honoured(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    (touch,) = touch_rows(store)
    dispatcher = dispatcher_for(
        store, project, RecordingSender(transient=[touch.id], retry_after=600)
    )

    tick(store, dispatcher, T0)

    assert touch_rows(store)[0].due_at == T0 + timedelta(seconds=600)


def test_transient_errors_give_up_after_the_last_attempt(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    (touch,) = touch_rows(store)
    dispatcher = dispatcher_for(store, project, RecordingSender(transient=[touch.id]))
    now = T0
    delays = []
    for _ in range(MAX_ATTEMPTS):
        tick(store, dispatcher, now)
        (after,) = touch_rows(store)
        if after.status == "planned":
            delays.append((after.due_at - now).total_seconds())
            now = after.due_at

    assert delays == [30.0, 60.0, 120.0, 240.0]
    (touch,) = touch_rows(store)
    assert (touch.status, touch.attempts) == ("failed", MAX_ATTEMPTS)
    assert touch.reason == f"touchpoint {touch.id}: try later"
    assert [d[1] for d in deliveries_of(store, touch.id)] == ["retry"] * 4 + ["failed"]
    assert tick(store, dispatcher, now + timedelta(days=1)).handled == 0


def test_a_permanent_error_fails_the_touch_with_its_reason(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    refused, _ = (r.id for r in touch_rows(store))
    dispatcher = dispatcher_for(store, project, RecordingSender(permanent=[refused]))

    report = tick(store, dispatcher, T0)

    assert (report.sent, report.failed, report.retried) == (1, 1, 0)
    assert report.errors == [f"touchpoint {refused}: touchpoint {refused}: address refused"]
    touch = next(r for r in touch_rows(store) if r.id == refused)
    assert (touch.status, touch.reason) == ("failed", f"touchpoint {refused}: address refused")
    assert deliveries_of(store, refused) == [
        (1, "failed", "fake", f"touchpoint {refused}: address refused")
    ]
    assert tick(store, dispatcher, T0 + timedelta(days=1)).handled == 0


# --- stale claims and double records -----------------------------------------------------------


def test_recover_stale_flags_emails_and_replans_tasks(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("hello", "email"), step("ring", "call", "0d")])
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    now = T0 + timedelta(hours=1)
    email_claim = claim(store, sequence_id="demo", step_id="hello", now=now, limit=5, claim_id="e")
    call_claim = claim(store, sequence_id="demo", step_id="ring", now=now, limit=5, claim_id="c")
    assert len(email_claim.claimed) == len(call_claim.claimed) == 1
    hello, ring = touch_rows(store)
    assert (hello.status, hello.claim_id, hello.claimed_at) == ("sending", "e", now)

    assert recover_stale(store, now + LEASE, LEASE) == {"replanned": 0, "unknown": 0}
    recovered = recover_stale(store, now + LEASE + timedelta(seconds=1), LEASE)

    assert recovered == {"replanned": 1, "unknown": 1}
    hello, ring = touch_rows(store)
    assert (hello.status, hello.reason) == (
        "unknown",
        "dispatcher stopped during the send: check provider",
    )
    assert (ring.status, ring.claim_id) == ("planned", None)
    late = now + LEASE + timedelta(minutes=1)
    record(store, "e", [Outcome(hello.id, "sent", "fake", "late-id")], late)
    assert touch_rows(store)[0].status == "unknown", "a late record does not revive a touch"
    sender = RecordingSender()
    report = tick(store, dispatcher_for(store, project, sender), late)
    assert (report.tasks, report.sent) == (1, 0)
    assert sender.calls == []
    assert count_rows(store, "tasks") == 1


def test_a_task_claim_taken_over_after_its_lease_creates_no_task(
    store: Store, tmp_path: Path
) -> None:
    """The dispatcher that lost its claim to recover_stale writes nothing and does not fail."""
    project = write_project(tmp_path, [step("ring", "call")])
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    dispatcher = dispatcher_for(store, project, RecordingSender())
    lost = claim(store, sequence_id="demo", step_id="ring", now=T0, limit=5, claim_id="lost")
    recover_stale(store, T0 + 2 * LEASE, LEASE)
    report = StepReport("demo", "ring")

    dispatcher._create_tasks(lost.claimed, "lost", T0 + 2 * LEASE, report)

    assert report.tasks == 0
    assert count_rows(store, "tasks") == 0
    assert touch_rows(store)[0].status == "planned"
    assert tick(store, dispatcher, T0 + 2 * LEASE).tasks == 1


def test_record_ignores_outcomes_of_another_or_a_closed_claim(store: Store, tmp_path: Path) -> None:
    project = one_email(tmp_path)
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    claimed = claim(store, sequence_id="demo", step_id="hello", now=T0, limit=5, claim_id="mine")
    (touch,) = (c.touchpoint_id for c in claimed.claimed)

    record(store, "someone-else", [Outcome(touch, "failed", "fake", error="boom")], T0)
    assert touch_rows(store)[0].status == "sending"
    record(store, "mine", [Outcome(touch, "sent", "fake", "id-1")], T0)
    record(store, "mine", [Outcome(touch, "failed", "fake", error="boom")], T0)
    record(store, "mine", [Outcome(touch, "retry", "fake", error="later")], T0)

    (row,) = touch_rows(store)
    assert (row.status, row.provider_message_id, row.reason) == ("sent", "id-1", None)
    assert deliveries_of(store, touch) == [(1, "sent", "fake", None)]


@pytest.mark.parametrize("channel", ["email", "call"])
def test_a_stopped_enrollment_is_never_claimed(store: Store, tmp_path: Path, channel: str) -> None:
    project = write_project(tmp_path, [step("only", channel)])
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    record_signal(store, "p0000@example.com", Signal.STOPPED, now=T0)
    with store.reading() as connection:
        statuses = connection.execute(select(touchpoints.c.status)).scalars().all()
    assert statuses == ["skipped"]
    report = tick(store, dispatcher_for(store, project, RecordingSender()), T0 + timedelta(days=1))
    assert report.handled == 0
    assert count_rows(store, "tasks") == 0
