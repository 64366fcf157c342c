"""The demo: three simulated weeks of Relance on the embedded defaults.

It validates the shipped sequences, enrolls the bundled sample prospects, then runs the
real dispatch flow on Prefect at simulated times (the clock is injected into Relance;
Prefect's own timestamps are real), with replies, bookings, a bounce and SDR call
outcomes arriving on the way. It ends with a summary and checks of the promises: nobody
who replied is sent anything afterwards, and every booking got its confirmation with an
invitation that parses.
"""

from __future__ import annotations

import email
import hashlib
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from importlib import resources
from pathlib import Path
from typing import Any

from icalendar import Calendar
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from relance.catalog import resolve_sequence
from relance.claims import due_groups
from relance.csvimport import read_contacts
from relance.engagement import MailEvent, MailEventKind, apply_mail_events
from relance.engine import Signal
from relance.enrollments import enroll
from relance.errors import RelanceError
from relance.notify import emit_prospect_event
from relance.settings import Settings
from relance.signals import book, record_signal
from relance.store import Store
from relance.tables import enrollments, events, prospects, tasks, touchpoints
from relance.validation import validate_paths
from relance.worklog import TaskOutcome, log_task_outcome

TICKS_UTC = (timedelta(hours=14, minutes=30),)
SDR_DAY_END = timedelta(hours=17)
"""When the demo's SDRs log the outcomes of the day's calls and reminders."""

CALL_OUTCOMES = (
    TaskOutcome.NO_ANSWER,
    TaskOutcome.CONNECTED,
    TaskOutcome.VOICEMAIL,
    TaskOutcome.NO_ANSWER,
    TaskOutcome.CONNECTED,
    TaskOutcome.NO_ANSWER,
)
"""Outcomes the demo's SDRs log in turn (about as many no-answers as conversations)."""

BOOKED_ON_THE_PHONE = frozenset({"nicolas.richard@fromagerie-lemoine.example"})
NOT_INTERESTED = frozenset({"emilie.durand@groupe-hexa.example"})
"""Simulated tick times each day: 14:30 UTC is inside every sample prospect's send window
(mid-afternoon in Europe, morning on the US east coast). The deployment ticks every
minute; the demo jumps to one tick a day, since each flow run costs about a second."""


@dataclass(frozen=True)
class Happening:
    """Something a prospect does at a simulated time."""

    day: int
    hour: float
    email: str
    signal: str
    """replied | booked | bounced | unsubscribed | resumed"""
    meeting_in_days: int = 0


SCRIPT: tuple[Happening, ...] = (
    Happening(1, 11, "claire.martin@acme-industrie.example", "replied"),
    Happening(2, 10, "oliver.smith@xylos-analytics.example", "replied"),
    Happening(2, 16, "james.miller@datavance.example", "replied"),
    Happening(3, 12, "julien.bernard@batiplus.example", "booked", meeting_in_days=5),
    Happening(4, 14, "george.wilson@batiplus.example", "booked", meeting_in_days=3),
    Happening(6, 11, "lucas.bertrand@pharmalys.example", "bounced"),
    Happening(7, 10, "harry.taylor@zenith-aero.example", "replied"),
    Happening(8, 15, "olivia.johnson@eolia-energies.example", "booked", meeting_in_days=6),
    Happening(9, 9, "claire.martin@acme-industrie.example", "resumed"),
    Happening(10, 13, "sophie.dubois@cegeris.example", "unsubscribed"),
    Happening(11, 16, "lukas.muller@lumen-health.example", "booked", meeting_in_days=4),
)


@dataclass
class DemoReport:
    ticks: int = 0
    flow_runs: int = 0
    last_tick: datetime | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    enrolled: Counter[str] = field(default_factory=Counter)
    happenings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def sample_contacts() -> dict[str, str]:
    """The bundled sample CSV, split by its ``sequence`` column: sequence id -> CSV text."""
    text = resources.files("relance").joinpath("samples/prospects.csv").read_text("utf-8")
    header, *lines = text.splitlines()
    columns = header.split(",")
    index = columns.index("sequence")
    kept = ",".join(c for i, c in enumerate(columns) if i != index)
    by_sequence: dict[str, list[str]] = defaultdict(lambda: [kept])
    for line in lines:
        cells = line.split(",")
        by_sequence[cells[index]].append(",".join(c for i, c in enumerate(cells) if i != index))
    return {sequence_id: "\n".join(rows) + "\n" for sequence_id, rows in by_sequence.items()}


