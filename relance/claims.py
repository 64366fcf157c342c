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
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from relance.cadence import calendar_for
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
from relance.enrollments import complete_finished, load_version, prospect_from_db
from relance.prospect import Prospect
from relance.spec import Channel, Sequence
from relance.store import Store
from relance.tables import deliveries, enrollments, prospects, suppressions, touchpoints
from relance.throttle import Caps, SendLog, next_allowed, recipient_domain

MAX_ATTEMPTS = 5
THROTTLE_LOCK = 7_215_001
"""PostgreSQL advisory lock serializing throttled claims."""
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
    message_token: str
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
    """sent | failed | retry | unknown (the provider may have it: see relance/recovery.py)"""
    provider: str
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None


def _not_held() -> ColumnElement[bool]:
    """A paused enrollment holds its chase; its booking touches (a cancellation) still go."""
    return or_(enrollments.c.status != Status.PAUSED.value, touchpoints.c.meeting_id.is_not(None))


def due_groups(store: Store, now: datetime) -> list[DueGroup]:
    """Which steps have touches due at ``now`` (paused chases excluded)."""
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
            _not_held(),
        )
        .group_by(touchpoints.c.sequence_id, touchpoints.c.step_id, touchpoints.c.channel)
        .order_by(func.min(touchpoints.c.due_at), touchpoints.c.sequence_id)
    )
    with store.reading() as connection:
        return [DueGroup(row[0], row[1], row[2], int(row[3])) for row in connection.execute(query)]


def next_due(store: Store) -> datetime | None:
    """The earliest due time among planned touches, paused chases excluded."""
    query = (
        select(func.min(touchpoints.c.due_at))
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .where(touchpoints.c.status == "planned", _not_held())
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
            touchpoints.c.message_token,
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
            prospects.c.timezone_source,
            prospects.c.country,
            prospects.c.region,
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
                _not_held(),
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
    caps: Caps | None = None,
) -> ClaimReport:
    """Take up to ``limit`` due touches of one step, deciding each in this transaction.

    ``caps`` are the sender's throttles (a sequence's own ``throttle`` replaces them): an
    email over a cap waits for the first slot the cap allows, inside the send window.
    """
    report = ClaimReport()
    with store.transaction() as connection:
        rows = _candidates(connection, store, sequence_id, step_id, now, limit)
        sending: list[int] = []
        skipped: set[int] = set()
        log: SendLog | None = None
        for row in rows:
            sequence = load_version(connection, row.sequence_version_id)
            person = prospect_from_db(row, row.deal_value, row.cycle_days)
            calendar = calendar_for(sequence, person)
            channel = Channel(row.channel)
            action = next_action(
                TouchState(
                    channel,
                    row.due_at,
                    booking=row.meeting_id is not None,
                    withdrawal="@cancel-" in row.key,  # key formats: relance/tables.py
                ),
                EnrollmentState(
                    Status(row.enrollment_status),
                    row.enrollment_reason,
                    row.snoozed_until,
                    row.suppressed_reason,
                ),
                now,
                calendar.next_slot,
            )
            effective = sequence_caps(sequence, caps or Caps())
            if isinstance(action, Send) and channel is Channel.EMAIL and effective.active:
                if log is None:
                    log = _send_log(connection, store, now)
                domain = recipient_domain(person.email)
                allowed, cap = next_allowed(effective, log, domain, now)
                if allowed > now:
                    action = Wait(calendar.next_slot(allowed), f"{cap} reached")
                else:
                    log.note(now, domain)
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
                        message_token=row.message_token,
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
                skipped.add(row.enrollment_id)
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
        if skipped:  # a skipped last touch ends its enrollment (suppressed by hand, say)
            complete_finished(connection, skipped, now)
    return report


def sequence_caps(sequence: Sequence, default: Caps) -> Caps:
    """The caps for a sequence's emails: its own ``throttle`` if it has one."""
    own = sequence.throttle
    if own is None:
        return default
    spacing = own.min_spacing
    return Caps(
        hourly_cap=own.hourly_cap,
        daily_cap=own.daily_cap,
        min_spacing=spacing.as_timedelta() if spacing else timedelta(0),
        domain_daily_cap=own.domain_daily_cap,
    )


def _send_log(connection: Connection, store: Store, now: datetime) -> SendLog:
    """The sender's emails of the last 24 hours (claimed, whatever became of them)."""
    if store.skip_locked:
        # Throttled claims take turns, so that two dispatchers cannot both fill the cap.
        connection.execute(select(func.pg_advisory_xact_lock(THROTTLE_LOCK)))
    log = SendLog()
    query = (
        select(touchpoints.c.claimed_at, prospects.c.email)
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        .where(
            touchpoints.c.channel == Channel.EMAIL.value,
            touchpoints.c.status.in_(["sending", "sent", "unknown"]),
            touchpoints.c.claimed_at > now - timedelta(days=1),
        )
    )
    for claimed_at, email in connection.execute(query):
        log.note(claimed_at, recipient_domain(email))
    return log


def queued_sends(store: Store, start: datetime, end: datetime) -> SendLog:
    """Emails sent or planned between ``start`` and ``end``: the queue a new plan joins."""
    log = SendLog()
    when = func.coalesce(touchpoints.c.claimed_at, touchpoints.c.due_at)
    query = (
        select(when.label("at"), prospects.c.email)
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        .where(
            touchpoints.c.channel == Channel.EMAIL.value,
            touchpoints.c.status.in_(["planned", "sending", "sent", "unknown"]),
            when >= start,
            when <= end,
        )
    )
    with store.reading() as connection:
        for row in connection.execute(query):
            at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(str(row.at))
            log.note(
                at.replace(tzinfo=UTC) if at.tzinfo is None else at, recipient_domain(row.email)
            )
    return log


def record(store: Store, claim_id: str, outcomes: list[Outcome], now: datetime) -> None:
    """Close claimed touches: sent, failed (kept with its reason), due again later, or
    ``unknown`` when the provider may have the message but did not say so.

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
        unknown: list[dict[str, Any]] = []
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
            elif status == "unknown":
                unknown.append({**params, "b_reason": outcome.error})
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
        if unknown:
            connection.execute(
                update(touchpoints)
                .where(*owned)
                .values(
                    status="unknown", provider=bindparam("b_provider"), reason=bindparam("b_reason")
                ),
                unknown,
            )
        if logged:
            connection.execute(insert(deliveries), logged)
        closed = [o.touchpoint_id for o in outcomes if o.touchpoint_id in attempts]
        if closed:
            finished = connection.execute(
                select(touchpoints.c.enrollment_id).where(touchpoints.c.id.in_(closed))
            ).scalars()
            complete_finished(connection, finished, now)


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
