"""What the core hands to an e-mail channel, and what a channel promises back.

An `OutboundEmail` is a fully rendered message for one touchpoint. A `Sender` delivers it
and returns a `SendResult`, or raises one of the channel errors of `relance.errors`:

    ChannelError
    ├── PermanentChannelError  the provider refused the message: never retry it
    └── TransientChannelError  try again later, after `retry_after` seconds if the provider said

`send_many` delivers a batch with bounded concurrency and returns one outcome per message,
in the order given, so that the caller records every outcome even when some fail.
Nothing here touches the network, the clock or the filesystem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Literal, Protocol

from relance.errors import ChannelError, PermanentChannelError

logger = logging.getLogger(__name__)

# Headers that a message's own fields set (or that providers own): `headers` may not repeat them.
# SendGrid refuses x-sg-id, x-sg-eid, received, dkim-signature, content-type,
# content-transfer-encoding, to, from, subject, reply-to, cc and bcc in `headers`.
RESERVED_HEADERS = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "dkim-signature",
        "from",
        "in-reply-to",
        "message-id",
        "mime-version",
        "received",
        "references",
        "reply-to",
        "subject",
        "to",
        "x-sg-eid",
        "x-sg-id",
    }
)

BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """A file carried by a message, e.g. `invite.ics` as `text/calendar; method=REQUEST`."""

    filename: str
    content_type: str
    content: bytes
    disposition: Literal["attachment", "inline"] = "attachment"
    content_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutboundEmail:
    """A rendered e-mail for one touchpoint.

    `message_id` is stable per touchpoint (see `message_id_for`), so that a resend is
    recognisable and replies thread. `references` holds message ids, oldest first.
    `custom_args` carry ids only, never personal data: providers echo them in events.
    Sequences given as lists are stored as tuples; a `references` string is split on spaces.
    """

    touchpoint_id: str
    enrollment_id: str
    sequence_id: str
    step_id: str
    to_email: str
    from_email: str
    subject: str
    text: str
    message_id: str
    to_name: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    html: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: Sequence[Attachment] = ()
    categories: Sequence[str] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)
    date: datetime | None = None
    """When it is sent, on the caller's clock (the tick's ``now``): a channel that writes the
    ``Date:`` header itself uses it; None: the channel's own clock."""

    def __post_init__(self) -> None:
        references = self.references
        if isinstance(references, str):
            references = references.split()
        object.__setattr__(self, "references", tuple(references))
        object.__setattr__(self, "attachments", tuple(self.attachments))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "custom_args", dict(self.custom_args))
        for name, value in (
            ("To", self.to_email),
            ("To", self.to_name),
            ("From", self.from_email),
            ("From", self.from_name),
            ("Reply-To", self.reply_to),
            ("Subject", self.subject),
            ("Message-ID", self.message_id),
            ("In-Reply-To", self.in_reply_to),
            ("References", " ".join(self.references)),
            *self.headers.items(),
        ):
            check_header_value(name, value)
        reserved = sorted(name for name in self.headers if name.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(
                f"headers {', '.join(reserved)} are set from the message's own fields, "
                "not from `headers`"
            )


def check_header_value(name: str, value: str | None) -> None:
    """ValueError when a header value holds CR, LF or NUL, as written or once its RFC 2047
    encoded words (``=?utf-8?q?=0D=0A?=``) are decoded: a mail program that decodes them
    must never find a new header line. The message names the header, never the value."""
    if not value:
        return
    for text in (value, _decoded_words(value)):
        if any(char in text for char in "\r\n\x00"):
            raise ValueError(
                f"header {name}: expected one line of text, got a line break or NUL"
                + (" in an encoded word" if text is not value else "")
            )


def _decoded_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, TypeError, HeaderParseError):
        return value.replace("=?", "")  # undecodable: nothing new can come of it


@dataclass(frozen=True)
class SendResult:
    """A provider accepted a message; `provider_message_id` is its id for it, if it gave one."""

    provider: str
    provider_message_id: str | None


class Sender(Protocol):
    """An e-mail channel. `send` raises Permanent- or TransientChannelError."""

    def send(self, message: OutboundEmail) -> SendResult: ...

    def send_many(self, messages: Sequence[OutboundEmail]) -> list[SendResult | ChannelError]: ...


def message_id_for(message_token: str, domain: str) -> str:
    """The Message-ID of a touchpoint's e-mail, from its stored random ``message_token``:
    the same on every attempt, unique across installations, and not guessable.

    >>> message_id_for("5f0c6a8e2d9b4e7a9c1d3b5a7e9f1c2d", "example.com")
    '<5f0c6a8e2d9b4e7a9c1d3b5a7e9f1c2d@example.com>'
    """
    return f"<{message_token}@{domain}>"


def tracking_args(message: OutboundEmail) -> dict[str, str]:
    """The ids that a provider echoes back in its events, merged with the message's own."""
    return {
        "touchpoint_id": message.touchpoint_id,
        "enrollment_id": message.enrollment_id,
        "sequence_id": message.sequence_id,
        "step_id": message.step_id,
        **message.custom_args,
    }


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
) -> float:
    """Seconds to wait before attempt number `attempt + 1` after `attempt` failures.

    The provider's `retry_after` wins when it gave one; otherwise the delay doubles from
    `base` at each attempt, up to `cap`.

    >>> [backoff_delay(n) for n in (1, 2, 3)]
    [30.0, 60.0, 120.0]
    >>> backoff_delay(1, retry_after=5)
    5.0
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if retry_after is not None:
        return max(float(retry_after), 0.0)
    return float(min(base * 2 ** (attempt - 1), cap))


def send_concurrently(
    send: Callable[[OutboundEmail], SendResult],
    messages: Sequence[OutboundEmail],
    max_workers: int,
    executor: ThreadPoolExecutor | None = None,
) -> list[SendResult | ChannelError]:
    """Call `send` on every message with at most `max_workers` in flight; keep the order.

    A long-lived sender passes its own `executor` so that threads are started once, not
    for every batch.

    A channel error is returned in the message's place. Any other exception is a defect,
    but the other messages may already be sent, so it is logged and returned as a
    PermanentChannelError rather than raised: the caller must record every outcome.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")

    def attempt(message: OutboundEmail) -> SendResult | ChannelError:
        try:
            return send(message)
        except ChannelError as error:
            return error
        except Exception as error:
            logger.exception("unexpected error sending touchpoint %s", message.touchpoint_id)
            return PermanentChannelError(f"unexpected {type(error).__name__}: {error}")

    if max_workers == 1 or len(messages) <= 1:
        return [attempt(message) for message in messages]
    if executor is not None:
        return list(executor.map(attempt, messages))
    with ThreadPoolExecutor(
        max_workers=min(max_workers, len(messages)), thread_name_prefix="relance-send"
    ) as pool:
        return list(pool.map(attempt, messages))
