"""ASGI middleware that keeps unauthenticated clients from costing more than a request.

``BodyGuard``:

- gives every request body a read deadline (``RELANCE_BODY_TIMEOUT_SECONDS``, 30 s by
  default) from the first time the application asks for it: a body still arriving after
  that (a "slow loris" sending a byte every few seconds) is answered 408 and the
  connection closed;
- turns a client that closes the connection before its body is read into one short log
  line, instead of the ASGI server's traceback (a flood of such connections would
  otherwise write megabytes of log).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


class BodyTimeoutError(Exception):
    """The body did not arrive within the deadline."""


class BodyGuard:
    """Read deadline for request bodies; quiet client disconnects (module docstring)."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        complete = expired = left = started = False

        async def timed() -> Message:
            nonlocal deadline, complete, expired, left
            if complete:  # after the body: waiting for a disconnect is not bounded
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                expired = True
                raise BodyTimeoutError from None
            if message["type"] == "http.disconnect":
                left = True
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def watched(message: Message) -> None:
            # Frameworks may turn a failed body read into their own answer (FastAPI's 400
            # "error parsing the body"): past the deadline, the answer is 408 all the same.
            nonlocal started
            if expired or left:
                if not started and not left and message["type"] == "http.response.start":
                    started = True
                    await self._timed_out(scope, send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        where = f"{scope.get('method', '')} {scope.get('path', '')}"
        try:
            await self.app(scope, timed, watched)
        except ClientDisconnect:
            left = True
        except BodyTimeoutError:
            if not started:
                started = True
                await self._timed_out(scope, send)
        if left:
            logger.info("%s: the client left before sending its body", where)
        elif expired:
            logger.info("%s: body not received within %g s: 408", where, self.timeout)

    async def _timed_out(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(
            {"error": f"the body did not arrive within {self.timeout:g} seconds"},
            status_code=408,
            headers={"Connection": "close"},
        )
        await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
