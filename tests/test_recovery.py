"""Touches whose outcome is unknown are settled from the provider's events, never resent
blindly; transient provider errors are retried inside the tick, then in later ticks."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fault_support import ProviderLog
from sqlalchemy import select
from store_support import (
    T0,
    Project,
    enrollment_row,
    people,
    step,
    tick,
    touch_rows,
    write_project,
)

from integrations.sendgrid_mail import SendGridSender
from relance.claims import Outcome, claim, record, recover_stale
from relance.dispatcher import Dispatcher
from relance.engagement import MailEvent, MailEventKind, apply_mail_events
from relance.engine import Signal
from relance.enrollments import enroll as enroll_people
from relance.errors import InputError
from relance.recovery import (
    DEFAULT_GRACE,
    Resolution,
    UnknownTouch,
    recover,
    resolve_unknown,
    settle_by_hand,
    unknown_touches,
)
from relance.store import Store
from relance.tables import deliveries, enrollments, prospects, touchpoints

LEASE = timedelta(minutes=10)
LATER = T0 + LEASE + timedelta(minutes=1)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return write_project(tmp_path, [step("hello", "email")])


def enroll(store: Store, project: Project, count: int) -> None:
    enroll_people(store, project.sequence, people(count), start=T0, now=T0)


def _claim(store: Store, count: int, now: datetime = T0, claim_id: str = "dead") -> list[int]:
    """Claim ``count`` due touches as a dispatcher that then dies (nothing recorded)."""
    report = claim(
        store, sequence_id="demo", step_id="hello", now=now, limit=count, claim_id=claim_id
    )
    return [c.touchpoint_id for c in report.claimed]


def _event(
    store: Store,
    touchpoint_id: int,
    kind: MailEventKind,
    number: int,
    signal: Signal | None = None,
) -> MailEvent:
    """Event ``number`` of the provider about a touch, ``number`` minutes after T0."""
    with store.reading() as connection:
        email = connection.execute(
            select(prospects.c.email)
            .join(enrollments, enrollments.c.prospect_id == prospects.c.id)
            .join(touchpoints, touchpoints.c.enrollment_id == enrollments.c.id)
            .where(touchpoints.c.id == touchpoint_id)
        ).scalar_one()
    return MailEvent(
        external_id=f"sendgrid:event-{number}",
        kind=kind,
        source="sendgrid",
        email=email,
        occurred_at=T0 + timedelta(minutes=number),
        touchpoint_id=touchpoint_id,
        signal=signal,
    )


def _statuses(store: Store) -> dict[int, str]:
    return {row.id: row.status for row in touch_rows(store)}


def test_events_recorded_while_the_touch_was_sending_settle_it_once_unknown(
    store: Store, project: Project
) -> None:
    enroll(store, project, 3)
    delivered, dropped, silent = _claim(store, 3)
    apply_mail_events(
        store,
        [
            _event(store, delivered, MailEventKind.DELIVERED, 1),
            _event(store, dropped, MailEventKind.DROPPED, 2, Signal.BOUNCED),
        ],
        now=T0 + timedelta(minutes=3),
    )
    assert set(_statuses(store).values()) == {"sending"}, "events alone do not end a claim"

    counts = recover(store, LATER, lease=LEASE)

    assert counts == {
        "stale_replanned": 0,
        "stale_unknown": 3,
        "confirmed": 1,
        "dropped": 1,
        "replanned": 0,
        "left": 1,
    }
    rows = {row.id: row for row in touch_rows(store)}
    assert (rows[delivered].status, rows[delivered].reason) == (
        "sent",
        "confirmed by the provider's events",
    )
    assert rows[delivered].sent_at == T0 + timedelta(minutes=1)
    assert (rows[dropped].status, rows[dropped].reason) == ("failed", "dropped by the provider")
    assert rows[silent].status == "unknown"
    assert resolve_unknown(store, LATER) == Resolution(left=1), "settling twice changes nothing"


def test_a_silent_touch_is_planned_again_after_the_grace_when_later_mail_was_reported(
    store: Store, project: Project
) -> None:
    enroll(store, project, 3)
    lost = _claim(store, 2)
    (reported,) = _claim(store, 1, T0 + timedelta(hours=1), claim_id="live")
    record(store, "live", [Outcome(reported, "sent", "sendgrid", "m1")], T0 + timedelta(hours=1))
    recover_stale(store, LATER, LEASE)
    apply_mail_events(store, [_event(store, reported, MailEventKind.DELIVERED, 90)], now=LATER)

    early = T0 + DEFAULT_GRACE - timedelta(minutes=1)
    assert resolve_unknown(store, early) == Resolution(left=2), "events may still come"
    after = T0 + DEFAULT_GRACE + timedelta(minutes=1)
    assert resolve_unknown(store, after) == Resolution(replanned=2)

    rows = [row for row in touch_rows(store) if row.id in lost]
    assert [(row.status, row.due_at, row.claim_id) for row in rows] == [
        ("planned", after, None)
    ] * 2
    assert {row.reason for row in rows} == {"planned again: the provider never reported it in 96 h"}


def test_reports_of_earlier_mail_only_do_not_prove_the_feed_covers_a_touch(
    store: Store, project: Project
) -> None:
    enroll(store, project, 3)
    (reported,) = _claim(store, 1, claim_id="live")
    record(store, "live", [Outcome(reported, "sent", "sendgrid", "m1")], T0)
    apply_mail_events(store, [_event(store, reported, MailEventKind.DELIVERED, 1)], now=T0)
    _claim(store, 2, T0 + timedelta(hours=1))
    recover_stale(store, T0 + timedelta(hours=2), LEASE)

    assert resolve_unknown(store, T0 + timedelta(days=30)) == Resolution(left=2)


def test_bounces_and_opens_of_later_mail_do_not_prove_that_deliveries_are_reported(
    store: Store, project: Project
) -> None:
    """A webhook set to post only some kinds of event says nothing of a delivered message."""
    enroll(store, project, 4)
    _claim(store, 2)
    bounced, opened = _claim(store, 2, T0 + timedelta(hours=1), claim_id="live")
    record(
        store,
        "live",
        [Outcome(tid, "sent", "sendgrid", f"m{tid}") for tid in (bounced, opened)],
        T0 + timedelta(hours=1),
    )
    recover_stale(store, T0 + timedelta(hours=2), LEASE)
    apply_mail_events(
        store,
        [
            _event(store, bounced, MailEventKind.BOUNCED, 61, Signal.BOUNCED),
            _event(store, opened, MailEventKind.OPENED, 62),
        ],
        now=T0 + timedelta(hours=2),
    )

    assert resolve_unknown(store, T0 + timedelta(days=30)) == Resolution(left=2)


def test_without_any_event_unknown_touches_wait_for_a_person(
    store: Store, project: Project
) -> None:
    enroll(store, project, 3)
    got_it, did_not = _claim(store, 2)
    recover_stale(store, LATER, LEASE)
    much_later = T0 + timedelta(days=30)

    assert resolve_unknown(store, much_later) == Resolution(left=2)
    rows = {row.id: row for row in touch_rows(store)}
    owners = {row.id: enrollment_row(store, row.enrollment_id).prospect_id for row in rows.values()}
    reason = "dispatcher stopped during the send: check provider"
    assert unknown_touches(store) == [
        UnknownTouch(tid, rows[tid].enrollment_id, "demo", "hello", owners[tid], T0, reason)
        for tid in (got_it, did_not)
    ]

    assert settle_by_hand(store, [got_it], sent=True, now=much_later) == [got_it]
    assert settle_by_hand(store, [did_not], sent=False, now=much_later) == [did_not]
    rows = {row.id: row for row in touch_rows(store)}
    assert (rows[got_it].status, rows[got_it].reason) == ("sent", "marked sent in review")
    assert (rows[did_not].status, rows[did_not].due_at) == ("planned", much_later)
    with pytest.raises(InputError, match=f"not waiting for review \\(not unknown\\): {got_it}$"):
        settle_by_hand(store, [got_it], sent=False, now=much_later)
    assert unknown_touches(store) == []


# --- the dispatcher: in-tick retries and unanswered requests ------------------------------


@pytest.fixture
def provider() -> Iterator[ProviderLog]:
    with ProviderLog() as fake:
        yield fake


class Sleeps(list[float]):
    """Stands in for time.sleep: remembers the waits, waits for nothing."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _dispatcher(
    store: Store, project: Project, host: str, sleeps: Sleeps, timeout: float = 5.0
) -> Dispatcher:
    sender = SendGridSender("SG.fake-key", host=host, timeout=timeout, max_workers=4)
    return Dispatcher(store, project.settings(claim_chunk=16), sender, project.env, sleep=sleeps)


