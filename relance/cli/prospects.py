"""``relance enroll`` (one prospect, or a CRM export) and ``relance status`` (a timeline)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from relance.catalog import resolve_sequence
from relance.cli.app import command, stderr
from relance.cli.console import (
    JsonOption,
    NowOption,
    format_instant,
    iso,
    open_store,
    output,
    parse_instant,
    read_now,
)
from relance.cli.imports import enroll_csv, outcome_line, read_mapping
from relance.cli.timeline import print_timeline, timeline
from relance.csvimport import Contacts, column_name
from relance.enrollments import EnrollResult, enroll, preview_within
from relance.errors import InputError, ProspectError
from relance.prospect import STANDARD_FIELDS, Prospect, prospect_from_row
from relance.settings import Settings
from relance.signals import find_prospect
from relance.spec import Sequence
from relance.store import Store
from relance.tables import enrollments, prospects, sequence_versions, touchpoints

PROGRESS_ROWS = 500
"""Files with more data rows than this show a progress bar (on a terminal)."""

# --- enroll --------------------------------------------------------------------------

_FLAGS = {name: "--" + name.replace("_", "-") for name in STANDARD_FIELDS}


@command("enroll")
def enroll_command(
    sequence_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="SEQUENCE",
            help="Sequence id or path to its YAML file (none with --route).",
            show_default=False,
        ),
    ] = None,
    email: Annotated[str | None, typer.Option(help="The prospect's email address.")] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="A CRM export: header line, one prospect per line."),
    ] = None,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    company: Annotated[str | None, typer.Option()] = None,
    title: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    deal_value: Annotated[
        str | None, typer.Option(help="Expected deal value, e.g. 25000.", show_default=False)
    ] = None,
    cycle_days: Annotated[
        str | None, typer.Option(help="Expected sales cycle in days.", show_default=False)
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone, e.g. Europe/Paris.")] = None,
    country: Annotated[
        str | None,
        typer.Option(help="Two-letter country, e.g. FR; or country and region, e.g. DE-BY."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            help="ISO 3166-2 region as the holidays library names it, e.g. US-CA, DE-BY, "
            "FR-57: its holidays, and its zone when --timezone is not given."
        ),
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Language, e.g. fr.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns the prospect (SDR).")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", help="A template field, key=value (repeatable).", show_default=False
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="When the sequence starts: ISO time with offset, or a date (midnight in the "
            "sequence's zone). Default: now.",
            show_default=False,
        ),
    ] = None,
    map_file: Annotated[
        Path | None,
        typer.Option(
            "--map",
            help="YAML file: CSV header -> field (e.g. 'Sujet salon: trade_show'; '-' leaves a "
            "column out), for exports the built-in presets do not cover.",
            show_default=False,
        ),
    ] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Enroll the valid rows, list the others.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, write nothing.")
    ] = False,
    route: Annotated[
        bool,
        typer.Option(
            "--route", help="Route each CSV row to its sequence by routing.yaml, and say why."
        ),
    ] = False,
    routing_file: Annotated[
        Path | None,
        typer.Option(
            "--routing",
            help="The routing file (default: routing.yaml in the project).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    now: NowOption = None,
) -> None:
    """Enroll one prospect, or every row of a CSV export, in a sequence.

    A CSV file is read as it comes and enrolled in batches, in one transaction: with any
    row problem, all are listed and nothing is enrolled (unless --skip-invalid). Nobody is
    chased again who booked, became a client, was stopped, replied (and was not resumed)
    or is suppressed; a prospect active in another sequence waits, unless the sequence has
    allow_concurrent: true; one who completed this sequence re-enters it only as its
    reenroll rule allows. Each row not enrolled is listed with why, with counts.

    CSV: UTF-8, ',' or ';' between cells, a header line. Columns: email (required),
    first_name, last_name, company, title, phone, deal_value, cycle_days, timezone,
    country, region, locale, owner; common CRM names are understood (E-mail, Prénom, Nom,
    Société, Montant, Amount, Time zone, State/Region, Bundesland, Canton...), and so are
    HubSpot, Pipedrive, Salesforce and lemlist exports as they come (recognised from their
    headers). Countries and languages may be codes or names ("Deutschland", "Allemagne";
    "German", "allemand"). Without a time zone, it is inferred from the region, the country
    or the phone number. Any other column is a template field (snake_cased), or what --map
    says; the fields the sequence requires must be there. Numbers may be written "25 000,50".

    Example: [bold]relance enroll outbound-2w --csv contacts.csv --dry-run[/bold]

    Example: [bold]relance enroll outbound-2w --csv export.csv --map salon.yaml[/bold]

    With --route (and no SEQUENCE), routing.yaml chooses each row's sequence from its
    qualification columns (need, budget, authority, timing, fit: 0-3; warmth; stage):
    one line per row says where it goes and why, then every sequence's group is
    enrolled in one transaction.

    Example: [bold]relance enroll outbound-2w --email ana@example.com --first-name Ana
    --company Acme --field industry=retail[/bold]

    Example: [bold]relance enroll --route --csv leads.csv --dry-run[/bold]
    """
    if (email is None) == (csv_file is None):
        raise InputError("give either --email (one prospect) or --csv FILE (a CRM export)")
    settings = Settings()
    details = {
        "--first-name": first_name, "--last-name": last_name, "--company": company,
        "--title": title, "--phone": phone, "--deal-value": deal_value,
        "--cycle-days": cycle_days, "--timezone": timezone, "--country": country,
        "--region": region, "--locale": locale, "--owner": owner, "--field": field,
    }  # fmt: skip
    if route or routing_file is not None:
        if not route:
            raise InputError("--routing goes with --route")
        if sequence_ref is not None:
            raise InputError("--route chooses each row's sequence: give no SEQUENCE")
        if csv_file is None:
            raise InputError("--route routes the rows of a CRM export: give --csv FILE")
        from relance.cli.routed import enroll_routed  # routed.py builds on this module

        _refuse_details(details)
        if map_file is not None:
            raise InputError("--map goes with SEQUENCE --csv FILE, not with --route")
        moment = read_now(now)
        enroll_routed(
            open_store(settings),
            settings,
            csv_file,
            routing_file=routing_file,
            start=parse_instant(start, "--start") if start else moment,
            now=moment,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            as_json=as_json,
        )
        return
    if sequence_ref is None:
        raise InputError("give the SEQUENCE to enroll in, or --route to let routing.yaml choose")
    sequence = resolve_sequence(sequence_ref, settings)
    moment = read_now(now)
    begin = parse_instant(start, "--start", sequence.timezone) if start else moment
    if csv_file is not None:
        _refuse_details(details)
        enroll_csv(
            lambda: open_store(settings),
            sequence,
            csv_file,
            mapping=read_mapping(map_file) if map_file is not None else None,
            start=begin,
            now=moment,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            as_json=as_json,
            progress=_progress,
        )
        return
    if skip_invalid:
        raise InputError("--skip-invalid applies to --csv imports only")
    if map_file is not None:
        raise InputError("--map applies to --csv imports only")
    options = {
        "email": email, "first_name": first_name, "last_name": last_name,
        "company": company, "title": title, "phone": phone, "deal_value": deal_value,
        "cycle_days": cycle_days, "timezone": timezone, "country": country,
        "region": region, "locale": locale, "owner": owner,
    }  # fmt: skip
    people = [prospect_from_options(options, field or [], sequence)]
    contacts = Contacts("", [], total=1)
    store = open_store(settings)
    if dry_run:
        result = preview_enrollment(store, sequence, people, moment)
    else:
        result = enroll(store, sequence, people, start=begin, now=moment)
    report = enrollment_report(store, sequence, result, contacts, dry_run=dry_run)
    if result.suppressed or result.refused:
        raise ProspectError(format_enrollment(report, single=True))
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    typer.echo(format_enrollment(report, single=True))


def _refuse_details(details: dict[str, str | list[str] | None]) -> None:
    """With --csv, the prospect options must be unset: the file gives the details."""
    given = [flag for flag, value in details.items() if value]
    if given:
        raise InputError(f"{', '.join(given)}: give prospect details in the CSV file")


def prospect_from_options(
    options: dict[str, str | None], fields: list[str], sequence: Sequence
) -> Prospect:
    """The prospect the --email, --first-name ... and --field options describe."""
    row = {name: value for name, value in options.items() if value is not None}
    for item in fields:
        key, sep, value = item.partition("=")
        name = column_name(key)
        if not sep or not name:
            raise InputError(f"--field: expected key=value such as industry=retail, got {item!r}")
        if name in STANDARD_FIELDS:
            raise InputError(f"--field {item}: use {_FLAGS[name]} for {name}")
        row[name] = value
    missing = [name for name in sequence.required_fields if not row.get(name, "").strip()]
    if missing:
        raise ProspectError(
            "; ".join(
                f"field {name!r} is used by the templates of {sequence.id}: "
                f"give it with --field {name}=..."
                for name in missing
            )
        )
    try:
        return prospect_from_row(row)
    except ProspectError as error:
        message = re.sub(
            r"\bcolumn (\w+):",
            lambda m: f"{_FLAGS.get(m[1], '--field ' + m[1])}:",
            str(error),
        )
        raise ProspectError(message) from None


@contextmanager
def _progress(label: str, size: int, *, determinate: bool = True) -> Iterator[Any]:
    """A progress bar on stderr for batches of more than PROGRESS_ROWS rows when stderr is a
    terminal (standard output stays clean for pipes); a no-op otherwise. Yields
    ``advance(done)``. An indeterminate bar pulses while one long call runs."""
    if size <= PROGRESS_ROWS or not sys.stderr.isatty():
        yield lambda done: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(label, total=size if determinate else None)
        yield lambda done: progress.update(task, completed=done)


def _print_errors(contacts: Contacts) -> None:
    for error in contacts.errors:
        stderr.print(error.format(contacts.file_name), markup=False)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def preview_enrollment(
    store: Store, sequence: Sequence, people: list[Prospect], now: datetime
) -> EnrollResult:
    """What ``enroll`` would do, read without writing (enrolled ids are 0)."""
    with store.reading() as connection:
        return preview_within(connection, sequence, people, now)


def enrollment_report(
    store: Store,
    sequence: Sequence,
    result: EnrollResult,
    contacts: Contacts,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """The summary ``enroll`` prints: counts, the version, the first touch."""
    ids = [enrollment_id for _, enrollment_id in result.enrolled if enrollment_id]
    version = None
    first: dict[str, Any] | None = None
    if ids:
        with store.reading() as connection:
            version = connection.execute(
                select(sequence_versions.c.version)
                .join(enrollments, enrollments.c.sequence_version_id == sequence_versions.c.id)
                .where(enrollments.c.id == ids[0])
            ).scalar()
            rows = [
                connection.execute(
                    select(
                        touchpoints.c.due_at,
                        touchpoints.c.step_id,
                        prospects.c.email,
                        prospects.c.timezone,
                    )
                    .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
                    .join(prospects, prospects.c.id == enrollments.c.prospect_id)
                    .where(touchpoints.c.enrollment_id.in_(ids[start : start + 500]))
                    .order_by(touchpoints.c.due_at, touchpoints.c.id)
                    .limit(1)
                ).first()
                for start in range(0, len(ids), 500)
            ]
            earliest = min((r for r in rows if r is not None), key=lambda r: r.due_at, default=None)
            if earliest is not None:
                zone = earliest.timezone or sequence.timezone
                first = {
                    "step": earliest.step_id,
                    "email": earliest.email,
                    "due_at": iso(earliest.due_at),
                    "zone": zone,
                    "text": format_instant(earliest.due_at, zone),
                }
    return {
        "sequence": sequence.id,
        "version": version,
        "dry_run": dry_run,
        "file": contacts.file_name or None,
        "rows": contacts.total,
        "enrolled": [
            {"email": email, "enrollment_id": eid or None} for email, eid in result.enrolled
        ],
        "already_active": result.already_active,
        "suppressed": result.suppressed,
        "not_enrolled": [
            {"email": email, "kind": why.kind, "reason": str(why)} for email, why in result.refused
        ],
        "invalid": [
            {"line": e.line, "column": e.column, "message": e.message} for e in contacts.errors
        ],
        "touchpoints": result.touchpoints,
        "first_touch": first,
    }


def format_enrollment(report: dict[str, Any], single: bool) -> str:
    """The human summary of an enrollment (or of a dry run)."""
    if single:
        return _format_single(report)
    enrolled = report["enrolled"]
    lines: list[str] = []
    if report["file"]:
        invalid = len({e["line"] for e in report["invalid"]})
        skipped = f", {_count(invalid, 'invalid row')} skipped" if invalid else ""
        lines.append(f"{report['file']}: {_count(report['rows'], 'row')} checked{skipped}")
    lines.append(outcome_line(report, len(enrolled)))
    for key, label in (("already_active", "already active"), ("suppressed", "suppressed")):
        emails = report[key]
        if emails:
            more = f" and {len(emails) - 10} more" if len(emails) > 10 else ""
            lines.append(f"{label} {len(emails)}: {', '.join(emails[:10])}{more}")
    for item in report["not_enrolled"]:
        lines.append(f"{item['email']} not enrolled: {item['reason']}")
    first = report["first_touch"]
    if first is not None:
        lines.append(f"first touch: {first['step']} for {first['email']} on {first['text']}")
    return "\n".join(lines)


def _format_single(report: dict[str, Any]) -> str:
    sequence = report["sequence"]
    if report["already_active"]:
        return f"{report['already_active'][0]} is already active in {sequence}: not enrolled twice"
    if report["suppressed"]:
        return f"{report['suppressed'][0]} is on the suppression list: not enrolled"
    if report["not_enrolled"]:
        refused = report["not_enrolled"][0]
        return f"{refused['email']} is not enrolled in {sequence}: {refused['reason']}"
    enrolled = report["enrolled"][0]
    if report["dry_run"]:
        return f"dry run, nothing written: would enroll {enrolled['email']} in {sequence}"
    touches = _count(report["touchpoints"], "touch", "touches")
    lines = [
        f"enrolled {enrolled['email']} in {sequence} (version {report['version']}): "
        f"enrollment {enrolled['enrollment_id']}, {touches} planned"
    ]
    first = report["first_touch"]
    if first is not None:
        lines.append(f"first touch: {first['step']} on {first['text']}")
    return "\n".join(lines)


# --- status --------------------------------------------------------------------------


@command("status")
def status_command(
    prospect_ref: Annotated[
        str, typer.Argument(metavar="PROSPECT", help="Email address or prospect id.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show a prospect's timeline: enrollments, every touch, tasks and events.

    Times are shown in the prospect's zone (else the sequence's) with UTC alongside.

    Example: [bold]relance status claire.martin@example.com[/bold]
    """
    store = open_store()
    with store.reading() as connection:
        data = timeline(connection, find_prospect(connection, prospect_ref))
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        with output() as out:
            print_timeline(out, data)
