"""What a person tells Relance about a prospect: ``reply``, ``book``, ``pause``,
``resume``, ``stop``, ``snooze``.

Each records one signal in one transaction, prints one line saying what
changed, and emits the Prefect event ``relance.prospect.<signal>``. A signal that makes no
sense for the enrollment (resuming one that is not paused...) exits 1 with the reason.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy import select

from relance.cli.app import command
from relance.cli.console import NowOption, format_instant, open_store, parse_instant, read_now
from relance.engine import Signal
from relance.enrollments import prospect_zone
from relance.errors import InputError
from relance.notify import emit_prospect_event
from relance.signals import SignalOutcome, book, find_prospect, record_signal
from relance.store import Store
from relance.tables import enrollments, touchpoints

ProspectArgument = Annotated[
    str, typer.Argument(metavar="PROSPECT", help="Email address or prospect id.")
]
SequenceOption = Annotated[
    str | None,
    typer.Option("--sequence", help="Only this sequence's enrollment. Default: every live one."),
]


# --- shared --------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """ "30m", "45 min", "1h", "1h30", "90" (minutes) -> a duration."""
    match = re.fullmatch(
        r"\s*(?:(?P<h>\d+)\s*h(?:ours?)?)?\s*(?:(?P<m>\d+)\s*(?:m|min|mins|minutes?)?)?\s*",
        text,
        re.IGNORECASE,
    )
    if match is None or not (match["h"] or match["m"]):
        raise InputError(f"--duration: expected a duration such as 30m, 1h or 1h30, got {text!r}")
    minutes = int(match["h"] or 0) * 60 + int(match["m"] or 0)
    if minutes <= 0:
        raise InputError(f"--duration: expected a positive duration, got {text!r}")
    return timedelta(minutes=minutes)


def describe_changes(store: Store, outcome: SignalOutcome) -> str:
    """ "outbound-2w active → paused, nurture-warm paused → paused"."""
    ids = [enrollment_id for enrollment_id, _, _ in outcome.changed]
    with store.reading() as connection:
        names = dict(
            connection.execute(
                select(enrollments.c.id, enrollments.c.sequence_id).where(enrollments.c.id.in_(ids))
            )
            .tuples()
            .all()
        )
    return ", ".join(
        f"{names.get(eid, eid)} {before} → {after}"
        if before != after
        else f"{names.get(eid, eid)} {after}"
        for eid, before, after in outcome.changed
    )


def next_touch(store: Store, enrollment_ids: list[int]) -> tuple[str, datetime] | None:
    """The next planned touch of these enrollments: (step id, due time)."""
    with store.reading() as connection:
        row = connection.execute(
            select(touchpoints.c.step_id, touchpoints.c.due_at)
            .where(
                touchpoints.c.enrollment_id.in_(enrollment_ids), touchpoints.c.status == "planned"
            )
            .order_by(touchpoints.c.due_at, touchpoints.c.id)
            .limit(1)
        ).first()
    return None if row is None else (row.step_id, row.due_at)


def _lookup(store: Store, ref: str) -> tuple[int, str, str]:
    """(id, email, zone) of the prospect ``ref`` names."""
    with store.reading() as connection:
        prospect = find_prospect(connection, ref)
        return prospect.id, prospect.email, prospect_zone(connection, prospect)


def _signal(
    ref: str,
    signal: Signal,
    now: str | None,
    sequence: str | None,
    *,
    until: str | None = None,
    data: dict[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """Record one signal from the command line and print what changed."""
    store = open_store()
    moment = read_now(now)
    _, email, zone = _lookup(store, ref)
    until_at = parse_instant(until, "--until", zone) if until else None
    if until_at is not None and until_at <= moment:
        raise InputError(f"--until: expected a time after now ({format_instant(moment, zone)})")
    outcome = record_signal(
        store,
        ref,
        signal,
        now=moment,
        sequence_id=sequence,
        until=until_at,
        data=data,
        reason=reason,
    )
    changed = [eid for eid, _, _ in outcome.changed]
    emit_prospect_event(signal.value, outcome.prospect_id, changed, {"source": "cli"})
    line = f"{email} {signal.value}"
    if until_at is not None:
        line += f" until {format_instant(until_at, zone)}"
    line += f": {describe_changes(store, outcome)}"
    if signal in (Signal.RESUMED, Signal.SNOOZED):
        upcoming = next_touch(store, changed)
        if upcoming is not None:
            line += f"; next touch {upcoming[0]} on {format_instant(upcoming[1], zone)}"
    typer.echo(line)


# --- signals -------------------------------------------------------------------------


@command("reply")
def reply_command(
    prospect: ProspectArgument,
    sequence: SequenceOption = None,
    note: Annotated[str | None, typer.Option(help="What the prospect said, in short.")] = None,
    now: NowOption = None,
) -> None:
    """Record that a prospect replied: the sequence pauses (or stops, as its exit rules say).

    Example: [bold]relance reply claire.martin@example.com --note "call me in May"[/bold]
    """
    _signal(prospect, Signal.REPLIED, now, sequence, data={"note": note} if note else None)


@command("pause")
def pause_command(
    prospect: ProspectArgument, sequence: SequenceOption = None, now: NowOption = None
) -> None:
    """Pause a prospect's sequences: planned touches wait until resume.

    Example: [bold]relance pause claire.martin@example.com[/bold]
    """
    _signal(prospect, Signal.PAUSED, now, sequence)


@command("resume")
def resume_command(
    prospect: ProspectArgument, sequence: SequenceOption = None, now: NowOption = None
) -> None:
    """Resume a paused prospect: the remaining touches are planned again from now.

    Example: [bold]relance resume claire.martin@example.com[/bold]
    """
    _signal(prospect, Signal.RESUMED, now, sequence)


@command("stop")
def stop_command(
    prospect: ProspectArgument,
    sequence: SequenceOption = None,
    reason: Annotated[str | None, typer.Option(help="Why, kept on the enrollment.")] = None,
    now: NowOption = None,
) -> None:
    """Stop chasing a prospect: no planned touch is sent any more.

    Example: [bold]relance stop claire.martin@example.com --reason "went with a competitor"[/bold]
    """
    _signal(
        prospect,
        Signal.STOPPED,
        now,
        sequence,
        reason=reason,
        data={"reason": reason} if reason else None,
    )


@command("snooze")
def snooze_command(
    prospect: ProspectArgument,
    until: Annotated[
        str,
        typer.Option(
            help="A date (midnight in the prospect's zone) or an ISO time with offset.",
            show_default=False,
        ),
    ],
    sequence: SequenceOption = None,
    now: NowOption = None,
) -> None:
    """Send nothing to a prospect before a date; the remaining touches move after it.

    Example: [bold]relance snooze claire.martin@example.com --until 2026-04-01[/bold]
    """
    _signal(prospect, Signal.SNOOZED, now, sequence, until=until)


@command("book")
def book_command(
    prospect: ProspectArgument,
    at: Annotated[
        str, typer.Option(help="Meeting start, ISO 8601 with offset.", show_default=False)
    ],
    duration: Annotated[str, typer.Option(help="Meeting length: 30m, 1h, 1h30.")] = "30m",
    location: Annotated[str | None, typer.Option(help="Where the meeting takes place.")] = None,
    join_url: Annotated[str | None, typer.Option(help="Video-call link.")] = None,
    sequence: SequenceOption = None,
    now: NowOption = None,
) -> None:
    """Record a booked meeting: the chase stops and the confirmation is planned now.

    Example: [bold]relance book claire.martin@example.com --at 2026-03-12T10:00+01:00
    --duration 30m --join-url https://meet.example.com/abc[/bold]
    """
    typer.echo(
        book_from_cli(
            open_store(), prospect, at, duration, read_now(now), sequence, location, join_url
        )
    )


def book_from_cli(
    store: Store,
    ref: str,
    at: str,
    duration: str,
    now: datetime,
    sequence: str | None,
    location: str | None = None,
    join_url: str | None = None,
    source: str = "cli",
) -> str:
    starts_at = parse_instant(at, "--at")
    length = parse_duration(duration)
    outcome = book(
        store,
        ref,
        starts_at=starts_at,
        duration=length,
        now=now,
        sequence_id=sequence,
        source=source,
        location=location,
        join_url=join_url,
    )
    changed = [eid for eid, _, _ in outcome.changed]
    emit_prospect_event("booked", outcome.prospect_id, changed, {"meeting_id": outcome.meeting_id})
    return describe_booking(store, ref, starts_at, length, outcome)


def describe_booking(
    store: Store, ref: str, starts_at: datetime, length: timedelta, outcome: SignalOutcome
) -> str:
    """One line: who booked when, what stopped, and whether a confirmation is planned."""
    _, email, zone = _lookup(store, ref)
    minutes = int(length.total_seconds() // 60)
    line = f"{email} booked for {format_instant(starts_at, zone)}, {minutes} min: "
    line += describe_changes(store, outcome)
    if outcome.meeting_id is None:
        return line + "; no meeting_confirmation step: no confirmation planned"
    return line + f"; confirmation planned (meeting {outcome.meeting_id})"
