"""Claiming due touches and recording their outcomes: the only place a send is decided.

``claim`` runs in one transaction: it selects due touches of one step (``FOR UPDATE ...
SKIP LOCKED`` on PostgreSQL, so concurrent dispatchers take disjoint rows; SQLite
serializes the whole transaction), re-reads each enrollment's state and suppression,
asks ``engine.next_action``, and marks the touches it will perform as ``sending``. A
reply, booking, bounce or unsubscribe committed before that transaction means the touch
is never sent. ``record`` closes each claimed touch as sent, failed or due again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update

from relance.engine import (
    EnrollmentState,
    Hold,
    Send,
    Skip,
    Status,
    TouchState,
    Wait,
    next_action,
)
from relance.enrollments import load_version, prospect_from_db
from relance.prospect import Prospect
from relance.spec import Channel, Sequence
from relance.store import Store
from relance.tables import deliveries, enrollments, prospects, suppressions, touchpoints
from relance.workdays import work_calendar

MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30.0


@dataclass(frozen=True)
class DueGroup:
    """Touches of one step that are due now."""

    sequence_id: str
    step_id: str
    channel: str
    count: int


@dataclass(frozen=True)
class Claimed:
    """A touch this dispatcher now owns and must perform, then record."""

    touchpoint_id: int
    enrollment_id: int
    prospect_id: int
    key: str
    step_id: str
    channel: Channel
    attempts: int
    meeting_id: int | None
    reply_token: str
    prospect: Prospect
    sequence: Sequence


@dataclass
class ClaimReport:
    claimed: list[Claimed] = field(default_factory=list)
    skipped: int = 0
    deferred: int = 0
    held: int = 0


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed touch."""

    touchpoint_id: int
    status: str
    """sent | failed | retry"""
    provider: str
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None


def due_groups(store: Store, now: datetime) -> list[DueGroup]:
    """Which steps have touches due at ``now`` (paused enrollments excluded)."""
    query = (
        select(
            touchpoints.c.sequence_id,
            touchpoints.c.step_id,
            touchpoints.c.channel,
            func.count().label("count"),
        )
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .where(
            touchpoints.c.status == "planned",
            touchpoints.c.due_at <= now,
            enrollments.c.status != Status.PAUSED.value,
        )
        .group_by(touchpoints.c.sequence_id, touchpoints.c.step_id, touchpoints.c.channel)
        .order_by(touchpoints.c.sequence_id, func.min(touchpoints.c.position))
    )
    with store.reading() as connection:
        return [DueGroup(row[0], row[1], row[2], int(row[3])) for row in connection.execute(query)]


def next_due(store: Store) -> datetime | None:
    """The earliest due time among planned touches of enrollments that are not paused."""
    query = (
        select(func.min(touchpoints.c.due_at))
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .where(touchpoints.c.status == "planned", enrollments.c.status != Status.PAUSED.value)
    )
    with store.reading() as connection:
        value: datetime | None = connection.execute(query).scalar()
    return value


def _candidates(
    connection: Connection, store: Store, sequence_id: str, step_id: str, now: datetime, limit: int
) -> list[Any]:
    query = (
        select(
            touchpoints.c.id,
            touchpoints.c.enrollment_id,
            touchpoints.c.key,
            touchpoints.c.step_id,
            touchpoints.c.channel,
            touchpoints.c.due_at,
            touchpoints.c.attempts,
            touchpoints.c.meeting_id,
            touchpoints.c.moved,
            enrollments.c.status.label("enrollment_status"),
            enrollments.c.reason.label("enrollment_reason"),
            enrollments.c.snoozed_until,
            enrollments.c.sequence_version_id,
            enrollments.c.reply_token,
            enrollments.c.deal_value,
            enrollments.c.cycle_days,
            enrollments.c.prospect_id,
            prospects.c.email,
            prospects.c.first_name,
            prospects.c.last_name,
            prospects.c.company,
            prospects.c.title,
            prospects.c.phone,
            prospects.c.timezone,
            prospects.c.country,
            prospects.c.locale,
            prospects.c.owner,
            prospects.c.fields,
            suppressions.c.reason.label("suppressed_reason"),
        )
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        .outerjoin(suppressions, suppressions.c.email == prospects.c.email)
        .where(
            and_(
                touchpoints.c.status == "planned",
                touchpoints.c.due_at <= now,
                touchpoints.c.sequence_id == sequence_id,
                touchpoints.c.step_id == step_id,
                enrollments.c.status != Status.PAUSED.value,
            )
        )
        .order_by(touchpoints.c.due_at, touchpoints.c.id)
        .limit(limit)
    )
    if store.skip_locked:
        # Lock the enrollment too: a reply recorded meanwhile waits for this claim to commit.
        query = query.with_for_update(skip_locked=True, of=[touchpoints, enrollments])
    return list(connection.execute(query))


