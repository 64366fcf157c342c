"""Recording what happens to a prospect: replies, bookings, bounces, pauses, resumes.

Each signal is one transaction: the event row (deduplicated by its external id), the
enrollment transitions decided by ``engine.apply_signal``, and their effect on the
planned touches. A touch that is not yet claimed when the transaction commits is never
sent afterwards (the claim re-checks the enrollment in its own transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from relance.addresses import address_key
from relance.cadence import plan_touchpoints
from relance.engine import LIVE, SUPPRESSING, Signal, Status, Transition, apply_signal
from relance.enrollments import load_version, prospect_from_db
from relance.errors import InputError, NotFoundError, StateError
from relance.lifecycle import advance_stage
from relance.qualification import Stage
from relance.spec import Channel
from relance.store import Store
from relance.tables import (
    MAX_ROW_ID,
    enrollments,
    events,
    meetings,
    prospects,
    suppressions,
    touchpoints,
)


@dataclass
class SignalOutcome:
    """What recording a signal changed."""

    prospect_id: int | None
    signal: Signal
    duplicate: bool = False
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    """(enrollment id, status before, status after)."""
    meeting_id: int | None = None
    suppressed: bool = False


def find_prospect(connection: Connection, ref: str) -> Row[Any]:
    """A prospect by email address or numeric id."""
    ref = ref.strip()
    column = prospects.c.id if ref.isdigit() else prospects.c.email
    value: Any = int(ref) if ref.isdigit() else address_key(ref)
    if ref.isdigit() and value > MAX_ROW_ID:
        raise NotFoundError(f"no prospect {ref!r} (give an email address or a prospect id)")
    row = connection.execute(select(prospects).where(column == value)).first()
    if row is None:
        raise NotFoundError(f"no prospect {ref!r} (give an email address or a prospect id)")
    return row


def _enrollments_for(
    connection: Connection, prospect_id: int, sequence_id: str | None, statuses: tuple[Status, ...]
) -> list[Row[Any]]:
    query = select(enrollments).where(
        enrollments.c.prospect_id == prospect_id,
        enrollments.c.status.in_([status.value for status in statuses]),
    )
    if sequence_id is not None:
        query = query.where(enrollments.c.sequence_id == sequence_id)
    # Lock them (PostgreSQL; SQLite serializes writers): a signal recorded at the same time
    # waits, then reads the state this one leaves, not the one both saw before either wrote.
    query = query.order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id)
    return list(connection.execute(query.with_for_update(key_share=True)))


def _record_event(
    connection: Connection,
    *,
    kind: str,
    source: str,
    now: datetime,
    prospect_id: int | None,
    enrollment_id: int | None = None,
    external_id: str | None = None,
    occurred_at: datetime | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Insert an event; False when ``external_id`` was already recorded (a replay)."""
    if external_id is not None:
        seen = connection.execute(
            select(events.c.id).where(events.c.external_id == external_id)
        ).first()
        if seen is not None:
            return False
    try:
        with connection.begin_nested():
            connection.execute(
                insert(events),
                {
                    "prospect_id": prospect_id,
                    "enrollment_id": enrollment_id,
                    "kind": kind,
                    "source": source,
                    "external_id": external_id,
                    "occurred_at": occurred_at or now,
                    "recorded_at": now,
                    "data": data or {},
                },
            )
    except IntegrityError:
        return False
    return True


def skip_planned(connection: Connection, enrollment_id: int, reason: str) -> int:
    """Mark every still-planned touch of an enrollment as never to be sent."""
    return connection.execute(
        update(touchpoints)
        .where(touchpoints.c.enrollment_id == enrollment_id, touchpoints.c.status == "planned")
        .values(status="skipped", reason=reason)
    ).rowcount


def replan(
    connection: Connection, enrollment: Row[Any], prospect: Row[Any], start: datetime
) -> int:
    """Re-plan the still-planned timed touches of an enrollment from ``start``."""
    planned = list(
        connection.execute(
            select(touchpoints.c.id, touchpoints.c.step_id, touchpoints.c.position)
            .where(
                touchpoints.c.enrollment_id == enrollment.id,
                touchpoints.c.status == "planned",
                touchpoints.c.meeting_id.is_(None),
            )
            .order_by(touchpoints.c.position)
        )
    )
    if not planned:
        return 0
    sequence = load_version(connection, enrollment.sequence_version_id)
    previous = [step.id for step in sequence.steps[: planned[0].position] if step.timed]
    person = prospect_from_db(prospect, enrollment.deal_value, enrollment.cycle_days)
    plan = {
        touch.step_id: touch
        for touch in plan_touchpoints(
            sequence, person, start, after_step=previous[-1] if previous else None
        )
    }
    for row in planned:
        touch = plan.get(row.step_id)
        if touch is not None:
            connection.execute(
                update(touchpoints)
                .where(touchpoints.c.id == row.id)
                .values(due_at=touch.due_at, moved=touch.moved or None)
            )
    return len(planned)


