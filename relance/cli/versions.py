"""``relance versions`` and ``relance migrate``: sequences edited while prospects are in them.

Enrolled prospects keep the version of the sequence they started on; ``versions`` lists
the stored versions and who is on each, ``migrate --to-latest`` moves the live ones to
the file as it is now (``relance.versions``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from relance.catalog import sequence_path
from relance.cli.app import command
from relance.cli.console import (
    JsonOption,
    NowOption,
    format_local,
    iso,
    open_store,
    output,
    read_now,
    table,
)
from relance.errors import InputError, SequenceError
from relance.loader import load_sequence_file
from relance.rendering import template_name
from relance.settings import Settings
from relance.spec import Sequence
from relance.validation import validate_paths
from relance.version_move import (
    ADDED,
    KEPT,
    REPLANNED,
    SKIPPED,
    UNCHANGED,
    TouchMove,
    version_changes,
)
from relance.versions import (
    EnrollmentMove,
    MigrationReport,
    migrate_enrollments,
    stored_versions,
    version_of,
)

SequenceArgument = Annotated[
    str,
    typer.Argument(
        metavar="SEQUENCE", help="Sequence id (sequences/<id>.yaml) or path to its YAML file."
    ),
]


@command("versions")
def versions_command(sequence_ref: SequenceArgument, as_json: JsonOption = False) -> None:
    """List the stored versions of a sequence and how many enrollments are on each.

    A version is stored when prospects are enrolled on a content of the file not seen
    before: editing the YAML never changes the plan of prospects already enrolled.
    "live" counts the active and paused enrollments; "changes" compares each version
    with the one before (+ step added, - removed, ~ changed).

    Example: [bold]relance versions outbound-2w[/bold]
    """
    settings = Settings()
    path = sequence_path(sequence_ref, settings)
    loaded = load_sequence_file(path)
    sequence_id = loaded.sequence.id if loaded.sequence is not None else path.stem
    store = open_store(settings)
    found = stored_versions(store, sequence_id)
    current = version_of(store, loaded.sequence) if loaded.ok and loaded.sequence else None
    rows: list[dict[str, Any]] = []
    for index, stored in enumerate(found):
        changes = version_changes(found[index - 1].sequence, stored.sequence) if index else []
        rows.append(
            {
                "version": stored.version,
                "stored_at": iso(stored.created_at),
                "steps": len(stored.sequence.steps),
                "live": stored.live,
                "enrollments": stored.total,
                "changes": changes,
                "file": stored.version == current,
            }
        )
    if as_json:
        typer.echo(json.dumps({"sequence": sequence_id, "versions": rows}, indent=2))
        return
    with output() as out:
        if rows:
            grid = table("version", "stored (UTC)", "steps", "live", "enrollments", "changes")
            for stored, row in zip(found, rows, strict=True):
                grid.add_row(
                    f"{stored.version}{' (file)' if row['file'] else ''}",
                    f"{stored.created_at:%Y-%m-%d %H:%M}",
                    str(row["steps"]),
                    str(stored.live),
                    str(stored.total),
                    ", ".join(row["changes"]),
                )
            out.print(grid)
        else:
            out.print(f"no stored version of {sequence_id}: nobody was enrolled in it yet")
        for stored in found:
            missing = missing_templates(stored.sequence, settings.templates_path)
            if stored.live and missing:
                out.print(
                    f"version {stored.version} has {stored.live} live enrollment"
                    f"{'s' if stored.live != 1 else ''} but its templates are gone: "
                    f"{', '.join(missing)} (restore them, or relance migrate {sequence_id} "
                    "--to-latest)"
                )
        if not loaded.ok:
            out.print(f"the file {path} has problems: relance validate {path}")
        elif current is None and rows:
            out.print(
                f"the file is not stored yet: it becomes version {found[-1].version + 1} at the "
                f"next enrollment, or with relance migrate {sequence_id} --to-latest"
            )


@command("migrate")
def migrate_command(
    sequence_ref: SequenceArgument,
    to_latest: Annotated[
        bool,
        typer.Option(
            "--to-latest",
            help="Move the live enrollments to the version of the file as it is now.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    now: NowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the prospects enrolled on older versions of a sequence to the latest one.

    Steps are matched by id. Touches already done (sent, skipped, failed) stay as they
    are and are never sent again; planned touches of steps that were removed are
    skipped; the steps left, new ones included, are planned with the new waits after the
    last touch done. One transaction: all enrollments move, or none. The file must
    validate (relance validate) first.

    Example: [bold]relance migrate outbound-2w --to-latest --dry-run[/bold]
    """
    if not to_latest:
        raise InputError(
            "expected --to-latest: enrollments move to the version of the file as it is now"
        )
    settings = Settings()
    path = sequence_path(sequence_ref, settings)
    problems = validate_paths([path], settings)
    loaded = load_sequence_file(path)
    if problems or loaded.sequence is None:
        raise SequenceError(problems or loaded.problems)
    report = migrate_enrollments(
        open_store(settings), loaded.sequence, now=read_now(now), dry_run=dry_run
    )
    if as_json:
        typer.echo(json.dumps(report_json(report), indent=2))
        return
    print_migration(report)


