"""SendGrid's signed Event Webhook: prove a request comes from SendGrid, read its events.

Signature. SendGrid signs ``<X-Twilio-Email-Event-Webhook-Timestamp><raw body>`` with
ECDSA P-256 over SHA-256 and sends the DER signature in base64 in
``X-Twilio-Email-Event-Webhook-Signature``. The public key (Mail Settings > Signed Event
Webhook, or the API) comes as base64 DER; PEM is accepted too. The library's helper
(``sendgrid.helpers.eventwebhook.EventWebhook``, on ``cryptography`` since 6.10) does the
same check but verifies a ``str`` payload and lets a malformed key, signature or base64
raise; this module checks the raw bytes with ``cryptography`` directly and turns every
malformation into ``EventSignatureError``, a refusal.

Timestamp. It is the moment SendGrid signed the POST, a Unix time in seconds. SendGrid
retries failed posts for 24 hours and documents no tolerance; Relance takes each attempt
to be signed when it is made, so that a genuine request is fresh, and refuses one signed
more than ``tolerance`` away from now (10 minutes by default, for clock skew and queues):
only a captured request played again can be older. Replays inside the window are
harmless (each event is recorded once, by its ``sg_event_id``); if retries ever came back
refused as stale, raising RELANCE_SENDGRID_WEBHOOK_TOLERANCE_SECONDS is safe for the
same reason.

Events. The body is a JSON array of objects; the ids Relance puts in each
personalization's ``custom_args`` (touchpoint_id, enrollment_id, sequence_id, step_id)
come back as top-level keys of each event. Meanings (``relance.engagement``):

    processed            accepted        deferred              deferred
    delivered            delivered       open                  opened
    click                clicked         bounce (type blocked) blocked: a soft bounce
    bounce (type bounce) bounced         spamreport            spam_report
    dropped              dropped, and the signal its reason names (unsubscribed, spam
                         report; any other reason counts as a bounce)
    unsubscribe, group_unsubscribe       unsubscribed (a group_unsubscribe from another
                                         group than ``asm_group_id``, when both are known,
                                         is not about Relance's mail: ignored)
    anything else (group_resubscribe...) ignored
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from relance.addresses import address_key
from relance.engagement import MailEvent, MailEventKind
from relance.engine import Signal
from relance.errors import InputError

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SOURCE = "sendgrid"
DEFAULT_TOLERANCE = timedelta(minutes=10)

_UNIX_TIME = re.compile(r"[0-9]{1,12}")
_EVENT_ID = re.compile(r"[A-Za-z0-9_\-+/=.:]{1,120}")
_ID_TEXT = re.compile(r"[A-Za-z0-9_\-.:@]{1,100}")
_ADDRESS = re.compile(r"[^@\s\x00]{1,256}@[^@\s\x00]{1,255}")
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_MAX_REASON = 500
_MAX_ID = 2**63 - 1


class EventSignatureError(InputError):
    """The request is not provably from SendGrid: refuse it (403) and store nothing."""


@lru_cache(maxsize=8)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER (as SendGrid shows it) or PEM form."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            der = base64.b64decode("".join(text.split()), validate=True)
            key = serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise EventSignatureError(
            "the Event Webhook public key (RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY) is not a "
            "base64 DER or PEM public key"
        ) from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EventSignatureError(
            "the Event Webhook public key (RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY) is not an "
            "ECDSA P-256 key"
        )
    return key


def verify_signature(
    public_key: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Return if SendGrid signed ``body`` at ``timestamp`` near ``now``; else raise
    ``EventSignatureError`` saying why (never anything else, whatever the input)."""
    if not signature or not timestamp:
        raise EventSignatureError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    timestamp = timestamp.strip()
    if not _UNIX_TIME.fullmatch(timestamp):
        raise EventSignatureError(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > tolerance.total_seconds():
        raise EventSignatureError(
            f"{TIMESTAMP_HEADER} is {int(skew)} s away from now "
            f"(more than {int(tolerance.total_seconds())} s)"
        )
    key = load_public_key(public_key)
    try:
        der = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as error:
        raise EventSignatureError(f"{SIGNATURE_HEADER} is not base64") from error
    try:
        key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as error:
        raise EventSignatureError("the signature does not match the body") from error


@dataclass(frozen=True)
class SendGridEvent:
    """One event of the webhook's body, in SendGrid's own words."""

    event: str
    sg_event_id: str | None
    email: str | None
    timestamp: datetime | None
    reason: str | None
    """``reason`` (bounce, dropped) or ``response`` (deferred), addresses masked."""
    type: str | None
    """For a bounce: ``bounce`` (hard) or ``blocked`` (soft)."""
    sg_message_id: str | None
    asm_group_id: int | None
    machine_open: bool
    touchpoint_id: int | None
    enrollment_id: int | None
    sequence_id: str | None
    step_id: str | None
    digest: str | None
    """SHA-256 of the event object, the key of an event that has no usable sg_event_id."""

    @property
    def external_id(self) -> str | None:
        if self.sg_event_id is not None:
            return f"{SOURCE}:{self.sg_event_id}"
        return f"{SOURCE}:sha256:{self.digest}" if self.digest else None


@dataclass(frozen=True)
class EventBatch:
    events: list[SendGridEvent]
    malformed: int
    """Items of the array that are not JSON objects."""


def parse_events(body: bytes) -> EventBatch:
    """The events of a webhook body; ``InputError`` when it is not a JSON array."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InputError("the body is not JSON: expected an array of SendGrid events") from error
    if not isinstance(document, list):
        raise InputError(f"expected a JSON array of SendGrid events, got {type(document).__name__}")
    parsed = [_event(item) for item in document if isinstance(item, dict)]
    return EventBatch(parsed, len(document) - len(parsed))


def _event(item: dict[str, Any]) -> SendGridEvent:
    event_id = item.get("sg_event_id")
    usable_id = event_id if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id) else None
    reason = item.get("reason") if item.get("reason") is not None else item.get("response")
    return SendGridEvent(
        event=_text(item.get("event"), 40) or "",
        sg_event_id=usable_id,
        email=_address(item.get("email")),
        timestamp=_moment(item.get("timestamp")),
        reason=_masked(_text(reason, _MAX_REASON)),
        type=_text(item.get("type"), 40),
        sg_message_id=_id_text(item.get("sg_message_id")),
        asm_group_id=_number(item.get("asm_group_id")),
        machine_open=item.get("sg_machine_open") is True,
        touchpoint_id=_number(item.get("touchpoint_id")),
        enrollment_id=_number(item.get("enrollment_id")),
        sequence_id=_id_text(item.get("sequence_id")),
        step_id=_id_text(item.get("step_id")),
        digest=None if usable_id else _digest(item),
    )


def translate(event: SendGridEvent, *, asm_group_id: int | None = None) -> MailEvent | None:
    """The event in Relance's words; None for what Relance does not act on."""
    external_id = event.external_id
    meaning = _meaning(event, asm_group_id)
    if external_id is None or meaning is None:
        return None
    kind, signal = meaning
    data: dict[str, Any] = {}
    if kind is MailEventKind.OPENED and event.machine_open:
        data["machine_open"] = True  # a mail client's privacy proxy fetched it, not a person
    return MailEvent(
        external_id=external_id,
        kind=kind,
        source=SOURCE,
        email=event.email,
        occurred_at=event.timestamp,
        touchpoint_id=event.touchpoint_id,
        signal=signal,
        reason=event.reason,
        data=data,
    )


def read_mail_events(
    body: bytes, *, asm_group_id: int | None = None
) -> tuple[list[MailEvent], int]:
    """The events of a (verified) body that Relance acts on, and how many it ignores."""
    batch = parse_events(body)
    translated = [translate(event, asm_group_id=asm_group_id) for event in batch.events]
    kept = [mail_event for mail_event in translated if mail_event is not None]
    return kept, batch.malformed + len(translated) - len(kept)


_PLAIN: dict[str, MailEventKind] = {
    "processed": MailEventKind.ACCEPTED,
    "deferred": MailEventKind.DEFERRED,
    "delivered": MailEventKind.DELIVERED,
    "open": MailEventKind.OPENED,
    "click": MailEventKind.CLICKED,
}


def _meaning(
    event: SendGridEvent, asm_group_id: int | None
) -> tuple[MailEventKind, Signal | None] | None:
    name = event.event
    if name in _PLAIN:
        return _PLAIN[name], None
    if name == "bounce":
        if (event.type or "").lower() == "blocked":
            return MailEventKind.BLOCKED, None
        return MailEventKind.BOUNCED, Signal.BOUNCED
    if name == "dropped":
        reason = (event.reason or "").lower()
        if "unsubscribe" in reason:
            return MailEventKind.DROPPED, Signal.UNSUBSCRIBED
        if "spam" in reason:
            return MailEventKind.DROPPED, Signal.SPAM_REPORT
        return MailEventKind.DROPPED, Signal.BOUNCED
    if name == "spamreport":
        return MailEventKind.SPAM_REPORT, Signal.SPAM_REPORT
    if name == "unsubscribe":
        return MailEventKind.UNSUBSCRIBED, Signal.UNSUBSCRIBED
    if name == "group_unsubscribe":
        other_group = (
            asm_group_id is not None
            and event.asm_group_id is not None
            and event.asm_group_id != asm_group_id
        )
        return None if other_group else (MailEventKind.UNSUBSCRIBED, Signal.UNSUBSCRIBED)
    return None


def _text(value: Any, limit: int) -> str | None:
    """A string as the store can keep it: no NUL, no lone surrogate, at most ``limit``."""
    if not isinstance(value, str):
        return None
    cleaned = value.encode("utf-8", "ignore").decode("utf-8").replace("\x00", "").strip()
    return cleaned[:limit] or None


def _masked(text: str | None) -> str | None:
    """Providers quote the address in bounce reasons: keep the reason, not the address."""
    return None if text is None else _ADDRESS_IN_TEXT.sub("<address>", text)


def _id_text(value: Any) -> str | None:
    return value if isinstance(value, str) and _ID_TEXT.fullmatch(value) else None


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    if len(address) > 320 or not address.isprintable() or not _ADDRESS.fullmatch(address):
        return None
    return address_key(address)


def _number(value: Any) -> int | None:
    """A positive id given as a number or a string of digits (custom_args are strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, int) and 0 < value <= _MAX_ID:
        return value
    return None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _digest(item: dict[str, Any]) -> str | None:
    try:
        canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        return None
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