def claim(
    store: Store,
    *,
    sequence_id: str,
    step_id: str,
    now: datetime,
    limit: int,
    claim_id: str,
) -> ClaimReport:
    """Take up to ``limit`` due touches of one step, deciding each in this transaction."""
    report = ClaimReport()
    with store.transaction() as connection:
        rows = _candidates(connection, store, sequence_id, step_id, now, limit)
        sending: list[int] = []
        for row in rows:
            sequence = load_version(connection, row.sequence_version_id)
            person = prospect_from_db(row, row.deal_value, row.cycle_days)
            calendar = work_calendar(
                person.country or sequence.country,
                sequence.holidays,
                sequence.send_window,
                person.timezone or sequence.timezone,
            )
            channel = Channel(row.channel)
            action = next_action(
                TouchState(channel, row.due_at, booking=row.meeting_id is not None),
                EnrollmentState(
                    Status(row.enrollment_status),
                    row.enrollment_reason,
                    row.snoozed_until,
                    row.suppressed_reason,
                ),
                now,
                calendar.next_slot,
            )
            if isinstance(action, Send):
                sending.append(row.id)
                report.claimed.append(
                    Claimed(
                        touchpoint_id=row.id,
                        enrollment_id=row.enrollment_id,
                        prospect_id=row.prospect_id,
                        key=row.key,
                        step_id=row.step_id,
                        channel=channel,
                        attempts=row.attempts + 1,
                        meeting_id=row.meeting_id,
                        reply_token=row.reply_token,
                        prospect=person,
                        sequence=sequence,
                    )
                )
            elif isinstance(action, Wait):
                report.deferred += 1
                moved = [
                    *(row.moved or []),
                    f"{action.reason}: moved to {action.until.isoformat()}",
                ]
                connection.execute(
                    update(touchpoints)
                    .where(touchpoints.c.id == row.id)
                    .values(due_at=action.until, moved=moved[-10:])
                )
            elif isinstance(action, Skip):
                report.skipped += 1
                connection.execute(
                    update(touchpoints)
                    .where(touchpoints.c.id == row.id)
                    .values(status="skipped", reason=action.reason)
                )
            elif isinstance(action, Hold):  # pragma: no cover - paused rows are not selected
                report.held += 1
        if sending:
            taken = set(
                connection.execute(
                    update(touchpoints)
                    .where(touchpoints.c.id.in_(sending), touchpoints.c.status == "planned")
                    .values(
                        status="sending",
                        claim_id=claim_id,
                        claimed_at=now,
                        attempts=touchpoints.c.attempts + 1,
                    )
                    .returning(touchpoints.c.id)
                ).scalars()
            )
            # Only what this transaction moved to 'sending' is ours, whatever the locking.
            report.claimed = [c for c in report.claimed if c.touchpoint_id in taken]
    return report


