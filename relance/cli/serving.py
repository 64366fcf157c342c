"""``relance serve``: the webhook service."""

from __future__ import annotations

from typing import Annotated

import typer

from relance.cli.app import command
from relance.settings import check_service_secrets, load_settings


@command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the webhooks (SendGrid events and inbound replies, Calendly, Cal.com), the
    one-click unsubscribe page and the SDR page.

    Refuses to start (exit code 2) when a setting is wrong, or when a secret
    (RELANCE_SDR_TOKEN, RELANCE_INBOUND_SECRET, RELANCE_CALCOM_SECRET,
    RELANCE_CALENDLY_SIGNING_KEY) is shorter than 16 characters.

    Example: [bold]relance serve --host 0.0.0.0 --port 8000[/bold]
    """
    import uvicorn

    from relance.web.app import create_app

    settings = load_settings()
    check_service_secrets(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)