def route_leads(store: Store, settings: Settings, console: Console, start: datetime) -> None:
    """Qualified leads from a CRM export, each routed to a sequence by routing.yaml."""
    from relance.cli.routed import enrollment_summaries, print_routing
    from relance.intake import route_and_enroll

    text = resources.files("relance").joinpath("samples/leads.csv").read_text("utf-8")
    console.print("   then routed qualified leads by routing.yaml (warmth and grid decide):")
    routed = route_and_enroll(store, settings, text, start=start + timedelta(hours=8), now=start)
    summaries = enrollment_summaries(store, routed, dry_run=False, now=start)
    print_routing(console, routed, "routing.yaml", summaries)


def reset(settings: Settings) -> None:
    for name in ("relance.db", "relance.db-wal", "relance.db-shm"):
        (settings.data_dir / name).unlink(missing_ok=True)
    shutil.rmtree(settings.outbox_path, ignore_errors=True)


def _apply(store: Store, happening: Happening, now: datetime) -> str:
    if happening.signal == "booked":
        starts = (now + timedelta(days=happening.meeting_in_days)).replace(
            hour=14, minute=0, second=0, microsecond=0
        )
        outcome = book(
            store,
            happening.email,
            starts_at=starts,
            duration=timedelta(minutes=30),
            now=now,
            source="demo",
            join_url="https://meet.example.com/relance-demo",
        )
        detail = f"booked a meeting on {starts:%a %d %b %H:%M} UTC"
    else:
        outcome = record_signal(
            store, happening.email, Signal(happening.signal), now=now, source="demo"
        )
        detail = happening.signal
    emit_prospect_event(
        outcome.signal.value, outcome.prospect_id, [changed[0] for changed in outcome.changed]
    )
    return f"{now:%a %d %b %H:%M} UTC  {happening.email}: {detail}"


def simulate_engagement(store: Store, now: datetime) -> int:
    """What SendGrid's Event Webhook would say about the emails this tick sent.

    The outbox delivers nothing by itself; so that the report's rates mean something,
    every email is delivered, about half are opened and one in eight clicked, chosen
    deterministically from the touchpoint id. They go through the webhook's own code.
    """
    with store.reading() as connection:
        sent = connection.execute(
            select(touchpoints.c.id, prospects.c.email)
            .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
            .join(prospects, prospects.c.id == enrollments.c.prospect_id)
            .where(
                touchpoints.c.channel == "email",
                touchpoints.c.status == "sent",
                touchpoints.c.sent_at == now,
            )
        ).all()
    batch: list[MailEvent] = []
    for touchpoint_id, address in sent:
        kinds = [MailEventKind.DELIVERED]
        draw = hashlib.sha256(str(touchpoint_id).encode()).digest()[0] / 256
        if draw < 0.5:
            kinds.append(MailEventKind.OPENED)
            if draw < 0.125:
                kinds.append(MailEventKind.CLICKED)
        batch.extend(
            MailEvent(
                external_id=f"demo:{touchpoint_id}:{kind.value}",
                kind=kind,
                source="demo",
                email=address,
                occurred_at=now + timedelta(minutes=5 * (index + 1)),
                touchpoint_id=touchpoint_id,
            )
            for index, kind in enumerate(kinds)
        )
    return apply_mail_events(store, batch, now=now).accepted


def work_tasks(store: Store, now: datetime, report: DemoReport, console: Console) -> None:
    """The SDRs log an outcome on every open call and reminder task."""
    with store.reading() as connection:
        open_tasks = connection.execute(
            select(tasks.c.id, prospects.c.email)
            .join(prospects, prospects.c.id == tasks.c.prospect_id)
            .where(tasks.c.status == "open")
            .order_by(tasks.c.id)
        ).all()
    for task_id, address in open_tasks:
        meeting_at = None
        if address in BOOKED_ON_THE_PHONE:
            outcome = TaskOutcome.BOOKED
            meeting_at = (now + timedelta(days=3)).replace(hour=9, minute=0)
        elif address in NOT_INTERESTED:
            outcome = TaskOutcome.NOT_INTERESTED
        else:
            outcome = CALL_OUTCOMES[task_id % len(CALL_OUTCOMES)]
        logged = log_task_outcome(store, task_id, outcome, now=now, meeting_at=meeting_at)
        report.outcomes[outcome.value] += 1
        for signal, changed in (("booked", logged.booking), ("stopped", logged.stop)):
            if changed is not None:
                emit_prospect_event(signal, changed.prospect_id, [c[0] for c in changed.changed])
                line = f"{now:%a %d %b %H:%M} UTC  {address}: {outcome.value} on the phone"
                report.happenings.append(line)
                console.print(f"   {line}")


