"""What the SDR page shows, read from the store: today's open tasks with each prospect's
context, and the owners that have open tasks.

"Today" is the prospect's day: a task is listed when it is due before the end of the
current day in the prospect's zone (else the sequence's), and marked overdue when it was
due before that day began. Times stay aware UTC here; the page shows them in that zone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from relance.enrollments import load_version
from relance.spec import Sequence
from relance.tables import enrollments, events, prospects, tasks, touchpoints
from relance.web.pages import zone_of

LAST_TOUCHES = 3
ENGAGEMENT = ("opened", "clicked", "replied", "bounced")
PAST = ("sent", "failed", "unknown")


@dataclass(frozen=True)
class PastTouch:
    """A touch already made, as the SDR sees it before calling."""

    at: datetime
    channel: str
    step_id: str
    status: str
    engagement: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskCard:
    """One open task with what the SDR needs to act on it."""

    id: int
    kind: str
    title: str
    body: str
    owner: str
    due_at: datetime
    overdue: bool
    zone: str
    prospect_id: int
    name: str
    company: str
    job_title: str
    phone: str
    sequence_id: str | None
    step_id: str | None
    objective: str | None
    deal_value: float
    touches: list[PastTouch] = field(default_factory=list)


class Versions:
    """Sequence versions loaded once per page."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.loaded: dict[int, Sequence] = {}

    def get(self, version_id: int) -> Sequence:
        if version_id not in self.loaded:
            self.loaded[version_id] = load_version(self.connection, version_id)
        return self.loaded[version_id]


def open_tasks(connection: Connection, now: datetime, owner: str | None) -> list[TaskCard]:
    """Open tasks due by the end of the prospect's day, oldest due first."""
    query = (
        select(
            tasks,
            prospects.c.email,
            prospects.c.first_name,
            prospects.c.last_name,
            prospects.c.company,
            prospects.c.title.label("job_title"),
            prospects.c.phone,
            prospects.c.timezone.label("prospect_zone"),
            enrollments.c.sequence_id,
            enrollments.c.sequence_version_id,
            enrollments.c.deal_value,
            touchpoints.c.step_id,
        )
        .join(prospects, prospects.c.id == tasks.c.prospect_id)
        .outerjoin(enrollments, enrollments.c.id == tasks.c.enrollment_id)
        .outerjoin(touchpoints, touchpoints.c.id == tasks.c.touchpoint_id)
        .where(tasks.c.status == "open", tasks.c.due_at < now + timedelta(days=2))
        .order_by(tasks.c.due_at, tasks.c.id)
    )
    if owner:
        query = query.where(func.lower(tasks.c.owner) == owner.strip().lower())
    rows = list(connection.execute(query))
    history = past_touches(connection, {row.enrollment_id for row in rows} - {None})
    versions = Versions(connection)
    cards = []
    for row in rows:
        sequence = (
            versions.get(row.sequence_version_id) if row.sequence_version_id is not None else None
        )
        zone = row.prospect_zone or (sequence.timezone if sequence else "UTC")
        day_start = datetime.combine(now.astimezone(zone_of(zone)).date(), time(0), zone_of(zone))
        if row.due_at >= day_start + timedelta(days=1):
            continue
        step = next((s for s in sequence.steps if s.id == row.step_id), None) if sequence else None
        earlier = [t for tid, t in history.get(row.enrollment_id, []) if tid != row.touchpoint_id]
        cards.append(
            TaskCard(
                id=row.id,
                kind=row.kind,
                title=row.title,
                body=row.body,
                owner=row.owner,
                due_at=row.due_at,
                overdue=row.due_at < day_start,
                zone=zone,
                prospect_id=row.prospect_id,
                name=" ".join(p for p in (row.first_name, row.last_name) if p) or row.email,
                company=row.company,
                job_title=row.job_title,
                phone=row.phone,
                sequence_id=row.sequence_id,
                step_id=row.step_id,
                objective=step.objective if step else None,
                deal_value=row.deal_value or 0,
                touches=earlier[:LAST_TOUCHES],
            )
        )
    return cards


def past_touches(
    connection: Connection, enrollment_ids: set[Any]
) -> dict[int, list[tuple[int, PastTouch]]]:
    """(touchpoint id, touch) already made in each enrollment, latest first."""
    if not enrollment_ids:
        return {}
    rows = list(
        connection.execute(
            select(touchpoints).where(
                touchpoints.c.enrollment_id.in_(enrollment_ids), touchpoints.c.status.in_(PAST)
            )
        )
    )
    seen: dict[int, set[str]] = defaultdict(set)
    if rows:
        for touchpoint_id, kind in connection.execute(
            select(events.c.touchpoint_id, events.c.kind).where(
                events.c.touchpoint_id.in_([row.id for row in rows]),
                events.c.kind.in_(ENGAGEMENT),
            )
        ):
            seen[touchpoint_id].add(kind)
    history: dict[int, list[tuple[int, PastTouch]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.sent_at or r.due_at, r.id), reverse=True):
        touch = PastTouch(
            at=row.sent_at or row.due_at,
            channel=row.channel,
            step_id=row.step_id,
            status=row.status,
            engagement=tuple(kind for kind in ENGAGEMENT if kind in seen[row.id]),
        )
        history[row.enrollment_id].append((row.id, touch))
    return history


def owners(connection: Connection) -> list[str]:
    """Every owner with an open task, sorted."""
    found = connection.execute(
        select(tasks.c.owner).where(tasks.c.status == "open", tasks.c.owner != "").distinct()
    ).scalars()
    return sorted({owner.lower() for owner in found})


def task_zone(connection: Connection, task_id: int) -> str:
    """The zone a task's times are shown in: the prospect's, else its sequence's, else UTC."""
    row = connection.execute(
        select(prospects.c.timezone, enrollments.c.sequence_version_id)
        .select_from(tasks)
        .join(prospects, prospects.c.id == tasks.c.prospect_id)
        .outerjoin(enrollments, enrollments.c.id == tasks.c.enrollment_id)
        .where(tasks.c.id == task_id)
    ).first()
    if row is None:
        return "UTC"
    if row.timezone:
        return str(row.timezone)
    if row.sequence_version_id is None:
        return "UTC"
    return load_version(connection, row.sequence_version_id).timezone


def task_person(connection: Connection, task_id: int) -> tuple[str, str | None] | None:
    """(prospect's name, outcome) of a task, for the line saying it was logged."""
    row = connection.execute(
        select(prospects.c.first_name, prospects.c.last_name, prospects.c.email, tasks.c.outcome)
        .join(prospects, prospects.c.id == tasks.c.prospect_id)
        .where(tasks.c.id == task_id)
    ).first()
    if row is None:
        return None
    name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
    return name, row.outcome
