"""Intake: a CRM export routed row by row, then every group enrolled in one transaction.

``plan_intake`` reads the CSV, merges each row's qualification over what the store
already knows of the contact, routes it (``relance.routing``) and checks the fields the
chosen sequence's templates need; ``enroll_intake`` then enrolls every group at once and
moves each enrolled contact to the stage of its rule (forward only, source "routing").
``route_and_enroll`` does both. Contacts routed to no sequence are listed, not saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select

from relance.catalog import resolve_sequence
from relance.csvimport import Contacts, RowError, read_contacts
from relance.enrollments import CHUNK, EnrollResult, enroll_groups
from relance.errors import ProspectError
from relance.lifecycle import StageMove, advance_stage, stored_qualification
from relance.prospect import Prospect
from relance.qualification import Qualification, Stage, automatic_move, qualification_of
from relance.routing import Route, Routing, resolve_routing, route
from relance.settings import Settings
from relance.spec import Sequence
from relance.store import Store
from relance.tables import prospects

SOURCE = "routing"


@dataclass(frozen=True)
class RoutedContact:
    """One row of the file, where it goes and why."""

    line: int
    prospect: Prospect
    qualification: Qualification
    """The contact's qualification once this row is saved over what the store knew."""
    route: Route

    @property
    def stage_after(self) -> Stage:
        """The stage the contact is at once enrolled (never behind where it was)."""
        current = self.qualification.stage
        if self.route.stage is None:
            return current
        return automatic_move(current, self.route.stage) or current


@dataclass
class RoutingReport:
    """What routing a file decided and, once enrolled, what it did."""

    file_name: str
    rows: int
    contacts: list[RoutedContact]
    errors: list[RowError]
    sequences: dict[str, Sequence]
    """The sequences the rules name, in the order of the rules."""
    results: dict[str, EnrollResult] = field(default_factory=dict)
    moves: list[StageMove] = field(default_factory=list)
    enrolled: bool = False

    @property
    def invalid_lines(self) -> list[int]:
        return sorted({error.line for error in self.errors})

    def valid(self) -> list[RoutedContact]:
        bad = set(self.invalid_lines)
        return [contact for contact in self.contacts if contact.line not in bad]

    def groups(self) -> dict[str, list[RoutedContact]]:
        """Valid contacts by sequence id, in the order of the rules."""
        by_sequence: dict[str, list[RoutedContact]] = {sid: [] for sid in self.sequences}
        for contact in self.valid():
            if contact.route.sequence_id is not None:
                by_sequence[contact.route.sequence_id].append(contact)
        return {sid: group for sid, group in by_sequence.items() if group}

    def unrouted(self) -> list[RoutedContact]:
        return [c for c in self.valid() if c.route.sequence_id is None]


def route_contacts(
    contacts: Contacts,
    routing: Routing,
    sequences: dict[str, Sequence],
    stored: dict[str, Qualification],
) -> tuple[list[RoutedContact], list[RowError]]:
    """Route every valid row (pure); the errors of rows missing a field their sequence's
    templates use."""
    routed: list[RoutedContact] = []
    errors: list[RowError] = []
    for row in contacts.rows:
        qualification = qualification_of(row.prospect, stored.get(row.prospect.email))
        where = route(qualification, routing)
        routed.append(RoutedContact(row.line, row.prospect, qualification, where))
        if where.sequence_id is None:
            continue
        sequence = sequences[where.sequence_id]
        for name in sequence.required_fields:
            if row.prospect.fields.get(name, "").strip():
                continue
            got = "an empty cell" if name in contacts.columns else "no such column in the file"
            errors.append(
                RowError(
                    row.line,
                    name,
                    f"expected a value (routed to {sequence.id}, whose templates use it), "
                    f"got {got}",
                )
            )
    return routed, errors


def stored_qualifications(
    connection: Connection, emails: Iterable[str]
) -> dict[str, Qualification]:
    """email -> the qualification the store holds, for the known contacts among ``emails``."""
    listed = list(emails)
    found: dict[str, Qualification] = {}
    for start in range(0, len(listed), CHUNK):
        for row in connection.execute(
            select(prospects).where(prospects.c.email.in_(listed[start : start + CHUNK]))
        ):
            found[row.email] = stored_qualification(row)
    return found


def plan_intake(
    store: Store,
    settings: Settings,
    csv_text: str,
    *,
    file_name: str,
    routing: Routing | None = None,
) -> RoutingReport:
    """Read, qualify and route every row of a CSV export; nothing is written."""
    routing = routing or resolve_routing(None, settings)
    sequences = {sid: resolve_sequence(sid, settings) for sid in _in_rule_order(routing)}
    contacts = read_contacts(csv_text, file_name)
    with store.reading() as connection:
        stored = stored_qualifications(connection, (p.email for p in contacts.prospects))
    routed, field_errors = route_contacts(contacts, routing, sequences, stored)
    errors = sorted([*contacts.errors, *field_errors], key=lambda error: error.line)
    return RoutingReport(file_name, contacts.total, routed, errors, sequences)


def enroll_intake(
    store: Store, report: RoutingReport, *, start: datetime, now: datetime
) -> RoutingReport:
    """Enroll the valid rows of ``report``, every group in one transaction, and move each
    contact enrolled now to its rule's stage (forward only)."""
    groups = report.groups()
    plan = [
        (report.sequences[sid], [contact.prospect for contact in group])
        for sid, group in groups.items()
    ]
    targets = {contact.prospect.email: contact for group in groups.values() for contact in group}
    moves: list[StageMove] = []

    def move_stages(connection: Connection, results: list[EnrollResult]) -> None:
        moves.clear()  # a retried transaction starts over
        emails = [email for result in results for email, _ in result.enrolled]
        ids = _prospect_ids(connection, emails)
        for email in emails:
            contact = targets[email]
            move = advance_stage(
                connection,
                ids[email],
                contact.stage_after,
                now=now,
                source=SOURCE,
                note=contact.route.rule,
            )
            if move is not None:
                moves.append(move)

    results = enroll_groups(store, plan, start=start, now=now, after=move_stages)
    report.results = dict(zip(groups, results, strict=True))
    report.moves = moves
    report.enrolled = True
    return report


def route_and_enroll(
    store: Store,
    settings: Settings,
    csv_text: str,
    *,
    start: datetime,
    now: datetime,
    file_name: str = "leads.csv",
    routing: Routing | None = None,
) -> RoutingReport:
    """Route every row of a CSV export and enroll them, all or nothing: ProspectError if
    any row has a problem (``RowError.format`` words each one)."""
    report = plan_intake(store, settings, csv_text, file_name=file_name, routing=routing)
    if report.errors:
        raise ProspectError("\n".join(error.format(file_name) for error in report.errors))
    return enroll_intake(store, report, start=start, now=now)


def _in_rule_order(routing: Routing) -> list[str]:
    return list(dict.fromkeys(r.sequence for r in routing.rules if r.sequence is not None))


def _prospect_ids(connection: Connection, emails: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for start in range(0, len(emails), CHUNK):
        for row in connection.execute(
            select(prospects.c.email, prospects.c.id).where(
                prospects.c.email.in_(emails[start : start + CHUNK])
            )
        ):
            ids[row.email] = row.id
    return ids
