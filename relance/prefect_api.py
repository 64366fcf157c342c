"""Making sure a Prefect API is there for the length of a command (demo, one-off tick).

With ``PREFECT_API_URL`` set (a Prefect server, a deployment's worker) it is used as is.
Otherwise Prefect's local API is started once, in a subprocess, and used through
``PREFECT_API_URL`` until the block ends, so that flow runs and Relance's events both
reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the URL of the Prefect API flows run against (starting a local one if needed)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=60)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield str(server.api_url)
    finally:
        server.stop()
