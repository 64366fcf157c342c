"""Meetings booked through a scheduling provider: created, rescheduled, cancelled.

Calendly and Cal.com (``integrations/``) translate their webhooks into one
``BookingEvent`` (``relance/bookings.py``); ``apply_booking_event`` records it once and
changes the store::

    created      book(): every live sequence stops chasing, the confirmation is planned.
    rescheduled  the meeting moves: its planned reminder is skipped, an updated invitation
                 (same UID, SEQUENCE + 1, METHOD:REQUEST) goes out if one was already
                 sent, and the reminder is planned again before the new time.
    superseded   Calendly's half of a reschedule (the old invitee, cancelled with
                 rescheduled=true; the new time comes as the new invitee's own event, in
                 either order): the planned reminder of the old time is skipped.
    cancelled    the meeting is cancelled and its planned mail skipped; if an invitation
                 was sent, a cancellation (METHOD:CANCEL, same UID, higher SEQUENCE)
                 withdraws it. The booked sequences are paused ("meeting cancelled"), the
                 steps the booking skipped are held again, and the prospect's owner gets a
                 call task to re-book (``relance/rebooking.py``): nothing restarts by
                 itself.

Relance follows the prospects it enrolled: a booking from an address it does not know,
or from a prospect with no live sequence, is answered and changes nothing (no prospect
is created from a calendar).

Every event is recorded once (``events.external_id``, from the provider's booking id):
a provider retrying a webhook changes nothing the second time. Touch keys of a meeting
are listed in ``relance/tables.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from relance.bookings import (
    BookingEvent,
    BookingKind,
    BookingResult,
    MeetingOutcome,
    booking_key,
)
from relance.enrollments import load_version
from relance.errors import NotFoundError, StateError
from relance.rebooking import pause_booked, rebook_task
from relance.signals import book
from relance.spec import Channel
from relance.store import Store
from relance.tables import enrollments, events, meetings, prospects, touchpoints

INVITED = ("sent", "sending", "unknown")
"""Touch statuses after which the prospect may hold our invitation."""


def apply_booking_event(store: Store, event: BookingEvent, *, now: datetime) -> MeetingOutcome:
    """Record ``event`` once and apply it (see the module docstring)."""
    if event.kind is BookingKind.CREATED:
        return _book(store, event, now)
    try:
        if event.kind is BookingKind.RESCHEDULED:
            # A reschedule of a booking Relance never saw (or cancelled) is a booking.
            return _move(store, event, now) or _book(store, event, now)
        if event.kind is BookingKind.SUPERSEDED:
            return _supersede(store, event, now)
        return _cancel(store, event, now)
    except IntegrityError:  # a copy of this event committed first: it did the work
        return MeetingOutcome(BookingResult.DUPLICATE)


# --- created ---------------------------------------------------------------------------


def _book(store: Store, event: BookingEvent, now: datetime) -> MeetingOutcome:
    assert event.starts_at is not None and event.ends_at is not None  # checked by BookingEvent
    key = booking_key(event.provider, event.external_id)
    try:
        booked = book(
            store,
            event.email,
            starts_at=event.starts_at,
            duration=event.ends_at - event.starts_at,
            now=now,
            source=event.provider,
            external_id=key,
            location=event.location,
            join_url=event.join_url,
        )
    except NotFoundError:
        return MeetingOutcome(BookingResult.UNKNOWN_PROSPECT)
    except StateError:
        return MeetingOutcome(BookingResult.NOT_FOLLOWED)
    if booked.duplicate:
        return MeetingOutcome(BookingResult.DUPLICATE, booked.prospect_id)
    changed = [enrollment_id for enrollment_id, _, _ in booked.changed]
    meeting_id = booked.meeting_id
    if meeting_id is None and changed:
        # No sequence confirms meetings: keep the meeting anyway, so that its
        # cancellation or reschedule finds it.
        meeting_id = _keep_meeting(store, event, key, changed[0], now)
    return MeetingOutcome(BookingResult.BOOKED, booked.prospect_id, meeting_id, changed)


def _keep_meeting(
    store: Store, event: BookingEvent, key: str, enrollment_id: int, now: datetime
) -> int | None:
    assert event.starts_at is not None and event.ends_at is not None
    try:
        with store.transaction() as connection:
            return int(
                connection.execute(
                    insert(meetings).returning(meetings.c.id),
                    {
                        "enrollment_id": enrollment_id,
                        "starts_at": event.starts_at,
                        "ends_at": event.ends_at,
                        "status": "booked",
                        "source": event.provider,
                        "external_id": key,
                        "location": event.location,
                        "join_url": event.join_url,
                        "created_at": now,
                    },
                ).scalar_one()
            )
    except IntegrityError:  # the same booking, kept by a copy of this event meanwhile
        return None


# --- rescheduled -----------------------------------------------------------------------


def _move(store: Store, event: BookingEvent, now: datetime) -> MeetingOutcome | None:
    """Move the meeting of the previous booking; None when there is none to move."""
    assert event.starts_at is not None and event.ends_at is not None
    new_key = booking_key(event.provider, event.external_id)
    old_key = booking_key(event.provider, event.previous_external_id or event.external_id)
    marker = f"{old_key}#rescheduled"
    if new_key == old_key:  # the provider kept the id: each new time is its own event
        marker += "@" + event.starts_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    with store.transaction() as connection:
        meeting = _meeting(connection, event.provider, old_key)
        if _recorded(connection, marker):
            return MeetingOutcome(BookingResult.DUPLICATE)
        if meeting is None or meeting.status != "booked":
            return None
        if new_key != old_key and _meeting(connection, event.provider, new_key) is not None:
            return MeetingOutcome(BookingResult.DUPLICATE)
        enrollment = _enrollment(connection, meeting.enrollment_id)
        _record(
            connection,
            kind="booking_rescheduled",
            event=event,
            external_id=marker,
            prospect_id=enrollment.prospect_id,
            enrollment_id=enrollment.id,
            now=now,
            data={
                "meeting_id": meeting.id,
                "starts_at": event.starts_at.isoformat(),
                "previous_starts_at": meeting.starts_at.isoformat(),
            },
        )
        values: dict[str, Any] = {
            "external_id": new_key,
            "starts_at": event.starts_at,
            "ends_at": event.ends_at,
            "location": event.location if event.location is not None else meeting.location,
            "join_url": event.join_url if event.join_url is not None else meeting.join_url,
        }
        before = (meeting.starts_at, meeting.ends_at, meeting.location, meeting.join_url)
        after = (values["starts_at"], values["ends_at"], values["location"], values["join_url"])
        if after != before:
            values["ical_sequence"] = meeting.ical_sequence + 1
            _plan_update(connection, meeting, enrollment, event.starts_at, values, now)
        connection.execute(update(meetings).where(meetings.c.id == meeting.id).values(values))
        return MeetingOutcome(
            BookingResult.RESCHEDULED, enrollment.prospect_id, meeting.id, [enrollment.id]
        )


def _plan_update(
    connection: Connection,
    meeting: Row[Any],
    enrollment: Row[Any],
    starts_at: datetime,
    values: dict[str, Any],
    now: datetime,
) -> None:
    """Skip the mail of the old time; plan the updated invitation and the new reminder."""
    revision = values["ical_sequence"]
    touches = _touches(connection, meeting.id)
    _skip(
        connection,
        [t.id for t in touches if t.status == "planned" and "@meeting-" not in t.key],
        "meeting rescheduled",
    )
    sequence = load_version(connection, enrollment.sequence_version_id)
    rows: list[tuple[str, Row[Any], datetime]] = []
    for confirmation in (t for t in touches if "@meeting-" in t.key):
        step = sequence.step(confirmation.step_id)
        if any(t.status in INVITED and t.step_id == step.id for t in touches):
            rows.append((f"{step.id}@update-{meeting.id}.{revision}", confirmation, now))
        # A confirmation still planned goes out with the new time: nothing to add for it.
        if step.remind_before is not None:
            remind_at = starts_at - step.remind_before.as_timedelta()
            if remind_at > now:
                rows.append(
                    (f"{step.id}@reminder-{meeting.id}.{revision}", confirmation, remind_at)
                )
    _plan(connection, meeting.id, enrollment.id, rows, now)


# --- superseded (Calendly) ---------------------------------------------------------------


def _supersede(store: Store, event: BookingEvent, now: datetime) -> MeetingOutcome:
    key = booking_key(event.provider, event.external_id)
    marker = f"{key}#superseded"
    with store.transaction() as connection:
        meeting = _meeting(connection, event.provider, key)
        if _recorded(connection, marker):
            return MeetingOutcome(BookingResult.DUPLICATE)
        if meeting is None:
            if _recorded(connection, f"{key}#rescheduled"):  # the new booking came first
                return MeetingOutcome(BookingResult.ALREADY_RESCHEDULED)
            return MeetingOutcome(BookingResult.UNKNOWN_BOOKING)
        enrollment = _enrollment(connection, meeting.enrollment_id)
        if meeting.status != "booked":
            return MeetingOutcome(
                BookingResult.ALREADY_CANCELLED, enrollment.prospect_id, meeting.id
            )
        _record(
            connection,
            kind="booking_rescheduled",
            event=event,
            external_id=marker,
            prospect_id=enrollment.prospect_id,
            enrollment_id=enrollment.id,
            now=now,
            data={"meeting_id": meeting.id, "awaiting_new_time": True},
        )
        touches = _touches(connection, meeting.id)
        _skip(
            connection,
            [t.id for t in touches if t.status == "planned" and "@reminder-" in t.key],
            "meeting rescheduled",
        )
        return MeetingOutcome(
            BookingResult.AWAITING_NEW_TIME, enrollment.prospect_id, meeting.id, [enrollment.id]
        )


# --- cancelled -------------------------------------------------------------------------


def _cancel(store: Store, event: BookingEvent, now: datetime) -> MeetingOutcome:
    key = booking_key(event.provider, event.external_id)
    marker = f"{key}#cancelled"
    with store.transaction() as connection:
        meeting = _meeting(connection, event.provider, key)
        if _recorded(connection, marker):
            return MeetingOutcome(BookingResult.DUPLICATE)
        if meeting is None:
            if _recorded(connection, f"{key}#rescheduled"):  # it lives on under a new id
                return MeetingOutcome(BookingResult.ALREADY_RESCHEDULED)
            return MeetingOutcome(BookingResult.UNKNOWN_BOOKING)
        enrollment = _enrollment(connection, meeting.enrollment_id)
        if meeting.status != "booked":
            return MeetingOutcome(
                BookingResult.ALREADY_CANCELLED, enrollment.prospect_id, meeting.id
            )
        prospect = connection.execute(
            select(prospects).where(prospects.c.id == enrollment.prospect_id)
        ).one()
        _record(
            connection,
            kind="booking_cancelled",
            event=event,
            external_id=marker,
            prospect_id=prospect.id,
            enrollment_id=enrollment.id,
            now=now,
            data={
                "meeting_id": meeting.id,
                "starts_at": meeting.starts_at.isoformat(),
                **({"cancelled_by": event.cancelled_by} if event.cancelled_by else {}),
            },
        )
        touches = _touches(connection, meeting.id)
        _skip(connection, [t.id for t in touches if t.status == "planned"], "meeting cancelled")
        invited = any(t.status in INVITED for t in touches)
        revision = meeting.ical_sequence + 1 if invited else meeting.ical_sequence
        connection.execute(
            update(meetings)
            .where(meetings.c.id == meeting.id)
            .values(status="cancelled", ical_sequence=revision)
        )
        if invited:  # withdraw the invitation the prospect holds, once per confirmation step
            confirmations = {t.step_id: t for t in touches if "@meeting-" in t.key}
            rows = [
                (f"{step_id}@cancel-{meeting.id}", touch, now)
                for step_id, touch in confirmations.items()
            ]
            _plan(connection, meeting.id, enrollment.id, rows, now)
        changed = pause_booked(connection, prospect.id, meeting.id, now)
        task_id = None
        if changed:
            task_id = rebook_task(connection, meeting, enrollment, prospect, event, now)
        return MeetingOutcome(
            BookingResult.CANCELLED, prospect.id, meeting.id, changed or [enrollment.id], task_id
        )


# --- store helpers ---------------------------------------------------------------------


def _meeting(connection: Connection, provider: str, key: str) -> Row[Any] | None:
    """The meeting of a provider booking, locked (PostgreSQL) until the transaction ends."""
    return connection.execute(
        select(meetings)
        .where(meetings.c.source == provider, meetings.c.external_id == key)
        .with_for_update()
    ).first()


def _enrollment(connection: Connection, enrollment_id: int) -> Row[Any]:
    return connection.execute(
        select(enrollments).where(enrollments.c.id == enrollment_id).with_for_update(key_share=True)
    ).one()


def _touches(connection: Connection, meeting_id: int) -> list[Row[Any]]:
    return list(
        connection.execute(
            select(touchpoints)
            .where(touchpoints.c.meeting_id == meeting_id)
            .order_by(touchpoints.c.id)
        )
    )


def _skip(connection: Connection, touch_ids: list[int], reason: str) -> None:
    if touch_ids:
        connection.execute(
            update(touchpoints)
            .where(touchpoints.c.id.in_(touch_ids), touchpoints.c.status == "planned")
            .values(status="skipped", reason=reason)
        )


def _plan(
    connection: Connection,
    meeting_id: int,
    enrollment_id: int,
    rows: list[tuple[str, Row[Any], datetime]],
    now: datetime,
) -> None:
    """Plan meeting mail: (key, the confirmation touch it follows, due time) each."""
    if not rows:
        return
    connection.execute(
        insert(touchpoints),
        [
            {
                "enrollment_id": enrollment_id,
                "key": key,
                "step_id": like.step_id,
                "channel": Channel.MEETING_CONFIRMATION.value,
                "position": like.position,
                "sequence_id": like.sequence_id,
                "due_at": due_at,
                "status": "planned",
                "meeting_id": meeting_id,
                "created_at": now,
            }
            for key, like, due_at in rows
        ],
    )


def _recorded(connection: Connection, external_id: str) -> bool:
    found = connection.execute(select(events.c.id).where(events.c.external_id == external_id))
    return found.first() is not None


def _record(
    connection: Connection,
    *,
    kind: str,
    event: BookingEvent,
    external_id: str,
    prospect_id: int,
    enrollment_id: int,
    now: datetime,
    data: dict[str, Any],
) -> None:
    """Insert the event; a copy committed meanwhile makes the whole transaction fail."""
    connection.execute(
        insert(events),
        {
            "prospect_id": prospect_id,
            "enrollment_id": enrollment_id,
            "kind": kind,
            "source": event.provider,
            "external_id": external_id,
            "occurred_at": event.occurred_at or now,
            "recorded_at": now,
            "data": data,
        },
    )
