"""Making sure a Prefect API is there for the length of a command (demo, one-off tick).

With ``PREFECT_API_URL`` set (a Prefect server, a deployment's worker) it is used as is.
Otherwise Prefect's local API is started once, in a subprocess, and used through
``PREFECT_API_URL`` until the block ends, so that flow runs and Relance's events both
reach it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the URL of the Prefect API flows run against (starting a local one if needed)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    from prefect.server.api.server import SubprocessASGIServer

    # Relance runs offline: the local server must not try to send usage telemetry.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = SubprocessASGIServer()
    server.start(timeout=60)
    try:
        # No UI link in the logs ("View at ..."): this API stops with the command.
        updates = {PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}
        with temporary_settings(updates=updates):
            try:
                yield str(server.api_url)
            finally:
                _drain_workers()
    finally:
        server.stop()


def _drain_workers() -> None:
    """Send the logs and events still queued while the API is up.

    Otherwise Prefect's workers try at exit, against a stopped server, and retry for
    minutes before giving up.
    """
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            logs = APILogWorker.instance().drain()
            if inspect.isawaitable(logs):
                await logs
        except RuntimeError:  # the log worker never started
            pass
        events = EventsWorker.drain_all()
        if inspect.isawaitable(events):
            await events

    run_coro_as_sync(drain())
