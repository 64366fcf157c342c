"""The FastAPI application: shared limits, errors and dependencies; routes live beside it.

Every endpoint answers errors as JSON ``{"error": "<what is wrong>"}`` with a 4xx code,
refuses bodies over ``settings.max_body_bytes`` (413) before reading them whole, and
bodies still arriving ``settings.body_timeout_seconds`` after they were first asked for
(408, relance/web/guards.py), stores nothing when it refuses, and logs ids, never
addresses or message bodies. A client leaving mid-body is one short log line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relance.errors import InputError, NotFoundError, RelanceError, StateError
from relance.settings import Settings
from relance.store import Store, store_failure
from relance.tables import MAX_ROW_ID
from relance.web.attempts import LoginAttempts
from relance.web.guards import BodyGuard

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BodyTooLargeError(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, declared or streamed.

    ``limits`` maps path prefixes to their own limit (Inbound Parse posts replies with
    their attachments, up to 30 MB); every other path gets ``limit``.
    """

    def __init__(self, app: ASGIApp, limit: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.limits = limits or {}

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        declared_size = (
            int(declared) if declared and declared.isascii() and declared.isdigit() else 0
        )
        if declared_size > limit:
            await _too_large(limit, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLargeError
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLargeError:
            await _too_large(limit, send)


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse({"error": f"body larger than {limit} bytes"}, status_code=413)
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


RowId = Annotated[int, FastApiPath(ge=1, le=MAX_ROW_ID)]
"""A path parameter that is a row id: one out of range (``MAX_ROW_ID``) is refused with 422
before any query (PostgreSQL and SQLite would fail on it)."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock = utc_now
) -> FastAPI:
    """The service for these settings; tests pass their own store and clock."""
    from relance.web import routes

    app = FastAPI(
        title="Relance webhooks",
        description="Provider webhooks (SendGrid, Calendly, Cal.com) and one-click unsubscribe.",
        version="1",
    )
    app.state.settings = settings
    app.state.store = store or Store(settings.store_url)
    app.state.clock = clock
    app.state.login_attempts = LoginAttempts(settings.sdr_login_failures_per_minute)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error(422, f"{where or 'request'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(SQLAlchemyError)
    async def _store(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        logger.error("request failed: %s", store_failure(exc))  # never the SQL parameters
        return error(503, "the store is unavailable; try again")

    @app.exception_handler(RelanceError)
    async def _relance(_: Request, exc: RelanceError) -> JSONResponse:
        if isinstance(exc, NotFoundError):
            return error(404, str(exc))
        if isinstance(exc, InputError):
            return error(400, str(exc))
        if isinstance(exc, StateError):
            return error(409, str(exc))
        logger.exception("request failed")
        return error(503, "the store is unavailable; try again")

    for router in routes.routers():
        app.include_router(router)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        limits={"/webhooks/sendgrid/inbound": settings.max_inbound_bytes},
    )
    app.add_middleware(BodyGuard, timeout=settings.body_timeout_seconds)  # outermost
    return app


# Dependencies are ``async`` (they do not block): FastAPI then calls them on the event
# loop instead of a worker thread, which saves thread switches on every request.


async def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def now_of(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


Handler = Callable[..., Awaitable[Any]]
