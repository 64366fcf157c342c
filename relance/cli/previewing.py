"""``relance preview``: what one step says to one prospect, before anything is sent."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from relance.catalog import resolve_sequence
from relance.cli.app import command
from relance.errors import InputError, NotFoundError, ProspectError
from relance.prospect import SAMPLE_PROSPECT, Prospect, prospect_from_row
from relance.rendering import (
    RenderedStep,
    Sender,
    render_step,
    sample_meeting,
    sample_prospect,
    template_environment,
)
from relance.settings import Settings
from relance.spec import Sequence, Step

HEADINGS = {
    "subject": "Subject",
    "text": "Text",
    "html": "HTML",
    "script": "Call script",
    "reminder": "Reminder",
}


@command("preview")
def preview(
    sequence_ref: Annotated[
        str, typer.Argument(metavar="SEQUENCE", help="Sequence id or path to its YAML file.")
    ],
    step_id: Annotated[str, typer.Argument(help="Id of the step to render.")],
    prospect_text: Annotated[
        str | None,
        typer.Option(
            "--prospect",
            help="A JSON object, a CSV header and row, or @file.json / @file.csv "
            "(first row). Default: the sample prospect.",
            show_default=False,
        ),
    ] = None,
    locale: Annotated[
        str | None,
        typer.Option(
            "--locale",
            help="Language to render in. Default: the prospect's, if the sequence has it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render a step's templates (subject, text, HTML, call script, reminder) for a prospect.

    Example: [bold]relance preview outbound-2w email-benchmark --locale en
    --prospect '{"email": "ana@example.com", "first_name": "Ana", "industry": "retail"}'[/bold]
    """
    settings = Settings()
    sequence = resolve_sequence(sequence_ref, settings)
    step = find_step(sequence, step_id)
    # Declared columns the given prospect lacks show as "[column]" placeholders.
    prospect = sample_prospect(
        sequence,
        base=SAMPLE_PROSPECT if prospect_text is None else prospect_from_option(prospect_text),
    )
    rendered = render_step(
        template_environment(settings.templates_path),
        sequence,
        step,
        prospect,
        sender=Sender.from_settings(settings),
        meeting=sample_meeting(prospect.timezone or sequence.timezone),
        locale=locale,
    )
    typer.echo(format_preview(sequence, step, rendered), nl=False)


def find_step(sequence: Sequence, step_id: str) -> Step:
    """The step ``step_id`` names; NotFoundError lists the step ids otherwise."""
    try:
        return sequence.step(step_id)
    except KeyError:
        known = ", ".join(step.id for step in sequence.steps)
        raise NotFoundError(
            f"no step {step_id!r} in sequence {sequence.id} (steps: {known})"
        ) from None


def format_preview(sequence: Sequence, step: Step, rendered: RenderedStep) -> str:
    """A heading line for the step, then each part under its own underlined heading."""
    lines = [
        f"{sequence.id} / {step.id} ({step.channel.value}, {rendered.locale})",
        f"Objective: {step.objective}",
    ]
    for part, text in rendered.parts().items():
        heading = HEADINGS[part]
        lines += ["", heading, "-" * len(heading), text.rstrip("\n")]
    return "\n".join(lines) + "\n"


def prospect_from_option(text: str) -> Prospect:
    """A prospect from ``--prospect``: JSON object, CSV header + row, or @file of either."""
    source = text
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8-sig")
        except OSError as error:
            raise InputError(f"cannot read {path}: {error.strerror}") from None
    stripped = source.strip()
    if stripped.startswith(("{", "[")) or text.endswith(".json"):
        return prospect_from_row(_json_row(stripped))
    rows = list(csv.DictReader(io.StringIO(stripped)))
    if not rows:
        raise ProspectError("expected a CSV header line and one row, got no row")
    return prospect_from_row(rows[0])


def _json_row(text: str) -> dict[str, str]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProspectError(f"expected a JSON object, got invalid JSON ({error.msg})") from None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        raise ProspectError(f"expected a JSON object, got {type(data).__name__}")
    row: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict | list):
            raise ProspectError(
                f"column {key}: expected a text or a number, got a JSON {type(value).__name__}"
            )
        row[str(key)] = "" if value is None else str(value)
    return row
