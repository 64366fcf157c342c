"""``POST /webhooks/sendgrid/inbound``: replies, out-of-office messages and mailto unsubscribes
posted by SendGrid Inbound Parse.

Point Inbound Parse (Settings > Inbound Parse, "send raw" off) at one of:

- ``https://sendgrid:<secret>@<host>/webhooks/sendgrid/inbound``: HTTP basic auth, any user
  name, the password being ``RELANCE_INBOUND_SECRET`` (SendGrid sends the credentials
  written in the URL);
- ``https://<host>/webhooks/sendgrid/inbound/<secret>``: the secret as the last path segment,
  for set-ups where credentials in the URL are not possible.

Without a configured secret both answer 403; a missing password answers 401, a wrong one
403, and nothing is read or stored. A form that does not parse answers 400. Everything
else answers 200 ``{"outcome": "replied" | "out_of_office" | "unsubscribed" | "ignored" |
"unmatched" | "duplicate", ...}``: SendGrid retries a message for days on any other code,
so a message that matches nobody is still a 200, and a retried one changes nothing.
Recorded signals (replied, snoozed, paused) are announced as Prefect events.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from integrations.inbound_parse import InboundEmail, parse_inbound
from relance.errors import InputError
from relance.notify import emit_prospect_event
from relance.replies import InboundOutcome, record_inbound
from relance.settings import Settings
from relance.store import Store
from relance.web.app import error, now_of, settings_of, store_of

logger = logging.getLogger(__name__)

router = APIRouter()

PATH = "/webhooks/sendgrid/inbound"
MAX_FIELDS = 200
MAX_FILES = 100
REALM = 'Basic realm="relance-inbound", charset="UTF-8"'
NOT_CONFIGURED = "inbound parse is not configured: set RELANCE_INBOUND_SECRET"


@router.post(PATH)
async def inbound(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> JSONResponse:
    """An Inbound Parse post, authenticated by HTTP basic auth."""
    if not settings.inbound_secret:
        return error(403, NOT_CONFIGURED)
    password = basic_password(request.headers.get("authorization"))
    if password is None:
        response = error(401, "basic auth credentials required")
        response.headers["WWW-Authenticate"] = REALM
        return response
    if not same_secret(password, settings.inbound_secret):
        return error(403, "wrong inbound secret")
    return await _receive(request, store, settings, now)


@router.post(PATH + "/{secret}")
async def inbound_with_secret(
    secret: str,
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> JSONResponse:
    """An Inbound Parse post, authenticated by the secret in its path."""
    if not settings.inbound_secret:
        return error(403, NOT_CONFIGURED)
    if not same_secret(secret, settings.inbound_secret):
        return error(403, "wrong inbound secret")
    return await _receive(request, store, settings, now)


def basic_password(authorization: str | None) -> str | None:
    """The password of a ``Basic`` Authorization header, None when there is none."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


async def _receive(
    request: Request, store: Store, settings: Settings, now: datetime
) -> JSONResponse:
    try:
        form = await request.form(
            max_fields=MAX_FIELDS, max_files=MAX_FILES, max_part_size=settings.max_inbound_bytes
        )
    except (MultiPartException, HTTPException) as refused:
        detail = getattr(refused, "detail", None) or getattr(refused, "message", "")
        return error(400, f"the form does not parse: {detail}")
    try:
        fields: dict[str, str] = {}
        files = 0
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files += 1
            else:
                fields.setdefault(name, value)
        email = parse_inbound(fields, attachments=files)
    except InputError as refused:
        return error(400, str(refused))
    finally:
        await form.close()
    outcome = await run_in_threadpool(_record, store, email, now, settings)
    return JSONResponse(outcome.summary())


def _record(store: Store, email: InboundEmail, now: datetime, settings: Settings) -> InboundOutcome:
    """Record the message, then announce what changed (in a worker thread: it blocks)."""
    outcome = record_inbound(store, email, now=now, settings=settings)
    for notice in outcome.notices:
        emit_prospect_event(
            notice.signal, notice.prospect_id, notice.enrollment_ids, {"source": "inbound"}
        )
    return outcome