def test_a_503_is_sent_again_in_the_tick_and_reaches_the_provider_once(
    store: Store, project: Project, provider: ProviderLog
) -> None:
    enroll(store, project, 5)
    provider.fail_next(2, 503)
    sleeps = Sleeps()

    report = tick(store, _dispatcher(store, project, provider.url, sleeps), T0)

    assert (report.sent, report.retried, report.failed) == (5, 0, 0)
    assert sleeps == [0.5]
    assert sorted(provider.accepted_ids()) == sorted(_statuses(store))
    assert set(_statuses(store).values()) == {"sent"}


def test_a_short_retry_after_is_honoured_in_the_tick(
    store: Store, project: Project, provider: ProviderLog
) -> None:
    enroll(store, project, 1)
    provider.fail_next(1, 429, retry_after=2)
    sleeps = Sleeps()

    assert tick(store, _dispatcher(store, project, provider.url, sleeps), T0).sent == 1
    assert sleeps == [2.0]


def test_a_long_retry_after_is_left_to_a_later_tick(
    store: Store, project: Project, provider: ProviderLog
) -> None:
    enroll(store, project, 1)
    provider.fail_next(1, 429, retry_after=60)
    sleeps = Sleeps()
    dispatcher = _dispatcher(store, project, provider.url, sleeps)

    assert tick(store, dispatcher, T0).retried == 1
    (row,) = touch_rows(store)
    assert (row.status, row.due_at) == ("planned", T0 + timedelta(seconds=60))
    assert sleeps == []
    assert tick(store, dispatcher, row.due_at).sent == 1
    assert len(provider.accepted_ids()) == 1


