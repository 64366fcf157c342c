"""``relance enroll SEQUENCE --csv FILE``: a CRM export read as it comes, enrolled in batches.

The file is streamed: each row is checked, valid rows are written a batch at a time, all
in one transaction (nothing is written when a row has a problem, unless --skip-invalid).
The summary says how each column was read (with --dry-run), why each row that was not
enrolled was skipped, with counts, and which language prospects get when theirs has no
templates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
import yaml

from relance.cli.app import stderr
from relance.cli.console import format_instant, iso
from relance.csvimport import ContactReader, check_mapping, count_lines, file_lines
from relance.errors import InputError
from relance.importing import SAMPLE, ImportReport, import_contacts
from relance.spec import Sequence
from relance.store import Store

SHOWN_SKIPS = 100
"""Skipped rows listed one by one in the text summary (--json lists them all)."""


def read_mapping(path: Path) -> dict[str, str | None]:
    """A --map file: YAML, CSV header -> field (``-`` or nothing: leave the column out)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"--map: cannot read {path}: {getattr(error, 'strerror', error)}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        raise InputError(f"{where}: expected YAML such as 'Sujet salon: trade_show'") from None
    return check_mapping(data, path.name)


def enroll_csv(
    store_factory: Callable[[], Store],
    sequence: Sequence,
    csv_file: Path,
    *,
    mapping: dict[str, str | None] | None,
    start: datetime,
    now: datetime,
    dry_run: bool,
    skip_invalid: bool,
    as_json: bool,
    progress: Callable[[str, int], Any],
) -> None:
    """Check and enroll every row of ``csv_file`` and print the summary."""

    def open_reader() -> ContactReader:
        return ContactReader(
            file_lines(csv_file),
            csv_file.name,
            required=sequence.required_fields,
            sequence_id=sequence.id,
            mapping=mapping,
        )

    first = open_reader()  # problems of the file as a whole stop here, before any write
    readers = iter([first])
    store = store_factory()
    label = f"{'Checking' if dry_run else 'Enrolling'} {csv_file.name}"
    with progress(label, count_lines(csv_file)) as advance:
        report = import_contacts(
            store,
            sequence,
            lambda: next(readers, None) or open_reader(),
            start=start,
            now=now,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            on_row=advance,
        )
    summary = import_summary(report, first)
    if report.invalid_rows and not skip_invalid:
        print_row_errors(report)
        valid = report.rows - report.invalid_rows
        bad = report.invalid_rows
        raise InputError(
            f"{bad} row{'' if bad == 1 else 's'} of {csv_file.name} "
            f"{'has' if bad == 1 else 'have'} problems: nothing enrolled "
            f"(fix them, or use --skip-invalid to enroll the "
            f"{valid} valid row{'' if valid == 1 else 's'})"
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    if report.errors:
        print_row_errors(report)
    typer.echo(format_import(summary))


def print_row_errors(report: ImportReport) -> None:
    for error in report.errors:
        stderr.print(error.format(report.file_name), markup=False)
    listed = len({error.line for error in report.errors})
    if report.invalid_rows > listed:
        stderr.print(f"... and {report.invalid_rows - listed} more rows with problems")


def import_summary(report: ImportReport, reader: ContactReader) -> dict[str, Any]:
    """The summary as data (``--json``)."""
    first = report.first
    return {
        "sequence": report.sequence_id,
        "version": report.version,
        "dry_run": report.dry_run,
        "file": report.file_name,
        "rows": report.rows,
        "preset": reader.preset,
        "columns": [
            {"header": column.header, "field": column.field, "source": column.source}
            for column in reader.mapping
        ],
        "enrolled_count": report.enrolled,
        "enrolled": [
            {"email": email, "enrollment_id": eid or None} for email, eid in report.enrolled_sample
        ],
        "skipped": [
            {"line": row.line, "email": row.email, "kind": row.why.kind, "reason": str(row.why)}
            for row in report.skipped
        ],
        "skipped_count": report.skipped_total,
        "skipped_counts": dict(report.skip_counts),
        "invalid_rows": report.invalid_rows,
        "invalid": [
            {"line": e.line, "column": e.column, "message": e.message} for e in report.errors
        ],
        "languages": [
            {"prospect": wanted, "written_in": used, "prospects": count}
            for (wanted, used), count in sorted(report.languages.items())
        ],
        "touchpoints": report.touchpoints,
        "first_touch": None
        if first is None
        else {
            "step": first.step_id,
            "email": first.email,
            "due_at": iso(first.due_at),
            "zone": first.zone,
            "text": format_instant(first.due_at, first.zone),
        },
    }


def format_import(summary: dict[str, Any]) -> str:
    """The human summary of an import (or of a dry run)."""
    lines: list[str] = []
    invalid = summary["invalid_rows"]
    skipped = f", {_count(invalid, 'invalid row')} skipped" if invalid else ""
    lines.append(f"{summary['file']}: {_count(summary['rows'], 'row')} checked{skipped}")
    if summary["dry_run"]:
        preset = f" ({summary['preset']} export)" if summary["preset"] else ""
        lines.append(f"columns{preset}:")
        for column in summary["columns"]:
            target = column["field"] or "left out"
            how = "" if column["source"] == "standard" else f" ({column['source']})"
            lines.append(f"  {column['header'].strip()!r} -> {target}{how}")
    lines.append(outcome_line(summary, summary["enrolled_count"]))
    skips, total = summary["skipped"], summary["skipped_count"]
    for row in skips[:SHOWN_SKIPS]:
        lines.append(
            f"{summary['file']}:{row['line']} {row['email']} not enrolled: {row['reason']}"
        )
    if total > SHOWN_SKIPS:
        lines.append(f"... and {total - SHOWN_SKIPS} more (--json lists up to {SAMPLE:,})")
    if total:
        counts = ", ".join(f"{kind} {n}" for kind, n in summary["skipped_counts"].items())
        lines.append(f"not enrolled {total}: {counts}")
    for language in summary["languages"]:
        lines.append(
            f"language: {_count(language['prospects'], 'prospect')} in {language['prospect']} "
            f"written to in {language['written_in']} (no {language['prospect']} templates)"
        )
    first = summary["first_touch"]
    if first is not None:
        lines.append(f"first touch: {first['step']} for {first['email']} on {first['text']}")
    return "\n".join(lines)


def outcome_line(summary: dict[str, Any], enrolled: int) -> str:
    """ "enrolled 3 in outreach (version 1): 9 touches planned", or what a dry run would do."""
    if summary["dry_run"]:
        return f"dry run, nothing written: would enroll {enrolled} in {summary['sequence']}"
    version = f" (version {summary['version']})" if summary["version"] else ""
    touches = _count(summary["touchpoints"], "touch", "touches")
    return f"enrolled {enrolled} in {summary['sequence']}{version}: {touches} planned"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
