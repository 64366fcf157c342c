"""Who may open the SDR pages: one shared token, a signed session cookie, CSRF tokens.

- ``RELANCE_SDR_TOKEN`` (``settings.sdr_token``) is the only secret. Without it every
  ``/sdr`` page answers 403 "set RELANCE_SDR_TOKEN".
- ``GET /sdr/login`` shows a form; ``POST /sdr/login`` with the right token sets the cookie
  ``relance_sdr`` (HttpOnly, SameSite=Strict, Secure over HTTPS, 12 hours). It holds
  ``<payload>.<HMAC-SHA256>``, signed with a key derived from the token, never the token:
  changing the token ends every session. The payload is a random nonce, the SDR's own
  address if given (their tasks are shown first) and the time of login.
- Scripts may send ``Authorization: Bearer <token>`` instead of the cookie.
- Every form posted with the cookie carries ``csrf``, an HMAC of the session's nonce, else
  it is refused (403). The login form carries one too, paired with a short-lived cookie.
  Requests with the bearer header need none: a page of another site cannot set it.
- A page asked for without a session redirects to the login form; a post is refused.
- Wrong tokens are counted per client address (relance/web/attempts.py): past
  ``RELANCE_SDR_LOGIN_FAILURES_PER_MINUTE`` (10) in a minute, the login form and bearer
  requests from that address answer 429 with ``Retry-After``.

Logs say what happened, never the token, an address or a name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from relance.settings import Settings
from relance.web.app import now_of, settings_of
from relance.web.attempts import LoginAttempts
from relance.web.pages import message, render

logger = logging.getLogger(__name__)

COOKIE = "relance_sdr"
LOGIN_COOKIE = "relance_sdr_login"
SESSION_LIFETIME = timedelta(hours=12)
LOGIN_LIFETIME = timedelta(hours=1)
NO_TOKEN = "set RELANCE_SDR_TOKEN"


# --- signing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A logged-in SDR: by cookie (with a nonce for its CSRF tokens) or by bearer token."""

    nonce: str
    owner: str = ""
    issued_at: int = 0
    bearer: bool = False


def _key(token: str) -> bytes:
    return hmac.new(token.encode(), b"relance sdr session key", hashlib.sha256).digest()


def _mac(token: str, text: str) -> str:
    return hmac.new(_key(token), text.encode(), hashlib.sha256).hexdigest()


def token_matches(token: str, given: str) -> bool:
    """Constant-time comparison of a given token with the configured one."""
    return hmac.compare_digest(token.encode(), given.encode())


def session_cookie(token: str, owner: str, now: datetime) -> tuple[Session, str]:
    """A new session and the cookie value that carries it."""
    session = Session(secrets.token_hex(16), owner, int(now.timestamp()))
    fields = {"n": session.nonce, "o": session.owner, "t": session.issued_at}
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    return session, f"{payload}.{_mac(token, 'session:' + payload)}"