def run(settings: Settings, console: Console, start: datetime, days: int = 21) -> DemoReport:
    """Run the demo from ``start`` (a Monday, 00:00 UTC) for ``days`` simulated days."""
    from flows.dispatch import run_tick
    from relance.prefect_api import prefect_api

    report = DemoReport()
    problems = validate_paths([settings.sequences_path], settings)
    if problems:
        raise RelanceError(f"the shipped sequences do not validate: {len(problems)} problem(s)")
    console.print(f"[bold]1.[/] validated the sequences in {settings.sequences_path}/: no problems")

    reset(settings)
    store = Store(settings.store_url)
    for sequence_id, text in sample_contacts().items():
        sequence = resolve_sequence(sequence_id, settings)
        contacts = read_contacts(
            text, "prospects.csv", required=sequence.required_fields, sequence_id=sequence_id
        )
        if contacts.errors:
            raise RelanceError(contacts.errors[0].format("prospects.csv"))
        result = enroll(
            store, sequence, contacts.prospects, start=start + timedelta(hours=8), now=start
        )
        report.enrolled[sequence_id] = len(result.enrolled)
    total = sum(report.enrolled.values())
    console.print(
        f"[bold]2.[/] enrolled {total} sample prospects: "
        + ", ".join(f"{n} in {s}" for s, n in sorted(report.enrolled.items()))
    )
    route_leads(store, settings, console, start)

    console.print(f"[bold]3.[/] running dispatch ticks from {start:%a %d %b %Y} for {days} days")
    with prefect_api() as api_url:
        console.print(f"   Prefect API: {api_url}")
        pending = sorted(SCRIPT, key=lambda h: (h.day, h.hour))
        for day in range(days):
            midnight = start + timedelta(days=day)
            for offset in TICKS_UTC:
                now = midnight + offset
                while (
                    pending
                    and midnight + timedelta(days=0, hours=pending[0].hour) <= now
                    and (pending[0].day == day)
                ):
                    happening = pending.pop(0)
                    at = midnight + timedelta(hours=happening.hour)
                    report.happenings.append(_apply(store, happening, at))
                    console.print(f"   {report.happenings[-1]}")
                # Weekend ticks would only move touches to Monday: the demo skips them.
                if midnight.weekday() < 5 and due_groups(store, now):
                    summary = run_tick(now=now)
                    report.last_tick = now
                    report.ticks += 1
                    report.flow_runs += 1 + len(summary["sequences"])
                    simulate_engagement(store, now)
            while pending and pending[0].day == day:
                happening = pending.pop(0)
                report.happenings.append(
                    _apply(store, happening, midnight + timedelta(hours=happening.hour))
                )
                console.print(f"   {report.happenings[-1]}")
            if midnight.weekday() < 5:
                work_tasks(store, midnight + SDR_DAY_END, report, console)
    console.print(f"   {report.ticks} ticks, {report.flow_runs} flow runs")
    summarize(store, settings, console, report)
    from relance.cli.reporting import show_report

    html = settings.data_dir / "report.html"
    console.print("\n[bold]4.[/] the report (relance report), as the team would read it:")
    show_report(console, store, now=start + timedelta(days=days), html=html)
    console.print(f"HTML report: {html.resolve()}")
    return report


