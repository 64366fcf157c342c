"""The Prefect server ``relance up`` runs: Prefect's own API and UI, one change in front.

    python -m relance.prefect_server --host 127.0.0.1 --port 4200

On SQLite (the embedded default), prefect 3.8.8's API answers a write that meets another
writer's lock (``database is locked``: the server's event and task-run recorders write
while a flow creates its runs) with a bare 503, and its client waits 2 s, then 4 s... before
trying again. A tick then spent about 2 s on every other sequence flow it started.

``RetryLockedWrites`` replays such a write inside the server, after a few milliseconds, up to
a deadline, before the client ever sees the 503: the failed attempt was rolled back (the
503 comes only from Prefect's handler for retryable SQLite errors), so replaying it is
safe. Everything else, reads, websockets and the UI, passes through untouched. On
PostgreSQL the case does not arise and the middleware never replays anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RetryLockedWrites:
    """ASGI middleware: replay a write the wrapped app answered 503, with backoff."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        first_delay: float = 0.01,
        max_delay: float = 0.25,
        deadline_seconds: float = 10.0,
    ) -> None:
        self.app = app
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.deadline_seconds = deadline_seconds
        self.replayed = 0
        """Writes replayed since start (for tests and the curious)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in WRITES:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        deadline = time.monotonic() + self.deadline_seconds
        delay = self.first_delay
        while True:
            answer = await self.attempt(scope, body, receive)
            if answer[0]["status"] != 503 or time.monotonic() + delay > deadline:
                break
            self.replayed += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)
        for message in answer:
            await send(message)

    async def attempt(self, scope: Scope, body: bytes, receive: Receive) -> list[Message]:
        """Run the app once on the buffered request; its response messages, kept back."""
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # what comes after the body: the client's disconnect

        kept: list[Message] = []

        async def keep(message: Message) -> None:
            kept.append(message)

        try:
            await self.app(dict(scope), replay, keep)  # routing rewrites the scope it gets
        except Exception:
            # Starlette's error middleware sends the error response, then raises again.
            if not kept:
                raise
        if not kept or kept[0]["type"] != "http.response.start":
            kept.insert(0, {"type": "http.response.start", "status": 500, "headers": []})
        return kept


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def create_app() -> ASGIApp:
    """Prefect's server application (API, UI and its services), behind ``RetryLockedWrites``."""
    from prefect.server.api.server import create_app as create_prefect_app

    return RetryLockedWrites(create_prefect_app(final=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prefect's server, as relance up runs it.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    # Offline: the server must not try to send usage telemetry.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import uvicorn

    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
