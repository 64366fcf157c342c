"""``relance validate`` and ``relance schema``: checking sequence files before they run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from relance.cli.app import command
from relance.diagnostics import format_problems
from relance.settings import Settings
from relance.validation import find_sequence_files, sequence_schema, validate_paths


@command("validate")
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Sequence files or directories. Default: the sequences directory.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the problems as a JSON list.")
    ] = False,
) -> None:
    """Check sequence files: YAML, keys, values, templates and their variables.

    Prints every problem as [bold]file:line:col path: message[/bold], sorted
    by line, then a count, and exits with code 1 if there is any.
    Prints "N sequences ok" otherwise.

    Example: [bold]relance validate sequences/outbound-2w.yaml[/bold]
    """
    settings = Settings()
    files = find_sequence_files(paths or [settings.sequences_path])
    problems = validate_paths(files, settings)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in problems], indent=2))
    elif problems:
        typer.echo(format_problems(problems))
    else:
        typer.echo(f"{len(files)} sequence{'s' if len(files) != 1 else ''} ok")
    if problems:
        raise typer.Exit(1)


@command("schema")
def schema() -> None:
    """Print the JSON Schema of sequence files, for editors and other tools.

    The copy in schema/sequence.schema.json is named on the first line of
    every sequence file, so that editors complete keys and flag mistakes.

    Example: [bold]relance schema > schema/sequence.schema.json[/bold]
    """
    typer.echo(json.dumps(sequence_schema(), indent=2, ensure_ascii=False))
