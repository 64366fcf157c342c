"""``relance up``: the production stack in the foreground (relance/stack.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from relance.cli.app import command
from relance.settings import check_service_secrets, load_settings
from relance.stack import Stack, StackOptions, run_stack
from relance.store import Store


@command("up")
def up(
    host: Annotated[str, typer.Option(help="Interface the services listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the webhooks and the SDR page.")
    ] = 8000,
    prefect_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the Prefect server and its UI.")
    ] = 4200,
    interval: Annotated[
        float, typer.Option(min=5, help="Seconds between two dispatch ticks.")
    ] = 60,
    worker_only: Annotated[
        bool,
        typer.Option(
            "--worker-only",
            help="Only add a worker to the stack whose Prefect API is in PREFECT_API_URL.",
        ),
    ] = False,
) -> None:
    """Run Relance in production: a Prefect server (unless PREFECT_API_URL names one), the
    relance work pool and its deployments (dispatch every --interval seconds, notify-owner on
    replies), a worker, and the webhook service with the SDR page. Ctrl-C stops everything.

    Example: [bold]relance up --port 8000 --prefect-port 4200[/bold]
    """
    settings = load_settings()
    check_service_secrets(settings)  # the web service refuses weak secrets: say so first
    home = settings.home.resolve()
    data_dir = settings.data_dir if settings.data_dir.is_absolute() else home / settings.data_dir
    Store(settings.store_url).dispose()  # migrated before any flow run needs it
    options = StackOptions(
        host=host,
        port=port,
        prefect_port=prefect_port,
        interval_seconds=interval,
        worker_only=worker_only,
    )
    run_stack(Stack(home, data_dir.resolve(), options, say=typer.echo))
