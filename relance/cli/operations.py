"""Running the store: ``relance db upgrade`` and the suppression list (``relance suppress``).

An address on the suppression list is never emailed by any sequence and is refused at
enrollment. Bounces, unsubscribes and spam reports add it on their own; ``suppress add``
does it by hand.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy import delete, select

from relance.addresses import AddressError, canonical_address
from relance.cli.app import app, command
from relance.cli.console import JsonOption, NowOption, iso, open_store, output, read_now, table
from relance.errors import InputError, NotFoundError
from relance.settings import Settings
from relance.signals import suppress
from relance.store import Store
from relance.tables import suppressions

db_app = typer.Typer(name="db", help="The store: schema migrations.", no_args_is_help=True)
suppress_app = typer.Typer(
    name="suppress", help="The suppression list: addresses never emailed.", no_args_is_help=True
)
app.add_typer(db_app)
app.add_typer(suppress_app)


@command("upgrade", parent=db_app)
def upgrade_command() -> None:
    """Migrate the store to the latest schema (any command also does it on first use).

    Prints the store's URL (password hidden) and its schema revision.

    Example: [bold]RELANCE_DATABASE_URL=postgresql://relance@db/relance relance db upgrade[/bold]
    """
    store = Store(Settings().store_url, migrate=False)
    before = store.revision()
    store.migrate()
    after = store.revision()
    change = "already up to date" if before == after else f"upgraded from {before or 'empty'}"
    typer.echo(f"{store.safe_url}: revision {after} ({change})")


def _address(email: str) -> str:
    try:
        return canonical_address(email)
    except AddressError as error:
        raise InputError(str(error)) from None


@command("list", parent=suppress_app)
def list_command(as_json: JsonOption = False) -> None:
    """List suppressed addresses, newest first, with why and since when (UTC).

    Example: [bold]relance suppress list --json[/bold]
    """
    with open_store().reading() as connection:
        rows = list(
            connection.execute(
                select(suppressions).order_by(
                    suppressions.c.created_at.desc(), suppressions.c.email
                )
            )
        )
    if as_json:
        items = [
            {"email": r.email, "reason": r.reason, "source": r.source, "since": iso(r.created_at)}
            for r in rows
        ]
        typer.echo(json.dumps(items, indent=2))
        return
    if not rows:
        typer.echo("no suppressed addresses")
        return
    grid = table("email", "reason", "source", "since (UTC)")
    for row in rows:
        grid.add_row(row.email, row.reason, row.source, f"{row.created_at:%Y-%m-%d %H:%M}")
    with output() as out:
        out.print(grid)
        out.print(f"{len(rows)} suppressed address{'es' if len(rows) != 1 else ''}")


@command("add", parent=suppress_app)
def add_command(
    email: Annotated[str, typer.Argument(help="The address never to email again.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. asked-by-phone.")] = "manual",
    now: NowOption = None,
) -> None:
    """Put an address on the suppression list: no sequence emails it any more.

    Example: [bold]relance suppress add claire.martin@example.com --reason asked-by-phone[/bold]
    """
    address = _address(email)
    with open_store().transaction() as connection:
        added = suppress(connection, address, reason, "cli", read_now(now))
    typer.echo(f"suppressed {address} ({reason})" if added else f"{address} was already suppressed")


@command("remove", parent=suppress_app)
def remove_command(
    email: Annotated[str, typer.Argument(help="The address to email again.")],
) -> None:
    """Take an address off the suppression list (it may be enrolled and emailed again).

    Example: [bold]relance suppress remove claire.martin@example.com[/bold]
    """
    address = _address(email)
    with open_store().transaction() as connection:
        removed = connection.execute(
            delete(suppressions).where(suppressions.c.email == address)
        ).rowcount
    if not removed:
        raise NotFoundError(f"{address} is not on the suppression list")
    typer.echo(f"removed {address} from the suppression list")
