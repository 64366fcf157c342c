"""``relance`` command line: thin commands over the core. Bad input never shows a traceback."""

from __future__ import annotations

# Each module registers its commands on the shared app when imported.
from relance.cli import (  # noqa: F401
    checking,
    demo,
    operations,
    planning,
    previewing,
    prospects,
    qualify,
    reporting,
    review,
    running,
    serving,
    tasks,
    up,
    versions,
    work,
)
from relance.cli.app import app


def main() -> None:
    app()
