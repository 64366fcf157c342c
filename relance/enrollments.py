"""Enrolling prospects: saving them, pinning the sequence version, planning every touch.

An enrollment is atomic: either every prospect given is checked and written with its
planned touchpoints, or nothing is. Enrolled prospects keep the sequence version they
started on; the dispatcher reads that version from the store, not the YAML file. The
A/B variant of each touch is chosen here, once (``relance.variants``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from relance.cadence import PlannedTouch, known, plan_touchpoints, stretch_factor
from relance.engine import Status
from relance.errors import StoreError
from relance.lifecycle import advance_stage, record_first_stages
from relance.prospect import Prospect, one_line
from relance.qualification import INITIAL_STAGE, Stage
from relance.reenrollment import History, PastEnrollment, Refusal, refusal
from relance.spec import Sequence
from relance.store import Store, among, converters, insert_many, insert_processed
from relance.tables import enrollments, prospects, sequence_versions, suppressions, touchpoints
from relance.variants import assign_variants
from relance.zones import ZoneSource

CHUNK = 500
LOOKUP_CHUNK = 2000
"""Values in one IN (...) when reading back what a batch just wrote."""


@dataclass
class EnrollResult:
    """What an enrollment did, prospect by prospect."""

    enrolled: list[tuple[str, int]] = field(default_factory=list)
    """(email, enrollment id) of the prospects enrolled now."""
    already_active: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    refused: list[tuple[str, Refusal]] = field(default_factory=list)
    """(email, why) of the prospects the re-enrollment rules keep out (relance.reenrollment):
    booked, client, stopped, replied, active elsewhere, completed and cooling down."""
    touchpoints: int = 0

    first: FirstTouch | None = None
    """The earliest touch planned now."""

    def skipped(self) -> list[tuple[str, Refusal]]:
        """(email, why) of every prospect not enrolled now."""
        active = Refusal("already active", "already active")
        return [
            *((email, Refusal("suppressed", "suppressed")) for email in self.suppressed),
            *((email, active) for email in self.already_active),
            *self.refused,
        ]


@dataclass(frozen=True)
class FirstTouch:
    due_at: datetime
    step_id: str
    email: str
    zone: str


def sequence_digest(sequence: Sequence) -> tuple[str, dict[str, Any]]:
    spec = sequence.model_dump(mode="json")
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest(), spec


def save_version(connection: Connection, sequence: Sequence, now: datetime) -> int:
    """The id of this exact sequence content, stored as a new version if it is new."""
    digest, spec = sequence_digest(sequence)
    existing = connection.execute(
        select(sequence_versions.c.id).where(
            sequence_versions.c.sequence_id == sequence.id, sequence_versions.c.digest == digest
        )
    ).scalar()
    if existing is not None:
        return int(existing)
    latest = connection.execute(
        select(func.max(sequence_versions.c.version)).where(
            sequence_versions.c.sequence_id == sequence.id
        )
    ).scalar()
    return int(
        connection.execute(
            insert(sequence_versions).returning(sequence_versions.c.id),
            {
                "sequence_id": sequence.id,
                "version": (latest or 0) + 1,
                "digest": digest,
                "spec": spec,
                "created_at": now,
            },
        ).scalar_one()
    )


_versions: weakref.WeakKeyDictionary[Engine, dict[int, Sequence]] = weakref.WeakKeyDictionary()
"""Stored versions never change: each is read once per store engine (not per URL: two
in-memory stores share theirs, and a database recreated under the same URL reuses ids)."""


def load_version(connection: Connection, version_id: int) -> Sequence:
    """The sequence exactly as it was when this version was stored."""
    known = _versions.setdefault(connection.engine, {})
    cached = known.get(version_id)
    if cached is None:
        spec = connection.execute(
            select(sequence_versions.c.spec).where(sequence_versions.c.id == version_id)
        ).scalar_one()
        cached = known[version_id] = Sequence.model_validate(spec)
    return cached


def prospect_zone(connection: Connection, prospect: Any) -> str:
    """The prospect's zone, else that of its latest enrollment's sequence, else UTC."""
    if prospect.timezone:
        return str(prospect.timezone)
    version = connection.execute(
        select(enrollments.c.sequence_version_id)
        .where(enrollments.c.prospect_id == prospect.id)
        .order_by(enrollments.c.enrolled_at.desc(), enrollments.c.id.desc())
        .limit(1)
    ).scalar()
    return "UTC" if version is None else load_version(connection, version).timezone


def prospect_row(prospect: Prospect, now: datetime) -> dict[str, Any]:
    return {
        "email": prospect.email,
        "first_name": prospect.first_name,
        "last_name": prospect.last_name,
        "company": prospect.company,
        "title": prospect.title,
        "phone": prospect.phone,
        "timezone": prospect.timezone,
        "timezone_source": prospect.timezone_source.value if prospect.timezone_source else None,
        "country": prospect.country,
        "region": prospect.region,
        "locale": prospect.locale,
        "owner": prospect.owner,
        "fields": dict(prospect.fields),
        "need": prospect.need,
        "budget": prospect.budget,
        "authority": prospect.authority,
        "timing": prospect.timing,
        "fit": prospect.fit,
        "stage": (prospect.stage or INITIAL_STAGE).value,
        "warmth": prospect.warmth.value if prospect.warmth else None,
        "created_at": now,
        "updated_at": now,
    }


def prospect_from_db(row: Any, deal_value: float = 0, cycle_days: float = 0) -> Prospect:
    """The Prospect a stored row (and an enrollment's deal figures) describes. Text stored
    before enrollment refused control characters is shown without them (``one_line``)."""
    return Prospect.model_construct(
        email=row.email,
        first_name=one_line(row.first_name),
        last_name=one_line(row.last_name),
        company=one_line(row.company),
        title=one_line(row.title),
        phone=one_line(row.phone),
        deal_value=deal_value,
        cycle_days=cycle_days,
        timezone=row.timezone,
        timezone_source=stored_zone_source(row.timezone, row.timezone_source),
        country=row.country,
        region=row.region,
        locale=row.locale,
        owner=one_line(row.owner),
        fields={
            str(name): value.replace("\x00", "") if isinstance(value, str) else value
            for name, value in (row.fields or {}).items()
        },
    )


def stored_zone_source(zone: str | None, source: str | None) -> ZoneSource:
    """Where a stored prospect's zone came from; rows stored before it was recorded say
    nothing: their zone was given, or the sequence's applies."""
    if source:
        return ZoneSource(source)
    return ZoneSource.GIVEN if zone else ZoneSource.SEQUENCE


def save_prospects(connection: Connection, people: list[Prospect], now: datetime) -> dict[str, int]:
    """Insert new prospects and refresh known ones (by email); returns email -> id.

    A known prospect keeps what the new data leaves empty: enrolling someone again by
    email alone does not erase their name, company, custom fields or scores. A new
    prospect's first stage (the one given, else lead) is recorded as a stage move; a
    known prospect moves to the stage given only if it is ahead (source "import").
    """
    ids: dict[str, int] = {}
    stored_fields: dict[str, dict[str, str]] = {}
    by_email = {person.email: person for person in people}
    emails = list(by_email)
    for start in range(0, len(emails), CHUNK):
        chunk = emails[start : start + CHUNK]
        for row in connection.execute(
            select(prospects.c.id, prospects.c.email, prospects.c.fields).where(
                among(connection, prospects.c.email, chunk)
            )
        ):
            ids[row.email] = row.id
            stored_fields[row.email] = dict(row.fields or {})
    known = [by_email[email] for email in emails if email in ids]
    for person in known:
        values = {
            key: value
            for key, value in prospect_row(person, now).items()
            if key not in ("created_at", "fields", "stage") and value not in ("", None)
        }
        if person.timezone is None:  # nothing new to say about the zone: keep the stored one
            values.pop("timezone_source", None)
        given = {key: value for key, value in person.fields.items() if value != ""}
        values["fields"] = {**stored_fields[person.email], **given}
        connection.execute(update(prospects).where(prospects.c.id == ids[person.email]), values)
        if person.stage is not None:
            advance_stage(connection, ids[person.email], person.stage, now=now, source="import")
    new = [prospect_row(by_email[email], now) for email in emails if email not in ids]
    if new:
        insert_many(connection, prospects, new)
        added = [row["email"] for row in new]
        for start in range(0, len(added), LOOKUP_CHUNK):
            found = connection.execute(
                select(prospects.c.email, prospects.c.id).where(
                    among(connection, prospects.c.email, added[start : start + LOOKUP_CHUNK])
                )
            )
            ids.update({row.email: row.id for row in found})
        first = {ids[row["email"]]: Stage(row["stage"]) for row in new}
        record_first_stages(connection, first, now=now, source="import")
    return ids


def suppressed_among(connection: Connection, emails: Iterable[str]) -> dict[str, str]:
    """email -> reason for the addresses on the suppression list."""
    found: dict[str, str] = {}
    listed = list(emails)
    for start in range(0, len(listed), CHUNK):
        for row in connection.execute(
            select(suppressions.c.email, suppressions.c.reason).where(
                among(connection, suppressions.c.email, listed[start : start + CHUNK])
            )
        ):
            found[row.email] = row.reason
    return found


def histories(
    connection: Connection, ids: Iterable[int], suppressed: Mapping[int, str] | None = None
) -> dict[int, History]:
    """prospect id -> its stage and every enrollment it had, in any sequence."""
    listed = list(ids)
    found: dict[int, History] = {}
    for start in range(0, len(listed), CHUNK):
        chunk = listed[start : start + CHUNK]
        for row in connection.execute(
            select(prospects.c.id, prospects.c.stage).where(
                among(connection, prospects.c.id, chunk)
            )
        ):
            found[row.id] = History(stage=row.stage, suppressed=(suppressed or {}).get(row.id))
        for row in connection.execute(
            select(
                enrollments.c.prospect_id,
                enrollments.c.sequence_id,
                enrollments.c.status,
                enrollments.c.reason,
                enrollments.c.completed_at,
                enrollments.c.updated_at,
            ).where(among(connection, enrollments.c.prospect_id, chunk))
        ):
            found[row.prospect_id].enrollments.append(
                PastEnrollment(
                    row.sequence_id,
                    Status(row.status),
                    row.reason,
                    row.completed_at or row.updated_at,
                )
            )
    return found


def touchpoint_rows(
    enrollment_id: int,
    sequence_id: str,
    plan: list[PlannedTouch],
    now: datetime,
    variants: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The rows of planned touches; ``variants`` maps step ids to their A/B variant."""
    chosen = variants or {}
    return [
        {
            "enrollment_id": enrollment_id,
            "key": touch.step_id,
            "step_id": touch.step_id,
            "channel": touch.channel.value,
            "position": touch.position,
            "sequence_id": sequence_id,
            "due_at": touch.due_at,
            "status": "planned",
            "moved": touch.moved or None,
            "variant": chosen.get(touch.step_id),
            "created_at": now,
        }
        for touch in plan
    ]


OPEN_TOUCHES = ("planned", "sending", "unknown")
"""Touch statuses that are not done yet: an enrollment with none left is complete."""


def complete_finished(connection: Connection, enrollment_ids: Iterable[int], now: datetime) -> int:
    """Mark ``completed`` the active enrollments among these whose every touch is done
    (sent, failed or skipped); returns how many."""
    listed = sorted(set(enrollment_ids))
    pending = (
        select(touchpoints.c.id)
        .where(
            touchpoints.c.enrollment_id == enrollments.c.id,
            touchpoints.c.status.in_(OPEN_TOUCHES),
        )
        .exists()
    )
    done = 0
    for start in range(0, len(listed), CHUNK):
        done += connection.execute(
            update(enrollments)
            .where(
                enrollments.c.id.in_(listed[start : start + CHUNK]),
                enrollments.c.status == Status.ACTIVE.value,
                ~pending,
            )
            .values(status=Status.COMPLETED.value, completed_at=now, updated_at=now)
        ).rowcount
    return done


TOUCH_COLUMNS = [
    "enrollment_id", "key", "step_id", "channel", "position", "sequence_id", "due_at",
    "status", "moved", "variant", "created_at",
]  # fmt: skip
"""The columns ``touchpoint_rows`` fills, enrollment id first."""

ENROLL_ATTEMPTS = 3
"""How many times an enrollment runs when concurrent ones keep taking its rows first."""


def enroll(
    store: Store,
    sequence: Sequence,
    people: list[Prospect],
    *,
    start: datetime,
    now: datetime,
) -> EnrollResult:
    """Enroll ``people`` in ``sequence`` in one transaction, their first touch from ``start``.

    A prospect already active (or paused) in this sequence is not enrolled twice; an
    address on the suppression list is refused, and so is anyone the re-enrollment rules
    keep out (``relance.reenrollment``). All are reported, not raised.
    """
    return enroll_groups(store, [(sequence, people)], start=start, now=now)[0]


AfterEnroll = Callable[[Connection, list[EnrollResult]], None]


def enroll_groups(
    store: Store,
    groups: list[tuple[Sequence, list[Prospect]]],
    *,
    start: datetime,
    now: datetime,
    after: AfterEnroll | None = None,
) -> list[EnrollResult]:
    """Enroll each group of people in its sequence, every group in ONE transaction.

    ``after(connection, results)`` runs in that transaction too (stage moves, say): if it
    fails, nothing is enrolled.

    Two enrollments of the same prospects at once (PostgreSQL lets them overlap) collide
    on a unique key: the one that loses is rolled back and runs again, and then reports
    the other's prospects as already active.
    """
    attempt = 1
    while True:
        try:
            with store.transaction() as connection:
                results = [
                    enroll_within(connection, sequence, people, start=start, now=now)
                    for sequence, people in groups
                ]
                if after is not None:
                    after(connection, results)
            return results
        except IntegrityError as error:
            attempt = next_attempt(attempt, error)


def next_attempt(attempt: int, error: IntegrityError) -> int:
    """The next try after a collision with a concurrent enrollment; StoreError past the last."""
    if attempt == ENROLL_ATTEMPTS:
        raise StoreError(f"enrollment kept colliding with concurrent ones: {error.orig}") from error
    return attempt + 1


def enroll_within(
    connection: Connection,
    sequence: Sequence,
    people: list[Prospect],
    *,
    start: datetime,
    now: datetime,
) -> EnrollResult:
    """``enroll`` inside a transaction the caller holds."""
    result = EnrollResult()
    version_id = save_version(connection, sequence, now)
    suppressed = suppressed_among(connection, (person.email for person in people))
    result.suppressed = [p.email for p in people if p.email in suppressed]
    candidates = [p for p in people if p.email not in suppressed]
    ids = save_prospects(connection, candidates, now)
    past = histories(connection, ids.values())
    seen: set[str] = set()
    plans: list[tuple[Prospect, dict[str, Any]]] = []
    for person in candidates:
        why = refusal(sequence, past[ids[person.email]], now)
        if person.email in seen or (why is not None and why.kind == "already active"):
            result.already_active.append(person.email)
            continue
        if why is not None:
            result.refused.append((person.email, why))
            continue
        seen.add(person.email)
        plans.append(
            (
                person,
                {
                    "prospect_id": ids[person.email],
                    "sequence_id": sequence.id,
                    "sequence_version_id": version_id,
                    "status": Status.ACTIVE.value,
                    "deal_value": person.deal_value,
                    "cycle_days": person.cycle_days,
                    "reply_token": secrets.token_hex(12),
                    "enrolled_at": now,
                    "updated_at": now,
                },
            )
        )
    if not plans:
        return result
    insert_many(connection, enrollments, [row for _, row in plans])
    enrolled: dict[int, int] = {}
    planned_ids = [row["prospect_id"] for _, row in plans]
    for offset in range(0, len(planned_ids), LOOKUP_CHUNK):
        for row in connection.execute(
            select(enrollments.c.prospect_id, enrollments.c.id).where(
                enrollments.c.sequence_id == sequence.id,
                enrollments.c.status == Status.ACTIVE.value,
                among(
                    connection,
                    enrollments.c.prospect_id,
                    planned_ids[offset : offset + LOOKUP_CHUNK],
                ),
            )
        ):
            enrolled[row.prospect_id] = row.id
    inserted = [enrolled[prospect_id] for prospect_id in planned_ids]
    planned: dict[tuple[Any, ...], tuple[list[PlannedTouch], list[tuple[Any, ...]]]] = {}
    has_variants = any(step.variants for step in sequence.steps)
    names = TOUCH_COLUMNS
    convert = converters(connection, touchpoints, names[1:])
    rows: list[tuple[Any, ...]] = []
    for (person, _), enrollment_id in zip(plans, inserted, strict=True):
        # A plan depends on the calendar and the stretch alone: prospects alike share one.
        stretch = stretch_factor(
            sequence.cadence, known(person.deal_value), known(person.cycle_days)
        )
        key = (person.country, person.timezone, stretch)
        if key not in planned:
            touches = plan_touchpoints(sequence, person, start)
            shared = [
                tuple(fn(row[name]) for fn, name in zip(convert, names[1:], strict=True))
                for row in touchpoint_rows(0, sequence.id, touches, now)
            ]
            planned[key] = (touches, shared)
        plan, shared = planned[key]
        if has_variants:
            variants = assign_variants(sequence, person.email)
            for touch in touchpoint_rows(enrollment_id, sequence.id, plan, now, variants):
                rows.append(
                    (
                        enrollment_id,
                        *(fn(touch[n]) for fn, n in zip(convert, names[1:], strict=True)),
                    )
                )
        else:
            rows.extend((enrollment_id, *values) for values in shared)
        result.enrolled.append((person.email, enrollment_id))
        if plan and (result.first is None or plan[0].due_at < result.first.due_at):
            zone = person.timezone or sequence.timezone
            result.first = FirstTouch(plan[0].due_at, plan[0].step_id, person.email, zone)
    insert_processed(connection, touchpoints, names, rows)
    result.touchpoints = len(rows)
    return result


def preview_within(
    connection: Connection, sequence: Sequence, people: list[Prospect], now: datetime
) -> EnrollResult:
    """What ``enroll_within`` would do, read without writing (enrolled ids are 0)."""
    result = EnrollResult()
    suppressed = suppressed_among(connection, (person.email for person in people))
    ids: dict[str, int] = {}
    emails = [person.email for person in people]
    for start in range(0, len(emails), CHUNK):
        for row in connection.execute(
            select(prospects.c.id, prospects.c.email).where(
                among(connection, prospects.c.email, emails[start : start + CHUNK])
            )
        ):
            ids[row.email] = row.id
    past = histories(connection, ids.values())
    seen: set[str] = set()
    for person in people:
        if person.email in suppressed:
            result.suppressed.append(person.email)
            continue
        known = past.get(ids.get(person.email, 0))
        history = History(
            stage=person.stage.value if person.stage else (known.stage if known else None),
            enrollments=known.enrollments if known else [],
        )
        why = refusal(sequence, history, now)
        if person.email in seen or (why is not None and why.kind == "already active"):
            result.already_active.append(person.email)
        elif why is not None:
            result.refused.append((person.email, why))
        else:
            seen.add(person.email)
            result.enrolled.append((person.email, 0))
    return result
