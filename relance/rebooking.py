"""After a cancelled meeting: the booked sequences wait, and a person decides.

Sales teams do not want the chase to restart on its own when a prospect cancels (the
next email would read as if nothing had happened), nor to lose it: the sequences the
booking stopped are paused ("meeting cancelled") with the steps it skipped held again,
and the prospect's owner gets a call task to re-book. Logging that task as booked books
again; `relance resume` picks the chase up from that day; `relance stop` ends it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row, insert, select, update

from relance.bookings import BookingEvent
from relance.engine import Status
from relance.enrollments import load_version
from relance.spec import Channel
from relance.tables import enrollments, meetings, tasks, touchpoints

PROVIDER_NAMES = {"calendly": "Calendly", "calcom": "Cal.com"}


def pause_booked(
    connection: Connection, prospect_id: int, meeting_id: int, now: datetime
) -> list[int]:
    """Pause the prospect's booked enrollments, unless another meeting still stands.

    The steps the booking skipped are planned again, held while paused: resuming
    re-plans them from that day.
    """
    still_booked = connection.execute(
        select(meetings.c.id)
        .join(enrollments, enrollments.c.id == meetings.c.enrollment_id)
        .where(
            enrollments.c.prospect_id == prospect_id,
            meetings.c.status == "booked",
            meetings.c.id != meeting_id,
        )
    ).first()
    if still_booked is not None:
        return []
    booked = connection.execute(
        select(enrollments)
        .where(
            enrollments.c.prospect_id == prospect_id,
            enrollments.c.status == Status.BOOKED.value,
        )
        .order_by(enrollments.c.id)
        .with_for_update(key_share=True)
    ).all()
    live = set(
        connection.execute(
            select(enrollments.c.sequence_id).where(
                enrollments.c.prospect_id == prospect_id,
                enrollments.c.status.in_([Status.ACTIVE.value, Status.PAUSED.value]),
            )
        ).scalars()
    )
    changed = []
    for enrollment in booked:
        if enrollment.sequence_id in live:  # enrolled again since: that one carries on
            continue
        live.add(enrollment.sequence_id)
        connection.execute(
            update(enrollments)
            .where(enrollments.c.id == enrollment.id)
            .values(status=Status.PAUSED.value, reason="meeting cancelled", updated_at=now)
        )
        connection.execute(
            update(touchpoints)
            .where(
                touchpoints.c.enrollment_id == enrollment.id,
                touchpoints.c.status == "skipped",
                touchpoints.c.reason == "booked",
                touchpoints.c.meeting_id.is_(None),
            )
            .values(status="planned", reason=None)
        )
        changed.append(enrollment.id)
    return changed


def rebook_task(
    connection: Connection,
    meeting: Row[Any],
    enrollment: Row[Any],
    prospect: Row[Any],
    event: BookingEvent,
    now: datetime,
) -> int:
    """A call task for the prospect's owner: find a new time, or decide to resume."""
    zone = prospect.timezone or load_version(connection, enrollment.sequence_version_id).timezone
    when = meeting.starts_at.astimezone(ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M")
    who = " ".join(p for p in (prospect.first_name, prospect.last_name) if p) or prospect.email
    by = {"host": "was cancelled on our side", "invitee": f"was cancelled by {who}"}.get(
        event.cancelled_by or "", "was cancelled"
    )
    provider = PROVIDER_NAMES.get(event.provider, event.provider)
    lines = [f"The meeting of {when} ({zone}), booked through {provider}, {by}."]
    if event.reason and event.reason.strip():
        lines.append(f"Reason given: {' '.join(event.reason.split())[:500]}")
    lines += [
        "",
        f"The sequence {enrollment.sequence_id} is paused: nothing goes out by itself.",
        "Call to find a new time, then log this task as booked with the new time.",
        f"No new meeting in sight? `relance resume {prospect.email}` picks the chase up "
        f"again from that day; `relance stop {prospect.email}` ends it.",
    ]
    return int(
        connection.execute(
            insert(tasks).returning(tasks.c.id),
            {
                "touchpoint_id": None,
                "enrollment_id": enrollment.id,
                "prospect_id": prospect.id,
                "kind": Channel.CALL.value,
                "title": "Meeting cancelled: re-book",
                "body": "\n".join(lines) + "\n",
                "owner": prospect.owner,
                "due_at": now,
                "status": "open",
                "created_at": now,
            },
        ).scalar_one()
    )
