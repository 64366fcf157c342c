"""``relance report``: what the sequences gave, per step and A/B variant, and the funnel.

The figures and how they are counted: ``relance.analytics``; the HTML page:
``relance.report_html``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from relance.analytics import build_report
from relance.cli.app import command
from relance.cli.console import JsonOption, NowOption, open_store, output, read_now
from relance.errors import InputError
from relance.figures import Counts, Report, format_rate
from relance.report_html import render_html
from relance.store import Store

COLUMNS = (
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("opened", "opened"),
    ("clicked", "clicked"),
    ("replied", "replied"),
    ("booked", "booked"),
    ("bounced", "bounced"),
    ("unsubscribed", "unsub."),
    ("tasks", "tasks"),
)
"""Figure and column header, in the order of the table."""
FUNNEL_BAR = 30
"""Characters of the funnel's widest bar."""


@command("report")
def report_command(
    sequence: Annotated[
        str | None,
        typer.Argument(
            help="Only this sequence (its id). Default: every sequence.", show_default=False
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also write the report as a self-contained HTML page (funnel chart, per-step "
            "bars; opens offline).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    now: NowOption = None,
) -> None:
    """Sent, delivered, opened, clicked, replied, booked, bounced and unsubscribed per
    sequence, step and A/B variant, with their rates, and the lifecycle funnel from suspect
    to client with the conversion between stages.

    Example: [bold]relance report outreach-2w --html report.html[/bold]
    """
    store = open_store()
    try:
        report = build_report(store, now=read_now(now), sequence_id=sequence)
    finally:
        store.dispose()
    if html is not None:
        write_html(report, html)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    with output() as out:
        print_report(out, report)
        if html is not None:
            out.print(f"HTML report written to {html}")


def show_report(
    console: Console,
    store: Store,
    *,
    now: datetime,
    sequence_id: str | None = None,
    html: Path | None = None,
) -> Report:
    """Build the report, print it on ``console`` and write the HTML page if asked (the demo's
    last word)."""
    report = build_report(store, now=now, sequence_id=sequence_id)
    print_report(console, report)
    if html is not None:
        write_html(report, html)
        console.print(f"HTML report written to {html}", markup=False)
    return report


def write_html(report: Report, path: Path) -> None:
    try:
        path.write_text(render_html(report), encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot write the HTML report to {path}: {error.strerror}") from None


def print_report(console: Console, report: Report) -> None:
    """The tables of the report: one per sequence, then the funnel (ids printed as they are,
    never read as rich markup: the demo's console has markup on)."""
    scope = f"sequence {report.sequence_id}" if report.sequence_id else "all sequences"
    generated = report.generated_at.astimezone(UTC)
    console.print(f"Relance report · {scope} · {generated:%a %Y-%m-%d %H:%M} UTC", markup=False)
    if not report.sequences:
        console.print("nothing enrolled yet: no sequence to report on")
    for sequence in report.sequences:
        grid = _grid("step", *(header for _, header in COLUMNS))
        for step in sequence.steps:
            label = step.step_id if step.channel == "email" else f"{step.step_id} ({step.channel})"
            grid.add_row(Text(label), *_cells(step.total))
            if step.has_variants:
                for variant, counts in step.variants.items():
                    grid.add_row(Text(f"  variant {variant or '(none)'}"), *_cells(counts))
        if not sequence.before_first_touch.empty:
            grid.add_row("before the first touch", *_cells(sequence.before_first_touch))
        grid.add_row("total", *_cells(sequence.total))
        console.print()
        console.print(f"sequence {sequence.sequence_id}", markup=False)
        console.print(grid)
    if report.sequences:
        console.print()
        console.print("rates: opened and clicked of delivered; every other rate of sent")
    console.print()
    console.print("funnel: prospects that reached each stage or went beyond it")
    funnel = _grid("stage", "prospects", "", "to next")
    top = max((stage.prospects for stage in report.funnel), default=0)
    for stage in report.funnel:
        length = round(FUNNEL_BAR * stage.prospects / top) if top else 0
        bar = "█" * max(length, 1 if stage.prospects else 0)
        conversion = "" if stage.conversion is None else f"→ {format_rate(stage.conversion)}"
        funnel.add_row(stage.label, f"{stage.prospects:,}", bar, conversion)
    console.print(funnel)


def _grid(first: str, *numbers: str) -> Table:
    """A borderless table, numbers right-aligned (the funnel's bar column left-aligned)."""
    grid = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    grid.add_column(first, no_wrap=True)
    for header in numbers:
        grid.add_column(header, justify="right" if header else "left", no_wrap=True)
    return grid


def _cells(counts: Counts) -> list[str]:
    rates = counts.rates()
    cells = []
    for name, _ in COLUMNS:
        value = getattr(counts, name)
        share = rates.get(name)
        cells.append(f"{value:,}" if share is None else f"{value:,} ({format_rate(share)})")
    return cells
