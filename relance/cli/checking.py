"""``relance validate`` and ``relance schema``: checking sequence files (and routing.yaml)
before they run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from relance.cli.app import command
from relance.diagnostics import format_problems
from relance.routing import ROUTING_FILE, routing_path
from relance.settings import Settings
from relance.validation import (
    find_sequence_files,
    routing_schema,
    sequence_schema,
    validate_paths,
    validate_routing,
)


@command("validate")
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Sequence files or directories. Default: the sequences directory.",
            show_default=False,
        ),
    ] = None,
    routing: Annotated[
        list[Path] | None,
        typer.Option(
            "--routing",
            help="A routing file to check. Default, when no path is given: routing.yaml "
            "in the project, if there is one.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the problems as a JSON list.")
    ] = False,
) -> None:
    """Check sequence files: YAML, keys, values, templates and their variables; and the
    routing file: its keys, values and the sequences it names.

    Prints every problem as [bold]file:line:col path: message[/bold], sorted
    by line, then a count, and exits with code 1 if there is any.
    Prints "N sequences ok" otherwise.

    Example: [bold]relance validate sequences/outbound-2w.yaml[/bold]

    Example: [bold]relance validate --routing routing.yaml[/bold]
    """
    settings = Settings()
    routings = list(routing or [])
    if not paths and not routings and routing_path(settings).is_file():
        routings.append(routing_path(settings))
    given = [path for path in paths or [] if path.name not in (ROUTING_FILE, "routing.yml")]
    routings += [path for path in paths or [] if path not in given]
    files = find_sequence_files(given or ([] if paths or routing else [settings.sequences_path]))
    problems = validate_paths(files, settings)
    for path in routings:
        problems += validate_routing(path, settings)
    problems.sort(key=lambda p: (p.file, p.line, p.column, p.path, p.message))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(p) for p in problems], indent=2))
    elif problems:
        typer.echo(format_problems(problems))
    else:
        done = [f"{len(files)} sequence{'s' if len(files) != 1 else ''} ok"] if files else []
        typer.echo(", ".join(done + [f"{path.name} ok" for path in routings]))
    if problems:
        raise typer.Exit(1)


@command("schema")
def schema(
    routing: Annotated[
        bool, typer.Option("--routing", help="The schema of routing.yaml instead.")
    ] = False,
) -> None:
    """Print the JSON Schema of sequence files, for editors and other tools.

    The copy in schema/sequence.schema.json is named on the first line of
    every sequence file, so that editors complete keys and flag mistakes;
    schema/routing.schema.json (--routing) likewise for routing.yaml.

    Example: [bold]relance schema > schema/sequence.schema.json[/bold]
    """
    document = routing_schema() if routing else sequence_schema()
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
