"""``relance dispatch``: one tick of the dispatch flow, from the command line."""

from __future__ import annotations

import json
from typing import Any

import typer

from relance.cli.app import command
from relance.cli.console import JsonOption, NowOption, output, read_now, table
from relance.prefect_api import prefect_api
from relance.settings import load_settings

COUNTS = ("sent", "tasks", "skipped", "deferred", "retried", "failed")


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per sequence and step of a tick's summary."""
    return [
        [sequence_id, step_id, *(str(report.get(name, 0)) for name in COUNTS)]
        for sequence_id, steps in summary["sequences"].items()
        for step_id, report in steps.items()
    ]


@command("dispatch")
def dispatch_once(now: NowOption = None, as_json: JsonOption = False) -> None:
    """Run one dispatch tick: perform every due touch, as the scheduled deployment does.

    Uses the Prefect API in PREFECT_API_URL, or starts Prefect's local API for the tick.

    Example: [bold]relance dispatch --now 2026-12-01T09:30:00+01:00[/bold]
    """
    moment = read_now(now)
    load_settings()  # a bad setting is one line here, not a failed flow run
    from flows.dispatch import run_tick

    with prefect_api():
        summary = run_tick(now=moment)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    rows = summary_rows(summary)
    if not rows:
        typer.echo(f"Nothing due at {moment.isoformat()}.")
        return
    grid = table("sequence", "step", *COUNTS)
    for row in rows:
        grid.add_row(*row)
    with output() as console:
        console.print(grid)
