"""Enrolling a CRM export as it is read: rows checked one by one, written in batches.

The whole import is one transaction: by default, a single row with a problem rolls back
everything (the rows after it are still checked, so that every problem is listed at
once); with ``skip_invalid`` the valid rows are enrolled and the others listed. Memory
stays bounded whatever the file's size: a batch of rows at a time, and counts and
samples, not lists of every prospect, in the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from relance.csvimport import ContactReader, RowError
from relance.enrollments import (
    EnrollResult,
    FirstTouch,
    enroll_within,
    next_attempt,
    preview_within,
    sequence_digest,
)
from relance.prospect import Prospect
from relance.reenrollment import Refusal
from relance.rendering import choose_locale
from relance.spec import Sequence
from relance.store import Store
from relance.tables import sequence_versions

BATCH = 2000
"""Rows written at a time."""

SQLITE_CACHE_KB = 65_536
"""SQLite's page cache while importing (its default is 2 MB)."""

SAMPLE = 10_000
"""At most this many enrolled prospects, skipped rows and row problems are listed in a
report (all are counted): memory stays bounded whatever the file's size."""


@dataclass(frozen=True)
class SkippedRow:
    """A valid row that was not enrolled, and why."""

    line: int
    email: str
    why: Refusal


@dataclass
class ImportReport:
    """What an import did (or, dry, would do)."""

    file_name: str
    sequence_id: str
    dry_run: bool
    rows: int = 0
    enrolled: int = 0
    enrolled_sample: list[tuple[str, int]] = field(default_factory=list)
    """(email, enrollment id) of the first ``SAMPLE`` prospects enrolled (id 0 when dry)."""
    touchpoints: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    """The first ``SAMPLE`` rows not enrolled (``skip_counts`` counts them all)."""
    skip_counts: Counter[str] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    """The first ``SAMPLE`` row problems (``invalid_rows`` counts the rows that have any)."""
    invalid_rows: int = 0
    version: int | None = None
    first: FirstTouch | None = None
    languages: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(prospect's language, language written in) -> prospects, where the two differ."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skip_counts.values())

    def add_errors(self, errors: list[RowError]) -> None:
        self.invalid_rows += 1
        room = SAMPLE - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])

    def add(self, batch: list[tuple[int, Prospect]], result: EnrollResult) -> None:
        lines = {person.email: line for line, person in batch}
        self.enrolled += len(result.enrolled)
        room = SAMPLE - len(self.enrolled_sample)
        if room > 0:
            self.enrolled_sample.extend(result.enrolled[:room])
        self.touchpoints += result.touchpoints
        skipped = sorted(
            (SkippedRow(lines[email], email, why) for email, why in result.skipped()),
            key=lambda row: row.line,
        )
        self.skip_counts.update(row.why.kind for row in skipped)
        self.skipped.extend(skipped[: max(0, SAMPLE - len(self.skipped))])
        first = result.first
        if first is not None and (self.first is None or first.due_at < self.first.due_at):
            self.first = first


class Abandoned(Exception):  # a signal to roll back, not an error to show
    """Raised inside the transaction to roll back an import whose rows have problems."""


ProgressCallback = Callable[[int], None]


def import_contacts(
    store: Store,
    sequence: Sequence,
    open_reader: Callable[[], ContactReader],
    *,
    start: datetime,
    now: datetime,
    skip_invalid: bool = False,
    dry_run: bool = False,
    on_row: ProgressCallback | None = None,
    batch: int = BATCH,
) -> ImportReport:
    """Check and enroll every row ``open_reader()`` yields, in batches, in one transaction.

    Nothing is written when a row has a problem and ``skip_invalid`` is False (the report
    lists every problem), nor when ``dry_run``. Concurrent imports of the same prospects
    (PostgreSQL) collide on a unique key: the import then runs again from the start.
    """
    attempt = 1
    while True:
        reader = open_reader()
        report = ImportReport(reader.file_name, sequence.id, dry_run)
        try:
            if dry_run:
                with store.reading() as connection:
                    _run(connection, sequence, reader, report, start, now, True, on_row, batch)
                return report
            with store.transaction() as connection:
                if connection.dialect.name == "sqlite":
                    # Index pages of a big import stay in memory rather than being re-read.
                    connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
                _run(connection, sequence, reader, report, start, now, skip_invalid, on_row, batch)
                if report.invalid_rows and not skip_invalid:
                    raise Abandoned
                report.version = _version_number(connection, sequence, report)
            return report
        except Abandoned:
            return report
        except IntegrityError as error:
            attempt = next_attempt(attempt, error)


def _run(
    connection: Connection,
    sequence: Sequence,
    reader: ContactReader,
    report: ImportReport,
    start: datetime,
    now: datetime,
    keep_going: bool,
    on_row: ProgressCallback | None,
    batch: int,
) -> None:
    pending: list[tuple[int, Prospect]] = []
    writing = True

    def flush() -> None:
        people = [person for _, person in pending]
        if report.dry_run:
            result = preview_within(connection, sequence, people, now)
        else:
            result = enroll_within(connection, sequence, people, start=start, now=now)
        report.add(pending, result)
        enrolled = {email for email, _ in result.enrolled}
        for person in people:
            if person.email in enrolled:
                used, _ = choose_locale(sequence, person.locale)
                if person.locale is not None and used != person.locale:
                    report.languages[(person.locale, used)] += 1
        pending.clear()

    for line, prospect, errors in reader:
        if errors:
            report.add_errors(errors)
            if not keep_going:
                writing = False
                pending.clear()
        elif writing and prospect is not None:
            pending.append((line, prospect))
            if len(pending) >= batch:
                flush()
        if on_row is not None and reader.total % 1000 == 0:
            on_row(reader.total)
    if writing and pending:
        flush()
    report.rows = reader.total
    if on_row is not None:
        on_row(reader.total)


def _version_number(connection: Connection, sequence: Sequence, report: ImportReport) -> int | None:
    if not report.enrolled:
        return None
    digest, _ = sequence_digest(sequence)
    return connection.execute(
        select(sequence_versions.c.version).where(
            sequence_versions.c.sequence_id == sequence.id, sequence_versions.c.digest == digest
        )
    ).scalar()