def missing_templates(sequence: Sequence, templates_dir: Path) -> list[str]:
    """The template files a version names (its variants' too) that are not on disk.

    Versions pin the YAML, not the templates: the touches of every version render with
    the template files as they are when sent.
    """
    missing: list[str] = []
    for step in sequence.steps:
        named = [step.templates.parts(), *(v.templates.parts() for v in step.variants)]
        for path in (path for parts in named for path in parts.values()):
            for locale in sequence.all_locales:
                name = template_name(path, locale)
                if not (templates_dir / name).is_file() and f"templates/{name}" not in missing:
                    missing.append(f"templates/{name}")
    return missing


def print_migration(report: MigrationReport) -> None:
    with output() as out:
        for moved in report.enrollments:
            out.print(
                f"{moved.email} (enrollment {moved.enrollment_id}, times in {moved.zone}): "
                f"version {moved.from_version} -> {report.version}"
            )
            grid = table("  step", "status", "change")
            for touch in moved.touches:
                grid.add_row(f"  {touch.step_id}", touch.status, describe_move(touch, moved))
            out.print(grid)
        out.print(summary(report))


def describe_move(touch: TouchMove, moved: EnrollmentMove) -> str:
    """The change column: "kept", "Thu 2026-03-05 09:00 -> Fri 2026-03-06 09:00"..."""

    def at(instant: Any) -> str:
        return format_local(instant, moved.zone) if instant is not None else "?"

    if touch.action == KEPT:
        return KEPT
    if touch.action == SKIPPED:
        return f"skipped: {touch.reason}"
    if touch.action == ADDED:
        text = f"added: {at(touch.due_after)}"
    elif touch.action == UNCHANGED:
        text = f"unchanged: {at(touch.due_after)}"
    else:
        text = f"{at(touch.due_before)} -> {at(touch.due_after)}"
    if touch.variant != touch.variant_before:
        before = f"{touch.variant_before} -> " if touch.variant_before else ""
        text += f" (variant {before}{touch.variant or 'none'})"
    elif touch.variant and touch.action != UNCHANGED:
        text += f" (variant {touch.variant})"
    return text


def summary(report: MigrationReport) -> str:
    count = len(report.enrollments)
    if not count:
        return (
            f"no live enrollment of {report.sequence_id} is on another version than "
            f"{report.version} (the file as it is now)"
        )
    noun = "enrollment" if count == 1 else "enrollments"
    touches = ", ".join(
        f"{report.count(action)} {words}"
        for action, words in (
            (REPLANNED, "re-planned"),
            (UNCHANGED, "unchanged"),
            (ADDED, "added"),
            (SKIPPED, "skipped"),
            (KEPT, "done and kept"),
        )
        if report.count(action)
    )
    if report.dry_run:
        return (
            f"dry run, nothing changed: {count} {noun} of {report.sequence_id} would move "
            f"to version {report.version} ({touches})"
        )
    return f"moved {count} {noun} of {report.sequence_id} to version {report.version} ({touches})"


def report_json(report: MigrationReport) -> dict[str, Any]:
    return {
        "sequence": report.sequence_id,
        "version": report.version,
        "dry_run": report.dry_run,
        "enrollments": [
            {
                "enrollment_id": moved.enrollment_id,
                "email": moved.email,
                "from_version": moved.from_version,
                "touches": [
                    {
                        "step_id": touch.step_id,
                        "action": touch.action,
                        "status": touch.status,
                        "touchpoint_id": touch.touchpoint_id,
                        "due_before": iso(touch.due_before),
                        "due_after": iso(touch.due_after),
                        "variant_before": touch.variant_before,
                        "variant": touch.variant,
                        "reason": touch.reason,
                    }
                    for touch in moved.touches
                ],
            }
            for moved in report.enrollments
        ],
    }