def suppress(connection: Connection, email: str, reason: str, source: str, now: datetime) -> bool:
    """Put an address on the suppression list; False if it was already there."""
    email = address_key(email)
    if connection.execute(
        select(suppressions.c.email).where(suppressions.c.email == email)
    ).first():
        return False
    try:
        with connection.begin_nested():  # another signal may list it at the same moment
            connection.execute(
                insert(suppressions),
                {"email": email, "reason": reason, "source": source, "created_at": now},
            )
    except IntegrityError:
        return False
    return True


def record_signal(
    store: Store,
    ref: str,
    signal: Signal,
    *,
    now: datetime,
    sequence_id: str | None = None,
    source: str = "cli",
    external_id: str | None = None,
    occurred_at: datetime | None = None,
    until: datetime | None = None,
    data: dict[str, Any] | None = None,
    reason: str | None = None,
) -> SignalOutcome:
    """Record ``signal`` for the prospect ``ref`` (email or id) and apply it.

    ``reason`` is kept on the enrollments it changes (default: the signal's name).

    Bounces, unsubscribes and spam reports suppress the address even when no prospect
    is known by it. A replayed ``external_id`` changes nothing.
    """
    if signal is Signal.BOOKED:
        raise InputError("use book() to record a booking: it needs the meeting time")
    if signal is Signal.SNOOZED and until is None:
        raise InputError("a snooze needs the date it ends")
    with store.transaction() as connection:
        try:
            prospect = find_prospect(connection, ref)
        except NotFoundError:
            if signal not in SUPPRESSING or "@" not in ref:
                raise
            outcome = SignalOutcome(None, signal)
            if not _record_event(
                connection,
                kind=signal.value,
                source=source,
                now=now,
                prospect_id=None,
                external_id=external_id,
                occurred_at=occurred_at,
                data={**(data or {}), "email_domain": ref.rsplit("@", 1)[-1]},
            ):
                outcome.duplicate = True
                return outcome
            outcome.suppressed = suppress(connection, ref, signal.value, source, now)
            return outcome
        outcome = SignalOutcome(prospect.id, signal)
        scope = (*LIVE, Status.BOOKED) if signal in SUPPRESSING else LIVE
        if signal is Signal.REPLIED:  # an answer to the last touch: kept on its enrollment
            scope = (*LIVE, Status.COMPLETED)
        targets = _enrollments_for(connection, prospect.id, sequence_id, scope)
        if _recorded(connection, external_id):
            # A replay (providers retry webhooks) changes nothing, whatever happened since;
            # checked once the enrollments are locked, so that a copy arriving at the same
            # moment sees the first one's event.
            outcome.duplicate = True
            return outcome
        if not targets and signal not in SUPPRESSING:
            where = f" in {sequence_id}" if sequence_id else ""
            raise StateError(f"prospect {prospect.email} has no active or paused enrollment{where}")
        moves = _fitting(connection, targets, signal)
        if not _record_event(
            connection,
            kind=signal.value,
            source=source,
            now=now,
            prospect_id=prospect.id,
            enrollment_id=moves[0][0].id if len(moves) == 1 else None,
            external_id=external_id,
            occurred_at=occurred_at,
            data={**(data or {}), **({"until": until.isoformat()} if until else {})},
        ):
            outcome.duplicate = True
            return outcome
        for enrollment, transition in moves:
            status = Status(enrollment.status)
            values: dict[str, Any] = {"status": transition.status.value, "updated_at": now}
            if transition.status is not status or signal is not Signal.SNOOZED:
                values["reason"] = reason or signal.value
            if signal is Signal.SNOOZED:
                values["snoozed_until"] = until
            if signal is Signal.RESUMED:
                values["snoozed_until"] = None
            connection.execute(
                update(enrollments).where(enrollments.c.id == enrollment.id).values(values)
            )
            if transition.touches == "skip":
                skip_planned(connection, enrollment.id, signal.value)
            elif transition.touches == "replan":
                replan(connection, enrollment, prospect, now)
            elif signal is Signal.SNOOZED and until is not None:
                replan(connection, enrollment, prospect, until)
            outcome.changed.append((enrollment.id, status.value, transition.status.value))
        if signal in SUPPRESSING:
            outcome.suppressed = suppress(connection, prospect.email, signal.value, source, now)
        return outcome


def _recorded(connection: Connection, external_id: str | None) -> bool:
    """True when an event with this provider id was already recorded."""
    if external_id is None:
        return False
    found = connection.execute(select(events.c.id).where(events.c.external_id == external_id))
    return found.first() is not None


