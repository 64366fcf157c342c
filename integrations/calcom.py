"""Cal.com webhooks: prove a request comes from Cal.com, read its booking.

Signature. ``X-Cal-Signature-256`` is the hex HMAC-SHA256 of the raw body, keyed with the
webhook's secret. Without a secret (Cal.com then sends no usable signature), or with a
missing or wrong one, the request is refused (``SignatureError``). Cal.com signs no
timestamp: a replayed request is harmless, since every booking event is recorded once.

Payload. ``BOOKING_CREATED``, ``BOOKING_RESCHEDULED`` and ``BOOKING_CANCELLED`` are read;
any other trigger (``PING`` from the test button, ``MEETING_ENDED``...) is ignored::

    {"triggerEvent": "BOOKING_CREATED", "createdAt": "2026-03-02T10:00:00.000Z",
     "payload": {"uid": <the booking's id>, "startTime", "endTime",
                 "attendees": [{"email", "name", "timeZone"}, ...],
                 "location": "<address, link or integrations:...>",
                 "metadata": {"videoCallUrl"?},
                 "rescheduleUid"?: <the booking a reschedule replaces>,
                 "cancellationReason"?, "cancelledBy"?}}

The first attendee is the person who booked. A reschedule creates a new booking (a new
``uid``) and names the one it replaces in ``rescheduleUid``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from integrations.payload import (
    json_object,
    optional_object,
    optional_text,
    optional_time,
    required_object,
    required_text,
    required_time,
)
from relance.bookings import BookingEvent, BookingKind
from relance.errors import InputError, SignatureError

PROVIDER = "calcom"
SIGNATURE_HEADER = "X-Cal-Signature-256"
KINDS = {
    "BOOKING_CREATED": BookingKind.CREATED,
    "BOOKING_RESCHEDULED": BookingKind.RESCHEDULED,
    "BOOKING_CANCELLED": BookingKind.CANCELLED,
}

_HEX = re.compile(r"[0-9a-fA-F]{64}")


def signature(body: bytes, secret: str) -> str:
    """The ``X-Cal-Signature-256`` value Cal.com sends with ``body``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, *, secret: str | None) -> None:
    """Return if ``header`` signs ``body`` with ``secret``; SignatureError if not."""
    if not secret:
        raise SignatureError("Cal.com webhooks need a secret: set RELANCE_CALCOM_SECRET")
    if header is None or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    given = header.strip()
    if not _HEX.fullmatch(given):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected 64 hex digits")
    expected = signature(body, secret).encode("ascii")
    if not hmac.compare_digest(expected, given.lower().encode("ascii")):
        raise SignatureError("the signature does not match the body")


def parse_event(body: bytes) -> BookingEvent | None:
    """The booking event in a (verified) body; None for triggers about something else.

    InputError names the first field that is missing or of the wrong type.
    """
    data = json_object(body)
    trigger = data.get("triggerEvent")
    if not isinstance(trigger, str):
        raise InputError('triggerEvent: expected the trigger\'s name, such as "BOOKING_CREATED"')
    kind = KINDS.get(trigger)
    if kind is None:
        return None
    payload = required_object(data, "payload", "payload")
    attendees = payload.get("attendees")
    if not isinstance(attendees, list) or not attendees:
        raise InputError("payload.attendees: expected a list of at least one attendee")
    if not isinstance(attendees[0], dict):
        raise InputError("payload.attendees[0]: expected an object")
    booker = attendees[0]
    email = required_text(booker, "email", "payload.attendees[0].email")
    uid = required_text(payload, "uid", "payload.uid")
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "external_id": uid,
        "email": email,
        "name": optional_text(booker, "name", "payload.attendees[0].name") or "",
        "occurred_at": optional_time(data, "createdAt", "createdAt"),
    }
    if kind is BookingKind.CANCELLED:
        canceller = optional_text(payload, "cancelledBy", "payload.cancelledBy")
        if canceller is not None:  # the address of who cancelled
            canceller = "invitee" if canceller.strip().lower() == email.strip().lower() else "host"
        return BookingEvent(
            kind,
            reason=optional_text(payload, "cancellationReason", "payload.cancellationReason"),
            cancelled_by=canceller,
            **common,
        )
    location = optional_text(payload, "location", "payload.location")
    metadata = optional_object(payload, "metadata", "payload.metadata") or {}
    video = optional_text(metadata, "videoCallUrl", "payload.metadata.videoCallUrl")
    is_link = location is not None and location.startswith(("https://", "http://"))
    return BookingEvent(
        kind,
        starts_at=required_time(payload, "startTime", "payload.startTime"),
        ends_at=required_time(payload, "endTime", "payload.endTime"),
        join_url=video or (location if is_link else None),
        # "integrations:daily" and the like name an app, not a place a person can go to.
        location=None if is_link or (location or "").startswith("integrations:") else location,
        previous_external_id=(
            optional_text(payload, "rescheduleUid", "payload.rescheduleUid") or uid
            if kind is BookingKind.RESCHEDULED
            else None
        ),
        **common,
    )
