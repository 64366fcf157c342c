"""A prospect's timeline, as ``relance status`` shows it: read from the store, then printed.

``timeline`` returns plain data (the ``--json`` output); ``print_timeline`` lays it out:
the prospect, each enrollment with its touches in order, the SDR tasks, and the events
in the order they happened. Times are in the prospect's zone (else the sequence's), UTC
alongside.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from sqlalchemy import Connection, Row, select

from relance.cli.console import format_instant, format_local, iso, table
from relance.enrollments import load_version, stored_zone_source
from relance.rendering import choose_locale
from relance.tables import enrollments, events, meetings, sequence_versions, tasks, touchpoints
from relance.zones import ZONE_SOURCE_TEXT, ZoneSource

# --- the timeline ----------------------------------------------------------------------


def timeline(connection: Connection, prospect: Row[Any]) -> dict[str, Any]:
    """Everything the store knows about one prospect, oldest first, JSON-ready."""
    rows = list(
        connection.execute(
            select(enrollments, sequence_versions.c.version)
            .join(sequence_versions, sequence_versions.c.id == enrollments.c.sequence_version_id)
            .where(enrollments.c.prospect_id == prospect.id)
            .order_by(enrollments.c.enrolled_at, enrollments.c.id)
        )
    )
    ids = [row.id for row in rows]
    touches = list(
        connection.execute(
            select(touchpoints)
            .where(touchpoints.c.enrollment_id.in_(ids))
            .order_by(touchpoints.c.position, touchpoints.c.due_at, touchpoints.c.id)
        )
    )
    booked = list(
        connection.execute(
            select(meetings).where(meetings.c.enrollment_id.in_(ids)).order_by(meetings.c.id)
        )
    )
    zones = {
        row.id: prospect.timezone or load_version(connection, row.sequence_version_id).timezone
        for row in rows
    }
    languages = {
        row.id: choose_locale(load_version(connection, row.sequence_version_id), prospect.locale)
        for row in rows
    }
    sequences = {row.id: row.sequence_id for row in rows}
    zone = prospect.timezone or (zones[ids[-1]] if ids else "UTC")
    return {
        "prospect": {
            "id": prospect.id,
            "email": prospect.email,
            "first_name": prospect.first_name,
            "last_name": prospect.last_name,
            "company": prospect.company,
            "title": prospect.title,
            "phone": prospect.phone,
            "timezone": prospect.timezone,
            "timezone_source": stored_zone_source(prospect.timezone, prospect.timezone_source),
            "country": prospect.country,
            "region": prospect.region,
            "locale": prospect.locale,
            "owner": prospect.owner,
            "fields": dict(prospect.fields or {}),
        },
        "zone": zone,
        "enrollments": [
            {
                "id": row.id,
                "sequence_id": row.sequence_id,
                "version": row.version,
                "status": row.status,
                "reason": row.reason,
                "zone": zones[row.id],
                "language": languages[row.id][0],
                "language_why": languages[row.id][1],
                "completed_at": iso(row.completed_at),
                "deal_value": row.deal_value,
                "cycle_days": row.cycle_days,
                "enrolled_at": iso(row.enrolled_at),
                "snoozed_until": iso(row.snoozed_until),
                "touchpoints": [_touch(t) for t in touches if t.enrollment_id == row.id],
                "meetings": [_meeting(m) for m in booked if m.enrollment_id == row.id],
            }
            for row in rows
        ],
        "tasks": [
            {
                "id": task.id,
                "sequence_id": sequences.get(task.enrollment_id),
                "enrollment_id": task.enrollment_id,
                "kind": task.kind,
                "title": task.title,
                "owner": task.owner,
                "due_at": iso(task.due_at),
                "status": task.status,
                "outcome": task.outcome,
                "note": task.note,
                "done_at": iso(task.done_at),
            }
            for task in connection.execute(
                select(tasks)
                .where(tasks.c.prospect_id == prospect.id)
                .order_by(tasks.c.due_at, tasks.c.id)
            )
        ],
        "events": [
            {
                "id": event.id,
                "kind": event.kind,
                "source": event.source,
                "occurred_at": iso(event.occurred_at),
                "enrollment_id": event.enrollment_id,
                "sequence_id": sequences.get(event.enrollment_id),
                "data": dict(event.data or {}),
            }
            for event in connection.execute(
                select(events)
                .where(events.c.prospect_id == prospect.id)
                .order_by(events.c.occurred_at, events.c.id)
            )
        ],
    }


def _touch(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "step_id": row.step_id,
        "key": row.key,
        "channel": row.channel,
        "due_at": iso(row.due_at),
        "status": row.status,
        "reason": row.reason,
        "moved": list(row.moved or []),
        "meeting_id": row.meeting_id,
        "sent_at": iso(row.sent_at),
    }


def _meeting(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "starts_at": iso(row.starts_at),
        "ends_at": iso(row.ends_at),
        "status": row.status,
        "source": row.source,
        "location": row.location,
        "join_url": row.join_url,
    }


# --- printing ------------------------------------------------------------------------


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _when(text: str | None, zone: str) -> tuple[str, str]:
    """(local "Mon 2026-03-02 10:00", UTC "2026-03-02 09:00") of an ISO time."""
    if text is None:
        return "", ""
    instant = _instant(text)
    return format_local(instant, zone), f"{instant:%Y-%m-%d %H:%M}"


def print_timeline(out: Console, data: dict[str, Any]) -> None:
    """The timeline as aligned text: header, enrollments, tasks, events."""
    person = data["prospect"]
    zone = data["zone"]
    name = " ".join(p for p in (person["first_name"], person["last_name"]) if p)
    out.print(
        f"{name} <{person['email']}>" if name else person["email"], f"· prospect {person['id']}"
    )
    job = ", ".join(p for p in (person["title"], person["company"]) if p)
    details = [job, person["phone"], f"owner {person['owner']}" if person["owner"] else ""]
    source = ZONE_SOURCE_TEXT[ZoneSource(person["timezone_source"])]
    place = [
        f"zone {zone} ({source})",
        person["region"] or person["country"] or "",
        person["locale"] or "",
    ]
    out.print(" · ".join(p for p in [*details, *place] if p))
    for enrollment in data["enrollments"]:
        _print_enrollment(out, enrollment)
    if data["tasks"]:
        out.print()
        out.print("Tasks")
        grid = table("id", f"due ({zone})", "UTC", "kind", "sequence", "status", "note")
        for task in data["tasks"]:
            status = task["status"] + (f": {task['outcome']}" if task["outcome"] else "")
            grid.add_row(
                str(task["id"]), *_when(task["due_at"], zone), task["kind"],
                task["sequence_id"] or "", status, task["note"] or task["title"],
            )  # fmt: skip
        out.print(grid)
    out.print()
    if not data["events"]:
        out.print("Events: none yet")
        return
    out.print("Events")
    grid = table(f"when ({zone})", "UTC", "event", "source", "sequence", "details")
    for event in data["events"]:
        grid.add_row(
            *_when(event["occurred_at"], zone), event["kind"], event["source"],
            event["sequence_id"] or "", _event_details(event, zone),
        )  # fmt: skip
    out.print(grid)


def _print_enrollment(out: Console, enrollment: dict[str, Any]) -> None:
    zone = enrollment["zone"]
    out.print()
    status = enrollment["status"]
    if enrollment["reason"] and enrollment["reason"] != status:
        status += f" ({enrollment['reason']})"
    out.print(
        f"{enrollment['sequence_id']} v{enrollment['version']} · "
        f"enrollment {enrollment['id']} · {status}"
    )
    facts = [f"enrolled {format_instant(_instant(enrollment['enrolled_at']), zone)}"]
    if enrollment["completed_at"]:
        facts.append(f"completed {format_instant(_instant(enrollment['completed_at']), zone)}")
    if enrollment["snoozed_until"]:
        facts.append(
            "snoozed until {} {}".format(_when(enrollment["snoozed_until"], zone)[0], zone)
        )
    for key, label in (("deal_value", "deal value {:g}"), ("cycle_days", "cycle {:g} days")):
        if enrollment[key]:
            facts.append(label.format(enrollment[key]))
    out.print(" · ".join(facts))
    out.print(f"written in {enrollment['language']}: {enrollment['language_why']}")
    for meeting in enrollment["meetings"]:
        starts = format_instant(_instant(meeting["starts_at"]), zone)
        where = meeting["join_url"] or meeting["location"] or ""
        out.print(
            f"meeting {meeting['id']}: {starts}, {meeting['status']}"
            + (f", {where}" if where else "")
        )
    grid = table("step", "channel", f"due ({zone})", "UTC", "status", "note")
    for touch in enrollment["touchpoints"]:
        status = touch["status"]
        note = "; ".join(touch["moved"])
        if touch["reason"]:
            note = touch["reason"] + (f"; {note}" if note else "")
        if "@reminder-" in touch["key"]:
            note = f"reminder before meeting {touch['meeting_id']}" + (f"; {note}" if note else "")
        elif "@meeting-" in touch["key"]:
            note = f"confirms meeting {touch['meeting_id']}" + (f"; {note}" if note else "")
        grid.add_row(
            touch["step_id"], touch["channel"], *_when(touch["due_at"], zone), status, note
        )
    out.print(grid)


def _event_details(event: dict[str, Any], zone: str) -> str:
    data = event["data"]
    parts: list[str] = []
    if event["kind"] == "booked" and data.get("starts_at"):
        local, _ = _when(
            datetime.fromisoformat(data["starts_at"]).astimezone(UTC).isoformat(), zone
        )
        minutes = data.get("minutes")
        parts.append(f"meeting {local}" + (f", {minutes:g} min" if minutes else ""))
    if data.get("until"):
        local, _ = _when(datetime.fromisoformat(data["until"]).astimezone(UTC).isoformat(), zone)
        parts.append(f"until {local}")
    if data.get("task_id"):
        outcome = data.get("outcome")
        parts.append(f"task {data['task_id']}" + (f": {outcome}" if outcome else ""))
    for key in ("reason", "note"):
        if data.get(key):
            parts.append(str(data[key]))
    return "; ".join(parts)
