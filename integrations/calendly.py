"""Calendly webhooks (API v2): prove a request comes from Calendly, read its booking.

Signature. ``Calendly-Webhook-Signature: t=<unix seconds>,v1=<hex>`` where v1 is the
HMAC-SHA256, keyed with the webhook subscription's signing key, of ``"<t>.<raw body>"``.
Without a key, or with a missing, malformed or wrong signature, the request is refused
(``SignatureError``); so is one signed more than ``tolerance_seconds`` away from now: it
can only be a captured request played again. Inside the window a replay is harmless,
since every booking event is recorded once.

Payload. ``invitee.created`` and ``invitee.canceled`` are read; any other event (no-show,
routing form...) is ignored::

    {"event": "invitee.created", "created_at": "2026-03-02T10:00:00.000000Z",
     "payload": {"uri": <invitee URI, the booking's id>, "email", "name",
                 "rescheduled": false, "old_invitee": <URI>|null, "new_invitee": <URI>|null,
                 "cancellation": {"canceled_by", "reason", "canceler_type": "host"|"invitee"},
                 "scheduled_event": {"uri", "start_time", "end_time",
                                     "location": {"type", "location"?, "join_url"?}}}}

A reschedule is two events, in no promised order: ``invitee.canceled`` of the old invitee
with ``rescheduled: true`` (and ``new_invitee``), and ``invitee.created`` of the new one
with ``old_invitee``. They become a ``superseded`` and a ``rescheduled`` BookingEvent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
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

PROVIDER = "calendly"
SIGNATURE_HEADER = "Calendly-Webhook-Signature"
CREATED = "invitee.created"
CANCELED = "invitee.canceled"

_UNIX_TIME = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def signature_header(body: bytes, key: str, timestamp: int) -> str:
    """The header Calendly sends with ``body`` signed at ``timestamp`` (Unix seconds)."""
    return f"t={timestamp},v1={_digest(body, key, str(timestamp))}"


def verify_signature(
    body: bytes, header: str | None, *, key: str | None, now: datetime, tolerance_seconds: int
) -> None:
    """Return if ``header`` signs ``body`` with ``key`` near ``now``; SignatureError if not."""
    if not key:
        raise SignatureError(
            "Calendly webhooks need a signing key: set RELANCE_CALENDLY_SIGNING_KEY"
        )
    if header is None or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    values: dict[str, list[str]] = {}
    for item in header.split(","):
        name, equals, value = item.strip().partition("=")
        if not equals:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=...,v1=...")
        values.setdefault(name, []).append(value.strip())
    stamps, signatures = values.get("t", []), values.get("v1", [])
    if (
        len(stamps) != 1
        or not _UNIX_TIME.fullmatch(stamps[0])
        or not signatures
        or not all(_HEX.fullmatch(signature) for signature in signatures)
    ):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=...,v1=...")
    age = now.timestamp() - int(stamps[0])
    if abs(age) > tolerance_seconds:
        raise SignatureError(
            f"the signature is {abs(int(age))} seconds {'old' if age > 0 else 'ahead'}: "
            f"more than the {tolerance_seconds} accepted"
        )
    expected = _digest(body, key, stamps[0]).encode("ascii")
    if not any(
        hmac.compare_digest(expected, signature.lower().encode("ascii")) for signature in signatures
    ):
        raise SignatureError("the signature does not match the body")


def _digest(body: bytes, key: str, timestamp: str) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(key.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def parse_event(body: bytes) -> BookingEvent | None:
    """The booking event in a (verified) body; None for events about something else.

    InputError names the first field that is missing or of the wrong type.
    """
    data = json_object(body)
    name = data.get("event")
    if not isinstance(name, str):
        raise InputError('event: expected the event\'s name, such as "invitee.created"')
    if name not in (CREATED, CANCELED):
        return None
    payload = required_object(data, "payload", "payload")
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "external_id": required_text(payload, "uri", "payload.uri"),
        "email": required_text(payload, "email", "payload.email"),
        "name": optional_text(payload, "name", "payload.name") or "",
        "occurred_at": optional_time(data, "created_at", "created_at"),
    }
    if name == CANCELED:
        if payload.get("rescheduled") is True:
            replaced_by = optional_text(payload, "new_invitee", "payload.new_invitee")
            return BookingEvent(BookingKind.SUPERSEDED, replaced_by=replaced_by, **common)
        cancellation = optional_object(payload, "cancellation", "payload.cancellation") or {}
        canceler = cancellation.get("canceler_type")
        return BookingEvent(
            BookingKind.CANCELLED,
            reason=optional_text(cancellation, "reason", "payload.cancellation.reason"),
            cancelled_by=canceler if canceler in ("host", "invitee") else None,
            **common,
        )
    scheduled = required_object(payload, "scheduled_event", "payload.scheduled_event")
    where = optional_object(scheduled, "location", "payload.scheduled_event.location") or {}
    previous = optional_text(payload, "old_invitee", "payload.old_invitee")
    return BookingEvent(
        BookingKind.RESCHEDULED if previous else BookingKind.CREATED,
        starts_at=required_time(scheduled, "start_time", "payload.scheduled_event.start_time"),
        ends_at=required_time(scheduled, "end_time", "payload.scheduled_event.end_time"),
        location=optional_text(where, "location", "payload.scheduled_event.location.location"),
        join_url=optional_text(where, "join_url", "payload.scheduled_event.location.join_url"),
        previous_external_id=previous,
        **common,
    )