def read_session(token: str, cookie: str | None, now: datetime) -> Session | None:
    """The session a cookie carries; None if it is missing, forged or expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    payload, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(token, "session:" + payload)):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        session = Session(str(fields["n"]), str(fields["o"]), int(fields["t"]))
    except (ValueError, KeyError, TypeError):
        return None
    age = now.timestamp() - session.issued_at
    if not -300 <= age <= SESSION_LIFETIME.total_seconds():
        return None
    return session


def csrf_token(token: str, nonce: str) -> str:
    """The hidden ``csrf`` field of the forms shown to the session with this nonce."""
    return _mac(token, "csrf:" + nonce)[:40]


def csrf_matches(token: str, nonce: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given, csrf_token(token, nonce))


# --- guarding routes -----------------------------------------------------------------


class RefusedError(Exception):
    """Raised by a dependency to answer with ``response`` instead of the page."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class GuardedRoute(APIRoute):
    """A route that answers a ``RefusedError`` raised by its dependencies with its response
    (a redirect to the login form, a 403 page), instead of the service's JSON errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RefusedError as refusal:
                return refusal.response

        return guarded


def configured_token(settings: Settings) -> str:
    if not settings.sdr_token:
        raise RefusedError(message(403, "SDR page disabled", NO_TOKEN))
    return settings.sdr_token


async def session_of(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> Session:
    """The SDR asking: by bearer token or session cookie; else a redirect or a refusal."""
    token = configured_token(settings)
    header = request.headers.get("authorization")
    if header is not None:
        throttle(request)
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and token_matches(token, given.strip()):
            return Session("bearer", bearer=True)
        failed_attempt(request)
        logger.warning("SDR page: wrong bearer token")
        refusal = message(401, "Wrong token", "The bearer token is not the SDR token.")
        refusal.headers["WWW-Authenticate"] = "Bearer"
        raise RefusedError(refusal)
    session = read_session(token, request.cookies.get(COOKIE), now)
    if session is not None:
        return session
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise RefusedError(RedirectResponse(f"/sdr/login?next={quote(target)}", 303))
    raise RefusedError(message(403, "Logged out", "Log in again, then repeat what you did."))


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def throttle(request: Request) -> None:
    """429 with Retry-After when this client sent too many wrong tokens lately."""
    attempts: LoginAttempts = request.app.state.login_attempts
    wait = attempts.wait(_client(request))
    if wait is not None:
        logger.warning("SDR login throttled: too many wrong tokens from one address")
        refusal = message(
            429, "Too many attempts", f"Too many wrong tokens: try again in {wait} seconds."
        )
        refusal.headers["Retry-After"] = str(wait)
        raise RefusedError(refusal)


def failed_attempt(request: Request) -> None:
    attempts: LoginAttempts = request.app.state.login_attempts
    attempts.failed(_client(request))


async def form_session(
    request: Request,
    session: Annotated[Session, Depends(session_of)],
    settings: Annotated[Settings, Depends(settings_of)],
) -> Session:
    """The session of a form post, whose ``csrf`` field must match it."""
    if session.bearer:
        return session
    form = await request.form()
    if not csrf_matches(configured_token(settings), session.nonce, form.get("csrf")):
        logger.warning("SDR page: form without a valid CSRF token refused")
        raise RefusedError(
            message(
                403,
                "Form refused",
                "This form is stale or came from another site: reload the page and try again.",
            )
        )
    return session


# --- login and logout ----------------------------------------------------------------

router = APIRouter(route_class=GuardedRoute)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of the SDR pages, nothing else."""
    if not target:
        return "/sdr"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/sdr") or "\\" in target:
        return "/sdr"
    return target


def _secure(request: Request, settings: Settings) -> bool:
    """Mark cookies Secure when the page is served over HTTPS (here or at public_url)."""
    public = urlsplit(settings.public_url)
    return request.url.scheme == "https" or (
        public.scheme == "https" and request.url.hostname == public.hostname
    )


def _login_form(
    request: Request, settings: Settings, target: str, status: int = 200, error: str = ""
) -> Response:
    token = configured_token(settings)
    nonce = secrets.token_hex(16)
    response = render(
        "login.html.j2",
        status,
        next=safe_next(target),
        csrf=csrf_token(token, "login:" + nonce),
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=int(LOGIN_LIFETIME.total_seconds()),
        path="/sdr/login",
        secure=_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/sdr/login")
async def login_page(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    target: Annotated[str, Query(alias="next", max_length=2000)] = "/sdr",
) -> Response:
    """The login form: the SDR token, and optionally one's own address."""
    return _login_form(request, settings, target)


@router.post("/sdr/login")
async def login(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    now: Annotated[datetime, Depends(now_of)],
    token: Annotated[str, Form(max_length=500)] = "",
    owner: Annotated[str, Form(max_length=320)] = "",
    target: Annotated[str, Form(alias="next", max_length=2000)] = "/sdr",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Check the token and start a session; the form again, with the reason, otherwise."""
    expected = configured_token(settings)
    throttle(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not csrf_matches(expected, "login:" + nonce, csrf):
        logger.warning("SDR login refused: stale form or no login cookie")
        return _login_form(request, settings, target, 403, "The form expired: try again.")
    if not token_matches(expected, token.strip()):
        failed_attempt(request)
        logger.warning("SDR login refused: wrong token")
        return _login_form(request, settings, target, 401, "Wrong token.")
    _, cookie = session_cookie(expected, owner.strip().lower(), now)
    response = RedirectResponse(safe_next(target), 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/sdr",
        secure=_secure(request, settings),
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/sdr/login", httponly=True, samesite="strict")
    logger.info("SDR login")
    return response


@router.post("/sdr/logout")
async def logout(_: Annotated[Session, Depends(form_session)]) -> Response:
    """End the session (the cookie is dropped; the token stays valid)."""
    response = RedirectResponse("/sdr/login", 303)
    response.delete_cookie(COOKIE, path="/sdr", httponly=True, samesite="strict")
    return response
