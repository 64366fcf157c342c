"""What every store command shares at the CLI edge: the store, the clock, times and output.

Times given on the command line are ISO 8601 with their UTC offset; times printed are in
the prospect's zone with UTC alongside. Human output goes through ``output()``: rich on a
terminal, plain aligned text (stable, for tests and pipes) otherwise.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.table import Table

from relance.errors import InputError
from relance.settings import Settings
from relance.store import Store

NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="The current time, ISO 8601 with offset (for tests and demos). Default: the clock.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


def open_store(settings: Settings | None = None) -> Store:
    """The store Settings name (RELANCE_DATABASE_URL, or the SQLite file in RELANCE_DATA_DIR)."""
    return Store((settings or Settings()).store_url)


def read_now(text: str | None) -> datetime:
    """``--now`` if given, else the current UTC time: the one place the CLI reads the clock."""
    return parse_instant(text, "--now") if text else datetime.now(UTC)


def parse_instant(text: str, option: str, zone: str | None = None) -> datetime:
    """An ISO 8601 time with offset ("2026-03-02T09:00+01:00", "...Z"), as aware UTC.

    A date alone ("2026-03-02") means midnight in ``zone`` when one is given.
    """
    value = text.strip()
    if zone is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise InputError(
                f"{option}: expected a date such as 2026-03-02, got {text!r}"
            ) from None
        return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{option}: expected a time such as 2026-03-02T09:00+01:00, got {text!r}"
        ) from None
    if instant.tzinfo is None:
        raise InputError(
            f"{option}: expected a time with its UTC offset such as 2026-03-02T09:00+01:00 "
            f"(or Z for UTC), got {text!r}"
        )
    return instant.astimezone(UTC)


@contextmanager
def output() -> Iterator[Console]:
    """A console for standard output: rich on a terminal, plain text (no trailing
    spaces, width from COLUMNS or 80) when piped or captured, so that output is stable."""
    if sys.stdout.isatty():
        yield Console(highlight=False, markup=False, soft_wrap=True)
        return
    buffer = io.StringIO()
    width = Console().width
    yield Console(
        file=buffer, width=width, highlight=False, markup=False, soft_wrap=True, color_system=None
    )
    typer.echo("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()))


def table(*headers: str) -> Table:
    """A borderless table: aligned columns under a header line."""
    grid = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    for header in headers:
        grid.add_column(header, overflow="fold")
    return grid


def zone_of(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_instant(instant: datetime, zone: str) -> str:
    """ "Mon 2026-03-02 10:00 Europe/Paris (09:00 UTC)": the date again if UTC's differs."""
    local = instant.astimezone(zone_of(zone))
    utc = instant.astimezone(UTC)
    if zone == "UTC":
        return f"{utc:%a %Y-%m-%d %H:%M} UTC"
    utc_text = f"{utc:%H:%M}" if utc.date() == local.date() else f"{utc:%Y-%m-%d %H:%M}"
    return f"{local:%a %Y-%m-%d %H:%M} {zone} ({utc_text} UTC)"


def format_local(instant: datetime, zone: str) -> str:
    """ "Mon 2026-03-02 10:00" in ``zone``."""
    return instant.astimezone(zone_of(zone)).strftime("%a %Y-%m-%d %H:%M")


def iso(instant: datetime | None) -> str | None:
    """An aware time as ISO 8601 UTC with a Z: "2026-03-02T08:00:00Z"."""
    return None if instant is None else instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