def record(store: Store, claim_id: str, outcomes: list[Outcome], now: datetime) -> None:
    """Close claimed touches: sent, failed (kept with its reason), or due again later.

    Only touches still ``sending`` under this ``claim_id`` change: recording twice, or
    after the touch was recovered, is a no-op.
    """
    if not outcomes:
        return
    owned = (
        touchpoints.c.id == bindparam("b_id"),
        touchpoints.c.claim_id == claim_id,
        touchpoints.c.status == "sending",
    )
    with store.transaction() as connection:
        query = select(touchpoints.c.id, touchpoints.c.attempts).where(
            touchpoints.c.id.in_([o.touchpoint_id for o in outcomes]),
            touchpoints.c.claim_id == claim_id,
            touchpoints.c.status == "sending",
        )
        if store.skip_locked:
            query = query.with_for_update()
        attempts = {row.id: row.attempts for row in connection.execute(query)}
        sent: list[dict[str, Any]] = []
        retry: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        logged: list[dict[str, Any]] = []
        for outcome in outcomes:
            if outcome.touchpoint_id not in attempts:
                continue  # not ours any more: recorded already, or recovered
            attempt = attempts[outcome.touchpoint_id]
            params: dict[str, Any] = {"b_id": outcome.touchpoint_id, "b_provider": outcome.provider}
            status = outcome.status
            if status == "sent":
                sent.append({**params, "b_message_id": outcome.provider_message_id})
            elif status == "retry" and attempt < MAX_ATTEMPTS:
                delay = max(outcome.retry_after or 0.0, RETRY_BASE_SECONDS * 2 ** (attempt - 1))
                retry.append(
                    {
                        **params,
                        "b_due": now + timedelta(seconds=delay),
                        "b_reason": f"retrying: {outcome.error}",
                    }
                )
            else:
                status = "failed"
                failed.append({**params, "b_reason": outcome.error})
            logged.append(
                {
                    "touchpoint_id": outcome.touchpoint_id,
                    "attempt": attempt,
                    "provider": outcome.provider,
                    "status": status,
                    "provider_message_id": outcome.provider_message_id,
                    "error": outcome.error,
                    "created_at": now,
                }
            )
        if sent:
            connection.execute(
                update(touchpoints)
                .where(*owned)
                .values(
                    status="sent",
                    sent_at=now,
                    provider=bindparam("b_provider"),
                    provider_message_id=bindparam("b_message_id"),
                ),
                sent,
            )
        if retry:
            connection.execute(
                update(touchpoints)
                .where(*owned)
                .values(
                    status="planned",
                    claim_id=None,
                    provider=bindparam("b_provider"),
                    due_at=bindparam("b_due"),
                    reason=bindparam("b_reason"),
                ),
                retry,
            )
        if failed:
            connection.execute(
                update(touchpoints)
                .where(*owned)
                .values(
                    status="failed", provider=bindparam("b_provider"), reason=bindparam("b_reason")
                ),
                failed,
            )
        if logged:
            connection.execute(insert(deliveries), logged)


def recover_stale(store: Store, now: datetime, lease: timedelta) -> dict[str, int]:
    """Touches left ``sending`` by a dispatcher that died, older than ``lease``.

    SDR tasks are created in the same transaction that records them, so a stale task
    touch never produced a task: it is planned again. A stale email may or may not have
    reached the provider: it is flagged ``unknown`` for review, never resent blindly.
    """
    counts: dict[str, int] = defaultdict(int)
    cutoff = now - lease
    with store.transaction() as connection:
        stale = touchpoints.c.status == "sending", touchpoints.c.claimed_at < cutoff
        email_channels = [Channel.EMAIL.value, Channel.MEETING_CONFIRMATION.value]
        counts["replanned"] = connection.execute(
            update(touchpoints)
            .where(*stale, touchpoints.c.channel.not_in(email_channels))
            .values(status="planned", claim_id=None)
        ).rowcount
        counts["unknown"] = connection.execute(
            update(touchpoints)
            .where(*stale, touchpoints.c.channel.in_(email_channels))
            .values(status="unknown", reason="dispatcher stopped during the send: check provider")
        ).rowcount
    return dict(counts)
