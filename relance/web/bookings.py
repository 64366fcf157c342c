"""``POST /webhooks/calendly`` and ``POST /webhooks/calcom``: bookings from scheduling tools.

The signature is checked on the raw body before anything is read: with no secret
configured, or with a missing, malformed, wrong or (Calendly) stale signature, the answer
is 403 and nothing is stored. A signed body that is not the provider's JSON is a 400
naming the field at fault. Otherwise the booking is applied once (``relance.meetings``)
and the answer says what it did, with ids only::

    {"outcome": "booked", "prospect_id": 12, "meeting_id": 3}

Events about something else (Cal.com's ping, Calendly's no-shows...) are answered
``{"outcome": "ignored"}``. Bookings from people Relance does not follow are answered
200 too ("unknown prospect", "no live enrollment"): the provider must not retry them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integrations import calcom, calendly
from relance.bookings import BookingEvent, MeetingOutcome
from relance.errors import SignatureError
from relance.meetings import apply_booking_event
from relance.notify import emit_prospect_event
from relance.settings import Settings
from relance.store import Store
from relance.web.app import error, now_of, settings_of, store_of

logger = logging.getLogger(__name__)

router = APIRouter()


@router.post("/webhooks/calendly")
async def calendly_webhook(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> JSONResponse:
    """Calendly's invitee.created / invitee.canceled, signed with the subscription's key."""
    body = await request.body()
    try:
        calendly.verify_signature(
            body,
            request.headers.get(calendly.SIGNATURE_HEADER),
            key=settings.calendly_signing_key,
            now=now,
            tolerance_seconds=settings.calendly_tolerance_seconds,
        )
    except SignatureError as refusal:
        logger.warning("Calendly webhook refused: %s", refusal)
        return error(403, str(refusal))
    return await _answer(store, calendly.parse_event(body), now)


@router.post("/webhooks/calcom")
async def calcom_webhook(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> JSONResponse:
    """Cal.com's BOOKING_CREATED / _RESCHEDULED / _CANCELLED, signed with the webhook secret."""
    body = await request.body()
    try:
        calcom.verify_signature(
            body, request.headers.get(calcom.SIGNATURE_HEADER), secret=settings.calcom_secret
        )
    except SignatureError as refusal:
        logger.warning("Cal.com webhook refused: %s", refusal)
        return error(403, str(refusal))
    return await _answer(store, calcom.parse_event(body), now)


async def _answer(store: Store, event: BookingEvent | None, now: datetime) -> JSONResponse:
    if event is None:
        return JSONResponse({"outcome": "ignored"})
    outcome = await run_in_threadpool(_apply, store, event, now)
    return JSONResponse(
        {
            "outcome": outcome.result.value,
            "prospect_id": outcome.prospect_id,
            "meeting_id": outcome.meeting_id,
        }
    )


def _apply(store: Store, event: BookingEvent, now: datetime) -> MeetingOutcome:
    outcome = apply_booking_event(store, event, now=now)
    logger.info(
        "%s booking %s: %s (prospect %s, meeting %s)",
        event.provider,
        event.kind.value,
        outcome.result.value,
        outcome.prospect_id,
        outcome.meeting_id,
    )
    if outcome.signal is not None:
        emit_prospect_event(
            outcome.signal,
            outcome.prospect_id,
            outcome.enrollment_ids,
            {"source": event.provider, "meeting_id": outcome.meeting_id},
        )
    return outcome
