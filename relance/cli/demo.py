"""``relance demo``: three simulated weeks on the embedded defaults."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from relance import demo
from relance.cli.app import command, fail
from relance.settings import Settings


@command("demo")
def run_demo(
    days: Annotated[int, typer.Option(min=1, max=60, help="Simulated days to run.")] = 21,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's store and outbox go (reset at each run).")
    ] = Path("var/demo"),
) -> None:
    """Run Relance end to end for three simulated weeks, then check its promises.

    Validates the shipped sequences, enrolls the 50 bundled sample prospects, runs the
    real dispatch flow on Prefect at simulated times with replies, bookings and a bounce
    arriving on the way, and prints what was sent.

    Example: relance demo --days 21
    """
    # The dispatch flow reads its settings from the environment, like a deployed worker.
    os.environ["RELANCE_DATA_DIR"] = str(data_dir)
    settings = Settings()
    console = Console(highlight=False, width=max(Console().width, 120))
    report = demo.run(settings, console, demo.next_monday(datetime.now(UTC)), days=days)
    if report.failures:
        raise fail("; ".join(report.failures))
