"""``relance enroll --route --csv FILE``: each row routed by routing.yaml, then enrolled.

The output is a table, one line per row (email, grid total, warmth, sequence or none,
the stage it reaches, and why), then what was enrolled in each sequence.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from relance.cli.app import stderr
from relance.cli.console import output, table
from relance.cli.prospects import enrollment_report, format_enrollment, preview_enrollment
from relance.cli.qualify import qualification_data
from relance.csvimport import Contacts, read_text
from relance.errors import InputError
from relance.intake import RoutedContact, RoutingReport, enroll_intake, plan_intake
from relance.qualification import TOTAL_MAX
from relance.routing import resolve_routing, routing_path
from relance.settings import Settings
from relance.store import Store


def enroll_routed(
    store: Store,
    settings: Settings,
    csv_file: Path,
    *,
    routing_file: Path | None,
    start: datetime,
    now: datetime,
    dry_run: bool,
    skip_invalid: bool,
    as_json: bool,
) -> None:
    """Route every row of ``csv_file``, enroll the groups in one transaction, print."""
    path = routing_file or routing_path(settings)
    routing = resolve_routing(path, settings)
    report = plan_intake(
        store, settings, read_text(csv_file), file_name=csv_file.name, routing=routing
    )
    if report.errors and not skip_invalid:
        _print_errors(report)
        bad = len(report.invalid_lines)
        raise InputError(
            f"{bad} row{'s' if bad != 1 else ''} of {csv_file.name} "
            f"{'has' if bad == 1 else 'have'} problems: nothing enrolled (fix them, or use "
            f"--skip-invalid to enroll the {_count(len(report.valid()), 'valid row')})"
        )
    if not dry_run:
        enroll_intake(store, report, start=start, now=now)
    summaries = enrollment_summaries(store, report, dry_run=dry_run, now=now)
    if as_json:
        typer.echo(json.dumps(_data(report, path, summaries), indent=2, ensure_ascii=False))
        return
    if report.errors:
        _print_errors(report)
    with output() as out:
        print_routing(out, report, path.name, summaries)


def print_routing(
    out: Console, report: RoutingReport, routing_name: str, summaries: list[dict[str, Any]]
) -> None:
    skipped = len(report.invalid_lines)
    skipped_text = f", {_count(skipped, 'invalid row')} skipped" if skipped else ""
    out.print(
        f"{report.file_name}: {_count(report.rows, 'row')} checked{skipped_text}, "
        f"routed by {routing_name}"
    )
    grid = table("email", "grid", "warmth", "sequence", "stage", "why")
    for contact in report.valid():
        grid.add_row(
            contact.prospect.email,
            _total(contact),
            contact.qualification.describe_warmth(),
            contact.route.sequence_id or "none",
            contact.stage_after.value,
            contact.route.reason,
        )
    out.print(grid)
    for summary in summaries:
        out.print(format_enrollment(summary, single=False))
    unrouted = [contact.prospect.email for contact in report.unrouted()]
    if unrouted:
        out.print(f"not enrolled {len(unrouted)} (no sequence): {', '.join(unrouted)}")
    moves = Counter(move.to_stage.value for move in report.moves)
    if moves:
        out.print("stages moved: " + ", ".join(f"{n} to {stage}" for stage, n in moves.items()))


def enrollment_summaries(
    store: Store, report: RoutingReport, *, dry_run: bool, now: datetime
) -> list[dict[str, Any]]:
    """One ``enroll`` summary per sequence, in the order of the rules."""
    summaries = []
    for sequence_id, group in report.groups().items():
        sequence = report.sequences[sequence_id]
        people = [contact.prospect for contact in group]
        result = (
            preview_enrollment(store, sequence, people, now)
            if dry_run
            else report.results[sequence_id]
        )
        contacts = Contacts("", [], total=len(group))
        summaries.append(enrollment_report(store, sequence, result, contacts, dry_run=dry_run))
    return summaries


def _data(report: RoutingReport, path: Path, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "file": report.file_name,
        "rows": report.rows,
        "routing": path.name,
        "contacts": [
            {
                "line": contact.line,
                **qualification_data(contact.prospect.email, contact.qualification),
                "stage": contact.stage_after.value,
                "sequence": contact.route.sequence_id,
                "rule": contact.route.rule,
                "reason": contact.route.reason,
            }
            for contact in report.valid()
        ],
        "enrollments": summaries,
        "not_enrolled": [contact.prospect.email for contact in report.unrouted()],
        "invalid": [
            {"line": e.line, "column": e.column, "message": e.message} for e in report.errors
        ],
        "stage_moves": [
            {"prospect_id": m.prospect_id, "from": m.from_stage, "to": m.to_stage}
            for m in report.moves
        ],
    }


def _total(contact: RoutedContact) -> str:
    grid = contact.qualification.grid
    return f"{grid.total}/{TOTAL_MAX}" if grid.assessed else "-"


def _print_errors(report: RoutingReport) -> None:
    for error in report.errors:
        stderr.print(error.format(report.file_name), markup=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun if n == 1 else noun + 's'}"
