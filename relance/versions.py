"""Versions of a sequence, and moving live enrollments to the latest one.

Each distinct content of a sequence file is stored once, as a version numbered 1, 2, ...
per sequence (``enrollments.save_version``, by digest). A prospect keeps the version they
were enrolled on: editing the YAML changes nothing for them, only for the prospects
enrolled afterwards, until ``migrate_enrollments`` (``relance migrate SEQUENCE
--to-latest``) moves the live enrollments (active or paused) to the version of the file
as it is now, in one transaction: touches are kept, skipped, re-planned or added as
``relance.version_move`` decides, the enrollment records the new version, and the
prospect's timeline a "migrated" event. That event also tells the dispatcher the version
the thread's first email was sent with, so that later emails still answer the subject the
prospect saw. Touches of a booked meeting (confirmation, reminder) are left alone.

Versions pin the YAML, not the template files: a template edited in place reaches every
prospect at their next touch (right for a typo). To change the wording for new prospects
only, point the step (or a variant) at a new file; ``relance versions`` warns when a
version with live enrollments names a template that is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, select, update

from relance.engine import LIVE
from relance.enrollments import (
    CHUNK,
    load_version,
    prospect_from_db,
    save_version,
    sequence_digest,
)
from relance.spec import Sequence
from relance.store import Store
from relance.tables import enrollments, events, prospects, sequence_versions, touchpoints
from relance.version_move import (
    ADDED,
    REPLANNED,
    SKIPPED,
    UNCHANGED,
    StoredTouch,
    TouchMove,
    VersionMove,
)


@dataclass(frozen=True)
class EnrollmentMove:
    """One enrollment moved (or to be moved) from its version to the new one."""

    enrollment_id: int
    prospect_id: int
    email: str
    zone: str
    from_version: int
    from_version_id: int
    touches: list[TouchMove]


@dataclass
class MigrationReport:
    """What ``migrate_enrollments`` did, or would do in a dry run."""

    sequence_id: str
    version: int
    stored: bool
    """The version was stored before (False: stored by this migration, or it would be)."""
    dry_run: bool
    enrollments: list[EnrollmentMove] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for e in self.enrollments for t in e.touches if t.action == action)


@dataclass(frozen=True)
class StoredVersion:
    """A version of a sequence in the store, with the enrollments on it."""

    id: int
    version: int
    created_at: datetime
    sequence: Sequence
    live: int
    """Enrollments on it that are active or paused."""
    total: int


def stored_versions(store: Store, sequence_id: str) -> list[StoredVersion]:
    """Every stored version of a sequence, oldest first, with its enrollment counts."""
    live = func.sum(case((enrollments.c.status.in_([s.value for s in LIVE]), 1), else_=0))
    counts = (
        select(
            enrollments.c.sequence_version_id,
            func.count().label("total"),
            live.label("live"),
        )
        .where(enrollments.c.sequence_id == sequence_id)
        .group_by(enrollments.c.sequence_version_id)
        .subquery()
    )
    query = (
        select(
            sequence_versions.c.id,
            sequence_versions.c.version,
            sequence_versions.c.created_at,
            func.coalesce(counts.c.live, 0).label("live"),
            func.coalesce(counts.c.total, 0).label("total"),
        )
        .outerjoin(counts, counts.c.sequence_version_id == sequence_versions.c.id)
        .where(sequence_versions.c.sequence_id == sequence_id)
        .order_by(sequence_versions.c.version)
    )
    with store.reading() as connection:
        return [
            StoredVersion(
                row.id,
                row.version,
                row.created_at,
                load_version(connection, row.id),
                int(row.live),
                int(row.total),
            )
            for row in connection.execute(query).all()
        ]


def version_of(store: Store, sequence: Sequence) -> int | None:
    """The number of the stored version with exactly this content, or None."""
    digest, _ = sequence_digest(sequence)
    with store.reading() as connection:
        value = connection.execute(
            select(sequence_versions.c.version).where(
                sequence_versions.c.sequence_id == sequence.id,
                sequence_versions.c.digest == digest,
            )
        ).scalar()
    return None if value is None else int(value)


def migrate_enrollments(
    store: Store, sequence: Sequence, *, now: datetime, dry_run: bool = False
) -> MigrationReport:
    """Move every live enrollment of ``sequence`` to this content of it, in one transaction.

    ``sequence`` is the file as it is now: it is stored as a new version if it is new. A
    dry run decides the same and writes nothing.
    """
    if dry_run:
        with store.reading() as connection:
            return _migrate(connection, store, sequence, now, dry_run=True)
    with store.transaction() as connection:
        return _migrate(connection, store, sequence, now, dry_run=False)


def _migrate(
    connection: Connection, store: Store, sequence: Sequence, now: datetime, *, dry_run: bool
) -> MigrationReport:
    version_id, number, stored = _target(connection, sequence, now, dry_run=dry_run)
    report = MigrationReport(sequence.id, number, stored, dry_run)
    query = (
        select(
            enrollments.c.id,
            enrollments.c.prospect_id,
            enrollments.c.sequence_version_id,
            enrollments.c.deal_value,
            enrollments.c.cycle_days,
            enrollments.c.enrolled_at,
            sequence_versions.c.version,
            *(prospects.c[name] for name in _PROSPECT_COLUMNS),
        )
        .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        .join(sequence_versions, sequence_versions.c.id == enrollments.c.sequence_version_id)
        .where(
            enrollments.c.sequence_id == sequence.id,
            enrollments.c.status.in_([status.value for status in LIVE]),
        )
        .order_by(enrollments.c.id)
    )
    if version_id is not None:
        query = query.where(enrollments.c.sequence_version_id != version_id)
    if store.skip_locked and not dry_run:
        query = query.with_for_update(of=enrollments)
    rows = list(connection.execute(query))
    lock = store.skip_locked and not dry_run
    touches = _touches(connection, [row.id for row in rows], lock=lock)
    move = VersionMove(sequence, number)
    for row in rows:
        person = prospect_from_db(row, row.deal_value, row.cycle_days)
        decided = move.decide(
            load_version(connection, row.sequence_version_id),
            touches.get(row.id, []),
            person,
            enrolled_at=row.enrolled_at,
            now=now,
        )
        zone = person.timezone or sequence.timezone
        report.enrollments.append(
            EnrollmentMove(
                row.id,
                row.prospect_id,
                person.email,
                zone,
                row.version,
                row.sequence_version_id,
                decided,
            )
        )
    if version_id is not None and not dry_run:
        _write(connection, sequence, version_id, report, now)
    return report


_PROSPECT_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "timezone",
    "timezone_source",
    "country",
    "region",
    "locale",
    "owner",
    "fields",
)
"""What ``prospect_from_db`` reads."""


def _target(
    connection: Connection, sequence: Sequence, now: datetime, *, dry_run: bool
) -> tuple[int | None, int, bool]:
    """(stored version id or None in a dry run, version number, stored before)."""
    digest, _ = sequence_digest(sequence)
    found = connection.execute(
        select(sequence_versions.c.id, sequence_versions.c.version).where(
            sequence_versions.c.sequence_id == sequence.id, sequence_versions.c.digest == digest
        )
    ).first()
    if found is not None:
        return int(found.id), int(found.version), True
    if dry_run:
        latest = connection.execute(
            select(func.max(sequence_versions.c.version)).where(
                sequence_versions.c.sequence_id == sequence.id
            )
        ).scalar()
        return None, (latest or 0) + 1, False
    version_id = save_version(connection, sequence, now)
    number = connection.execute(
        select(sequence_versions.c.version).where(sequence_versions.c.id == version_id)
    ).scalar_one()
    return version_id, int(number), False


def _touches(connection: Connection, ids: list[int], *, lock: bool) -> dict[int, list[StoredTouch]]:
    """The chase touches of each enrollment (not those of a booked meeting), in order."""
    found: dict[int, list[StoredTouch]] = {}
    for chunk in _chunks(ids):
        query = (
            select(
                touchpoints.c.id,
                touchpoints.c.enrollment_id,
                touchpoints.c.step_id,
                touchpoints.c.channel,
                touchpoints.c.position,
                touchpoints.c.status,
                touchpoints.c.due_at,
                touchpoints.c.variant,
                touchpoints.c.moved,
            )
            .where(touchpoints.c.enrollment_id.in_(chunk), touchpoints.c.meeting_id.is_(None))
            .order_by(touchpoints.c.enrollment_id, touchpoints.c.position, touchpoints.c.id)
        )
        if lock:
            query = query.with_for_update()
        for row in connection.execute(query):
            found.setdefault(row.enrollment_id, []).append(
                StoredTouch(
                    row.id,
                    row.step_id,
                    row.channel,
                    row.position,
                    row.status,
                    row.due_at,
                    row.variant,
                    tuple(row.moved or ()),
                )
            )
    return found


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _write(
    connection: Connection,
    sequence: Sequence,
    version_id: int,
    report: MigrationReport,
    now: datetime,
) -> None:
    skipped: list[dict[str, Any]] = []
    planned: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for moved in report.enrollments:
        for touch in moved.touches:
            if touch.action == SKIPPED:
                skipped.append({"b_id": touch.touchpoint_id, "b_reason": touch.reason})
            elif touch.action in (REPLANNED, UNCHANGED):
                assert touch.channel is not None
                planned.append(
                    {
                        "b_id": touch.touchpoint_id,
                        "b_due": touch.due_after,
                        "b_moved": list(touch.moved) or None,
                        "b_position": touch.position,
                        "b_channel": touch.channel.value,
                        "b_variant": touch.variant,
                    }
                )
            elif touch.action == ADDED:
                assert touch.channel is not None and touch.due_after is not None
                added.append(
                    {
                        "enrollment_id": moved.enrollment_id,
                        "key": touch.step_id,
                        "step_id": touch.step_id,
                        "channel": touch.channel.value,
                        "position": touch.position,
                        "sequence_id": sequence.id,
                        "due_at": touch.due_after,
                        "status": "planned",
                        "moved": list(touch.moved) or None,
                        "variant": touch.variant,
                        "created_at": now,
                    }
                )
    still_planned = (touchpoints.c.id == bindparam("b_id"), touchpoints.c.status == "planned")
    if skipped:
        connection.execute(
            update(touchpoints)
            .where(*still_planned)
            .values(status="skipped", reason=bindparam("b_reason")),
            skipped,
        )
    if planned:
        connection.execute(
            update(touchpoints)
            .where(*still_planned)
            .values(
                due_at=bindparam("b_due"),
                moved=bindparam("b_moved"),
                position=bindparam("b_position"),
                channel=bindparam("b_channel"),
                variant=bindparam("b_variant"),
            ),
            planned,
        )
    if added:
        connection.execute(insert(touchpoints), added)
    ids = [moved.enrollment_id for moved in report.enrollments]
    for chunk in _chunks(ids):
        connection.execute(
            update(enrollments)
            .where(enrollments.c.id.in_(chunk))
            .values(sequence_version_id=version_id, updated_at=now)
        )
    if report.enrollments:
        connection.execute(
            insert(events),
            [
                {
                    "prospect_id": moved.prospect_id,
                    "enrollment_id": moved.enrollment_id,
                    "kind": "migrated",
                    "source": "cli",
                    "occurred_at": now,
                    "recorded_at": now,
                    "data": {
                        "from_version_id": moved.from_version_id,
                        "from_version": moved.from_version,
                        "to_version": report.version,
                        "note": f"version {moved.from_version} -> {report.version}",
                    },
                }
                for moved in report.enrollments
            ],
        )
