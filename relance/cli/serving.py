"""``relance serve``: the webhook service."""

from __future__ import annotations

from typing import Annotated

import typer

from relance.cli.app import command
from relance.settings import Settings


@command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the webhooks (SendGrid events and inbound replies, Calendly, Cal.com) and the
    one-click unsubscribe page.

    Example: [bold]relance serve --host 0.0.0.0 --port 8000[/bold]
    """
    import uvicorn

    from relance.web.app import create_app

    uvicorn.run(create_app(Settings()), host=host, port=port, log_level="info", access_log=False)
