"""The SDR's to-do list: ``relance tasks`` and ``relance task done``.

Calls and reminders of a sequence become tasks when they are due (the dispatcher renders
the call script or reminder text into the task). Closing one records its outcome as a
``task_outcome`` event; "booked" also books the meeting, "not_interested" stops the
sequence the task came from.
"""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy import Connection, func, select

from relance.cli.app import app, command
from relance.cli.console import (
    JsonOption,
    NowOption,
    format_local,
    iso,
    open_store,
    output,
    parse_instant,
    read_now,
    table,
)
from relance.cli.work import describe_booking, describe_changes, parse_duration
from relance.enrollments import load_version
from relance.errors import InputError
from relance.notify import emit_prospect_event
from relance.tables import MAX_ROW_ID, enrollments, prospects, tasks, touchpoints
from relance.worklog import TaskOutcome, log_task_outcome

task_app = typer.Typer(name="task", help="Close SDR tasks.", no_args_is_help=True)
app.add_typer(task_app)


@command("tasks")
def tasks_command(
    due: Annotated[
        str,
        typer.Option(
            help="today (due by the end of today, overdue included), overdue, all, "
            "or a date YYYY-MM-DD."
        ),
    ] = "today",
    owner: Annotated[str | None, typer.Option(help="Only this owner's tasks.")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="The list only, no scripts.")] = False,
    as_json: JsonOption = False,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="The current time, ISO 8601 with offset; 'today' is its date in that offset. "
            "Default: the clock, in this machine's time zone.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List open SDR tasks (calls, reminders) with their script, oldest due first.

    "today" is the calendar day of --now in its own UTC offset, by default the
    current day in this machine's time zone: the SDR's day.

    Example: [bold]relance tasks --due overdue --owner sdr@example.com[/bold]
    """
    moment = _local_now(now)
    day_start = datetime.combine(moment.date(), time(0), moment.tzinfo)
    query = (
        select(
            tasks,
            prospects.c.email,
            prospects.c.first_name,
            prospects.c.last_name,
            prospects.c.company,
            prospects.c.phone,
            prospects.c.timezone.label("prospect_zone"),
            enrollments.c.sequence_id,
            touchpoints.c.step_id,
        )
        .join(prospects, prospects.c.id == tasks.c.prospect_id)
        .outerjoin(enrollments, enrollments.c.id == tasks.c.enrollment_id)
        .outerjoin(touchpoints, touchpoints.c.id == tasks.c.touchpoint_id)
        .where(tasks.c.status == "open")
        .order_by(tasks.c.due_at, tasks.c.id)
    )
    if due == "today":
        query = query.where(tasks.c.due_at < day_start + timedelta(days=1))
    elif due == "overdue":
        query = query.where(tasks.c.due_at < day_start)
    elif due != "all":
        first = _day_start(due, moment)
        query = query.where(tasks.c.due_at >= first, tasks.c.due_at < first + timedelta(days=1))
    if owner:
        query = query.where(func.lower(tasks.c.owner) == owner.strip().lower())
    store = open_store()
    with store.reading() as connection:
        rows = list(connection.execute(query))
        zones = {row.id: row.prospect_zone or _enrollment_zone(connection, row) for row in rows}
    items = [_task_item(row, zones[row.id], day_start) for row in rows]
    if as_json:
        typer.echo(json.dumps(items, indent=2, ensure_ascii=False))
        return
    if not items:
        typer.echo(f"no open tasks ({due})")
        return
    grid = table(
        "id", "due (prospect's time)", "UTC", "kind", "prospect", "company", "phone", "step"
    )
    for item in items:
        grid.add_row(
            str(item["id"]) + ("*" if item["overdue"] else ""), item["due_local"],
            item["due_at"][:16].replace("T", " "), item["kind"], item["name"], item["company"],
            item["phone"], f"{item['sequence_id'] or ''}/{item['step_id'] or ''}",
        )  # fmt: skip
    overdue = sum(1 for item in items if item["overdue"])
    with output() as out:
        out.print(grid)
        out.print(
            f"{len(items)} open task{'s' if len(items) != 1 else ''}"
            + (f", {overdue} overdue (*)" if overdue else "")
        )
        if brief:
            return
        for item in items:
            who = " · ".join(p for p in (item["name"], item["company"], item["phone"]) if p)
            out.print()
            out.print(f"── task {item['id']} · {who}")
            out.print(f"{item['title']} (due {item['due_local']} {item['zone']})")
            out.print()
            out.print(item["body"].rstrip("\n"))


def _local_now(text: str | None) -> datetime:
    if text is None:
        return read_now(None).astimezone()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(
            "--now: expected a time with its UTC offset such as 2026-03-02T09:00+01:00, "
            f"got {text!r}"
        )
    return moment


def _day_start(text: str, moment: datetime) -> datetime:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        raise InputError(
            f"--due: expected today, overdue, all or a date such as 2026-03-02, got {text!r}"
        ) from None
    return datetime.combine(day, time(0), moment.tzinfo)


def _enrollment_zone(connection: Connection, row: Any) -> str:
    if row.enrollment_id is None:
        return "UTC"
    version = connection.execute(
        select(enrollments.c.sequence_version_id).where(enrollments.c.id == row.enrollment_id)
    ).scalar_one()
    return load_version(connection, version).timezone


def _task_item(row: Any, zone: str, day_start: datetime) -> dict[str, Any]:
    name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
    return {
        "id": row.id,
        "kind": row.kind,
        "title": row.title,
        "body": row.body,
        "owner": row.owner,
        "due_at": iso(row.due_at),
        "due_local": format_local(row.due_at, zone),
        "zone": zone,
        "overdue": row.due_at < day_start,
        "prospect_id": row.prospect_id,
        "email": row.email,
        "name": name,
        "company": row.company,
        "phone": row.phone,
        "sequence_id": row.sequence_id,
        "step_id": row.step_id,
    }


@command("done", parent=task_app)
def task_done_command(
    task_id: Annotated[
        int,
        typer.Argument(metavar="ID", min=1, max=MAX_ROW_ID, help="The task id (relance tasks)."),
    ],
    outcome: Annotated[TaskOutcome, typer.Option(help="What the call gave.", show_default=False)],
    note: Annotated[str | None, typer.Option(help="A short note for the record.")] = None,
    at: Annotated[
        str | None,
        typer.Option(help="booked: the meeting start, ISO 8601 with offset.", show_default=False),
    ] = None,
    duration: Annotated[str, typer.Option(help="booked: the meeting length.")] = "30m",
    now: NowOption = None,
) -> None:
    """Close a task with its outcome; booked records the meeting, not_interested stops.

    Example: [bold]relance task done 12 --outcome booked --at 2026-03-12T10:00+01:00[/bold]

    Example: [bold]relance task done 13 --outcome no_answer --note "left a voicemail"[/bold]
    """
    store = open_store()
    moment = read_now(now)
    if (outcome is TaskOutcome.BOOKED) != (at is not None):
        raise InputError(
            "--outcome booked needs --at, the meeting start (ISO 8601 with offset)"
            if at is None
            else "--at is for --outcome booked only"
        )
    meeting_at = parse_instant(at, "--at") if at is not None else None
    logged = log_task_outcome(
        store,
        task_id,
        outcome,
        now=moment,
        note=note,
        meeting_at=meeting_at,
        duration=parse_duration(duration),
    )
    follow_up = ""
    if logged.booking is not None:
        booked = logged.booking
        changed = [eid for eid, _, _ in booked.changed]
        emit_prospect_event("booked", booked.prospect_id, changed, {"source": "task"})
        assert meeting_at is not None  # booked goes with --at, checked above
        follow_up = "; " + describe_booking(
            store, str(logged.prospect_id), meeting_at, parse_duration(duration), booked
        )
    elif logged.stop is not None:
        changed = [eid for eid, _, _ in logged.stop.changed]
        emit_prospect_event("stopped", logged.stop.prospect_id, changed, {"source": "task"})
        follow_up = f"; stopped: {describe_changes(store, logged.stop)}"
    elif logged.stop_refused is not None:
        follow_up = f"; nothing to stop ({logged.stop_refused})"
    emit_prospect_event(
        "task_outcome",
        logged.prospect_id,
        [logged.enrollment_id] if logged.enrollment_id else [],
        {"task_id": task_id, "outcome": outcome.value},
    )
    typer.echo(f"task {task_id} done: {outcome.value}{follow_up}")