def summarize(store: Store, settings: Settings, console: Console, report: DemoReport) -> None:
    with store.reading() as connection:
        rows = connection.execute(
            select(
                touchpoints.c.sequence_id,
                touchpoints.c.step_id,
                touchpoints.c.channel,
                touchpoints.c.status,
                touchpoints.c.position,
            )
        ).all()
        statuses = Counter(connection.execute(select(enrollments.c.status)).scalars())
        task_kinds = Counter(connection.execute(select(tasks.c.kind)).scalars())
    per_step: dict[tuple[str, int, str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        per_step[(row.sequence_id, row.position, row.step_id, row.channel)][row.status] += 1
    table = Table(title="Touches per step", title_justify="left")
    for column in ("sequence", "step", "channel", "sent", "skipped", "planned", "failed"):
        table.add_column(
            column,
            justify="right" if column in ("sent", "skipped", "planned", "failed") else "left",
        )
    for (sequence_id, _, step_id, channel), counts in sorted(per_step.items()):
        table.add_row(
            sequence_id,
            step_id,
            channel,
            str(counts["sent"]),
            str(counts["skipped"]),
            str(counts["planned"]),
            str(counts["failed"] + counts["unknown"]),
        )
    console.print(table)
    console.print(
        "Enrollments: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    )
    console.print(
        "SDR tasks created: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(task_kinds.items()))
        + "; outcomes logged: "
        + ", ".join(f"{name} {count}" for name, count in sorted(report.outcomes.items()))
    )
    check_promises(store, settings, console, report)
    outbox = settings.outbox_path.resolve()
    console.print(f"\nEmails: {len(list(outbox.glob('*.eml')))} .eml files in {outbox}")
    console.print(
        "Prefect UI: the demo used a local API that stops with it. To browse the runs, start "
        "`prefect server start` in another terminal, then run "
        "`PREFECT_API_URL=http://127.0.0.1:4200/api make demo` and open http://127.0.0.1:4200."
    )


def check_promises(store: Store, settings: Settings, console: Console, report: DemoReport) -> None:
    """Nothing sent between a reply and a resume; every booking confirmed with a valid .ics."""
    with store.reading() as connection:
        signals = connection.execute(
            select(events.c.prospect_id, events.c.kind, events.c.recorded_at)
            .where(events.c.kind.in_(["replied", "resumed", "booked"]))
            .order_by(events.c.recorded_at)
        ).all()
        sent = connection.execute(
            select(
                enrollments.c.prospect_id,
                touchpoints.c.id,
                touchpoints.c.claimed_at,
                touchpoints.c.meeting_id,
                touchpoints.c.key,
            )
            .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
            .where(touchpoints.c.status == "sent")
        ).all()
        emails = {
            row.id: row.email
            for row in connection.execute(select(prospects.c.id, prospects.c.email))
        }
    quiet: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    booked: set[int] = set()
    for prospect_id, kind, at in signals:
        if kind == "replied":
            quiet[prospect_id].append((at, None))
        elif kind == "resumed" and quiet[prospect_id]:
            began, _ = quiet[prospect_id][-1]
            quiet[prospect_id][-1] = (began, at)
        elif kind == "booked" and report.last_tick and at <= report.last_tick:
            booked.add(prospect_id)  # a later booking's confirmation is due at the next tick
    breaches = [
        row
        for row in sent
        for began, ended in quiet.get(row.prospect_id, [])
        if row.claimed_at > began and (ended is None or row.claimed_at < ended)
    ]
    console.print(
        f"\nCheck: {len(quiet)} prospects replied; touches sent to them after their reply "
        f"(before any resume): {len(breaches)}"
    )
    if breaches:
        report.failures.append(f"{len(breaches)} touches sent after a reply")
    confirmed = 0
    for prospect_id in sorted(booked):
        confirmations = [
            r
            for r in sent
            if r.prospect_id == prospect_id and r.meeting_id and "@meeting-" in r.key
        ]
        if confirmations and _invite_parses(settings.outbox_path / f"{confirmations[0].id}.eml"):
            confirmed += 1
        else:
            report.failures.append(f"{emails[prospect_id]} booked but has no valid confirmation")
    console.print(
        f"Check: {len(booked)} prospects booked; "
        f"confirmations with a valid .ics invite: {confirmed}"
    )


def _invite_parses(path: Path) -> bool:
    if not path.is_file():
        return False
    message: Message = email.message_from_bytes(path.read_bytes())
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload: Any = part.get_payload(decode=True)
            calendar = Calendar.from_ical(payload)
            events_found = calendar.walk("VEVENT")
            return str(calendar.get("METHOD")) == "REQUEST" and len(events_found) == 1
    return False


def next_monday(now: datetime) -> datetime:
    """Midnight UTC of the Monday after ``now``."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(days=7 - midnight.weekday())
