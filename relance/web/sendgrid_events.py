"""``POST /webhooks/sendgrid/events``: SendGrid's signed Event Webhook.

The signature is checked on the raw body before anything is parsed: without a
configured key, or with a missing, malformed, stale or wrong signature, the answer is
403 and nothing is stored. A signed body that is not a JSON array is a 400. Otherwise
the events are recorded once each (SendGrid retries for 24 hours and sends duplicates)
and the answer counts them: ``{"accepted": n, "duplicates": m, "ignored": k}``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from integrations.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventSignatureError,
    read_mail_events,
    verify_signature,
)
from relance.engagement import EngagementTally, MailEvent, apply_mail_events
from relance.notify import emit_prospect_event
from relance.settings import Settings
from relance.store import Store
from relance.web.app import error, now_of, settings_of, store_of

logger = logging.getLogger(__name__)

router = APIRouter()


@router.post("/webhooks/sendgrid/events")
async def receive_events(
    request: Request,
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
) -> JSONResponse:
    """Verify, then record SendGrid's events; 403 and nothing stored when unsigned."""
    body = await request.body()
    key = settings.sendgrid_webhook_public_key
    if not key:
        logger.warning("SendGrid events refused: no RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY")
        return error(403, "signed events are required: set RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY")
    try:
        verify_signature(
            key,
            body,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            now=now,
            tolerance=timedelta(seconds=settings.sendgrid_webhook_tolerance_seconds),
        )
    except EventSignatureError as refusal:
        logger.warning("SendGrid events refused: %s", refusal)
        return error(403, str(refusal))
    mail_events, ignored = read_mail_events(body, asm_group_id=settings.sendgrid_asm_group_id)
    tally = await run_in_threadpool(_apply, store, mail_events, now)
    logger.info(
        "SendGrid events: %d accepted, %d duplicates, %d ignored, %d touchpoints settled",
        tally.accepted,
        tally.duplicates,
        tally.ignored + ignored,
        tally.settled,
    )
    return JSONResponse(
        {
            "accepted": tally.accepted,
            "duplicates": tally.duplicates,
            "ignored": tally.ignored + ignored,
        }
    )


def _apply(store: Store, mail_events: list[MailEvent], now: datetime) -> EngagementTally:
    tally = apply_mail_events(store, mail_events, now=now)
    for outcome in tally.signals:
        emit_prospect_event(
            outcome.signal.value,
            outcome.prospect_id,
            [enrollment_id for enrollment_id, _, _ in outcome.changed],
            {"source": "sendgrid", "suppressed": outcome.suppressed},
        )
    return tally