def _fitting(
    connection: Connection, targets: list[Row[Any]], signal: Signal
) -> list[tuple[Row[Any], Transition]]:
    """The enrollments ``signal`` applies to, with the transition it causes to each.

    A prospect paused in one sequence and active in another is paused (or resumed) where
    that fits; StateError only when the signal fits none of them.
    """
    moves: list[tuple[Row[Any], Transition]] = []
    refusal: StateError | None = None
    for enrollment in targets:
        reply_action = "pause"
        if signal is Signal.REPLIED:
            reply_action = load_version(connection, enrollment.sequence_version_id).exit.reply
        try:
            transition = apply_signal(Status(enrollment.status), signal, reply_action)
        except StateError as error:
            refusal = refusal or error
            continue
        moves.append((enrollment, transition))
    if refusal is not None and not moves:
        raise refusal
    return moves


def book(
    store: Store,
    ref: str,
    *,
    starts_at: datetime,
    duration: timedelta,
    now: datetime,
    sequence_id: str | None = None,
    source: str = "cli",
    external_id: str | None = None,
    location: str | None = None,
    join_url: str | None = None,
) -> SignalOutcome:
    """Record a booked meeting: stop chasing, and plan the meeting confirmation now.

    The confirmation (and its reminder before the meeting, if the step asks for one)
    comes from the most recently enrolled live sequence that has a meeting_confirmation
    step; every live enrollment of the prospect stops chasing. The prospect's stage moves
    to meeting (never back, if it was further already).
    """
    if starts_at.tzinfo is None:
        raise InputError("the meeting time needs a time zone offset, e.g. 2026-12-01T10:00+01:00")
    if duration <= timedelta(0):
        raise InputError(f"expected a positive meeting duration, got {duration}")
    with store.transaction() as connection:
        prospect = find_prospect(connection, ref)
        outcome = SignalOutcome(prospect.id, Signal.BOOKED)
        targets = _enrollments_for(connection, prospect.id, sequence_id, LIVE)
        if _recorded(connection, external_id):  # after the locks: see record_signal
            outcome.duplicate = True
            return outcome
        if not targets:
            where = f" in {sequence_id}" if sequence_id else ""
            raise StateError(f"prospect {prospect.email} has no active or paused enrollment{where}")
        if not _record_event(
            connection,
            kind="booked",
            source=source,
            now=now,
            prospect_id=prospect.id,
            enrollment_id=targets[0].id,
            external_id=external_id,
            data={"starts_at": starts_at.isoformat(), "minutes": duration.total_seconds() // 60},
        ):
            outcome.duplicate = True
            return outcome
        advance_stage(connection, prospect.id, Stage.MEETING, now=now, source="booking")
        confirmed = False
        for enrollment in targets:
            transition = apply_signal(Status(enrollment.status), Signal.BOOKED)
            connection.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment.id)
                .values(status=transition.status.value, reason="booked", updated_at=now)
            )
            skip_planned(connection, enrollment.id, "booked")
            outcome.changed.append((enrollment.id, enrollment.status, transition.status.value))
            sequence = load_version(connection, enrollment.sequence_version_id)
            steps = [s for s in sequence.steps if s.channel is Channel.MEETING_CONFIRMATION]
            if confirmed or not steps:
                continue
            confirmed = True
            meeting_id = int(
                connection.execute(
                    insert(meetings).returning(meetings.c.id),
                    {
                        "enrollment_id": enrollment.id,
                        "starts_at": starts_at,
                        "ends_at": starts_at + duration,
                        "status": "booked",
                        "source": source,
                        "external_id": external_id,
                        "location": location,
                        "join_url": join_url,
                        "created_at": now,
                    },
                ).scalar_one()
            )
            outcome.meeting_id = meeting_id
            rows = []
            for step in steps:
                position = sequence.steps.index(step)
                rows.append((f"{step.id}@meeting-{meeting_id}", step.id, position, now))
                if step.remind_before is not None:
                    remind_at = starts_at - step.remind_before.as_timedelta()
                    if remind_at > now:
                        rows.append(
                            (f"{step.id}@reminder-{meeting_id}", step.id, position, remind_at)
                        )
            connection.execute(
                insert(touchpoints),
                [
                    {
                        "enrollment_id": enrollment.id,
                        "key": key,
                        "step_id": step_id,
                        "channel": Channel.MEETING_CONFIRMATION.value,
                        "position": position,
                        "sequence_id": sequence.id,
                        "due_at": due_at,
                        "status": "planned",
                        "meeting_id": meeting_id,
                        "created_at": now,
                    }
                    for key, step_id, position, due_at in rows
                ],
            )
        return outcome