def test_retries_used_up_in_the_tick_leave_the_touch_due_again_after_a_backoff(
    store: Store, project: Project, provider: ProviderLog
) -> None:
    enroll(store, project, 1)
    provider.fail_next(3, 503)
    sleeps = Sleeps()
    dispatcher = _dispatcher(store, project, provider.url, sleeps)

    assert tick(store, dispatcher, T0).retried == 1
    assert sleeps == [0.5, 1.0]
    (row,) = touch_rows(store)
    assert (row.status, row.due_at, row.attempts) == ("planned", T0 + timedelta(seconds=30), 1)
    assert row.reason == f"retrying: touchpoint {row.id}: SendGrid answered 503 Service Unavailable"
    assert tick(store, dispatcher, row.due_at).sent == 1
    assert provider.accepted_ids() == [row.id]


def test_a_refused_connection_is_retried_in_the_tick_then_due_again(
    store: Store, project: Project
) -> None:
    enroll(store, project, 1)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sleeps = Sleeps()

    report = tick(store, _dispatcher(store, project, f"http://127.0.0.1:{port}", sleeps), T0)

    assert report.retried == 1
    assert sleeps == [0.5, 1.0]
    (row,) = touch_rows(store)
    assert row.status == "planned"
    assert "SendGrid unreachable" in row.reason


def test_a_request_left_without_an_answer_is_unknown_and_never_sent_again(
    store: Store, project: Project, provider: ProviderLog
) -> None:
    """The provider took the message but its answer came after the sender's timeout."""
    enroll(store, project, 1)
    provider.delay = 1.0
    sleeps = Sleeps()
    dispatcher = _dispatcher(store, project, provider.url, sleeps, timeout=0.2)

    report = tick(store, dispatcher, T0)

    assert (report.unknown, report.sent, report.retried, sleeps) == (1, 0, 0, [])
    (row,) = touch_rows(store)
    assert row.status == "unknown"
    assert "no answer from SendGrid after the request was sent" in row.reason
    with store.reading() as connection:
        assert list(connection.execute(select(deliveries.c.status)).scalars()) == ["unknown"]
    provider.delay = 0.0
    tick(store, dispatcher, T0 + timedelta(days=1))
    assert provider.accepted_ids() == [row.id], "never resent"

    provider.post_events(store, T0 + timedelta(days=1))
    assert _statuses(store) == {row.id: "sent"}
