"""The SendGrid e-mail channel, through the official `sendgrid` library (v3 Mail Send).

Translates an `OutboundEmail` into a Mail Send request and SendGrid's answers into the
core's results and errors:

    202                       SendResult("sendgrid", X-Message-Id)
    429, 5xx                  TransientChannelError(retry_after from Retry-After or
                              X-RateLimit-Reset)
    401, 403                  TransientChannelError: the API key or sender identity is wrong,
                              which an operator fixes; the messages themselves are fine
    other 4xx                 PermanentChannelError with SendGrid's error messages
    connection refused,       TransientChannelError: the request never reached SendGrid
    timeout while connecting
    timeout or connection     UnconfirmedChannelError: the request went out, the answer
    lost while waiting for    never came; SendGrid may have accepted it, so it is not
    the answer                resent (relance/recovery.py settles it from the events)

The ids of the touchpoint travel as `custom_args` of the personalization (SendGrid echoes
them in every event); the schema only allows a string for the top-level `custom_args`.
Retrying is the caller's decision: this class sends each message once.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Attachment,
    Category,
    Content,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    GroupId,
    Header,
    Mail,
    MailSettings,
    ReplyTo,
    SandBoxMode,
    SendGridException,
    Subject,
    To,
)

from relance.errors import (
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
    UnconfirmedChannelError,
)
from relance.outbound import OutboundEmail, SendResult, send_concurrently, tracking_args

PROVIDER = "sendgrid"
MAX_CATEGORIES = 10
# Statuses that say "the account is not set up right", not "this message is wrong".
_ACCOUNT_STATUSES = frozenset({401, 403})


def build_mail(
    message: OutboundEmail, *, sandbox: bool = False, asm_group_id: int | None = None
) -> Mail:
    """The Mail Send request for an outbound e-mail, built with SendGrid's own helpers.

    ``asm_group_id`` attaches SendGrid's unsubscribe group (its own suppression list).
    """
    mail = Mail(
        from_email=From(message.from_email, message.from_name),
        to_emails=To(message.to_email, message.to_name),
        subject=Subject(message.subject),
    )
    if message.text:
        mail.add_content(Content("text/plain", message.text))
    if message.html:
        mail.add_content(Content("text/html", message.html))
    if message.reply_to:
        mail.reply_to = ReplyTo(message.reply_to)
    for name, value in _headers_of(message).items():
        mail.add_header(Header(name, value))
    categories = list(dict.fromkeys(message.categories))
    if len(categories) > MAX_CATEGORIES:
        raise PermanentChannelError(
            f"touchpoint {message.touchpoint_id}: SendGrid takes at most {MAX_CATEGORIES} "
            f"categories, got {len(categories)}"
        )
    for category in categories:
        mail.add_category(Category(category))
    for key, value in tracking_args(message).items():
        mail.add_custom_arg(CustomArg(key, str(value), p=0))
    for attachment in message.attachments:
        mail.add_attachment(
            Attachment(
                FileContent(base64.b64encode(attachment.content).decode("ascii")),
                FileName(attachment.filename),
                FileType(attachment.content_type),
                Disposition(attachment.disposition),
                ContentId(attachment.content_id) if attachment.content_id else None,
            )
        )
    if asm_group_id is not None:
        mail.asm = Asm(GroupId(asm_group_id))
    if sandbox:
        settings = MailSettings()
        settings.sandbox_mode = SandBoxMode(True)
        mail.mail_settings = settings
    return mail


def _headers_of(message: OutboundEmail) -> dict[str, str]:
    headers = {"Message-ID": message.message_id}
    if message.in_reply_to:
        headers["In-Reply-To"] = message.in_reply_to
    if message.references:
        headers["References"] = " ".join(message.references)
    headers.update(message.headers)
    return headers


class SendGridSender:
    """Sends through SendGrid's v3 API; `send_many` keeps up to `max_workers` requests in flight.

    Thread-safe: each thread keeps its own `SendGridAPIClient`, built on its first send
    (the library opens a new connection per request anyway), so no state is shared.
    """

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        timeout: float = 10.0,
        sandbox: bool = False,
        max_workers: int = 8,
        *,
        asm_group_id: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not api_key:
            raise ValueError("a SendGrid API key is required")
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.sandbox = sandbox
        self.max_workers = max_workers
        self._clock = clock
        self.asm_group_id = asm_group_id
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._clients = threading.local()
        # The HTTP client logs whole request bodies (addresses, messages) at DEBUG: never.
        logging.getLogger("python_http_client").setLevel(logging.INFO)

    def __repr__(self) -> str:  # never show the key
        return f"SendGridSender(host={self.host!r}, sandbox={self.sandbox})"

    def send(self, message: OutboundEmail) -> SendResult:
        try:
            body = build_mail(message, sandbox=self.sandbox, asm_group_id=self.asm_group_id).get()
        except (TypeError, ValueError, SendGridException) as error:  # the library's own checks
            raise PermanentChannelError(
                f"touchpoint {message.touchpoint_id}: cannot build the SendGrid request: "
                f"{getattr(error, 'message', '') or error}"
            ) from error
        try:
            response = self._client().send(body)
        except HTTPError as error:
            raise self._error_for(message, error) from None
        except URLError as error:  # refused, or cut while connecting or sending the request
            raise TransientChannelError(
                f"touchpoint {message.touchpoint_id}: SendGrid unreachable: {_reason(error)}"
            ) from error
        except (OSError, http.client.HTTPException) as error:  # sent, then no answer
            raise UnconfirmedChannelError(
                f"touchpoint {message.touchpoint_id}: no answer from SendGrid after the request "
                f"was sent ({_reason(error)}): it may have been accepted"
            ) from error
        return SendResult(
            provider=PROVIDER, provider_message_id=response.headers.get("X-Message-Id")
        )

    def _client(self) -> SendGridAPIClient:
        """This thread's client."""
        client: SendGridAPIClient | None = getattr(self._clients, "client", None)
        if client is None:
            client = SendGridAPIClient(api_key=self._api_key, host=self.host)
            client.client.timeout = self.timeout  # the library has no timeout by default
            self._clients.client = client
        return client

    def send_many(self, messages: Sequence[OutboundEmail]) -> list[SendResult | ChannelError]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="sendgrid")
        return send_concurrently(self.send, messages, self.max_workers, self._pool)

    def _error_for(self, message: OutboundEmail, error: HTTPError) -> ChannelError:
        status = int(error.status_code)
        text = (
            f"touchpoint {message.touchpoint_id}: SendGrid answered "
            f"{describe_errors(status, error.body)}"
        )
        if status == 429 or status >= 500 or status in _ACCOUNT_STATUSES:
            return TransientChannelError(text, retry_after=self._retry_after(error.headers))
        return PermanentChannelError(text)

    def _retry_after(self, headers: Mapping[str, str] | None) -> float | None:
        return retry_after_from(headers, now=self._clock())


def retry_after_from(headers: Mapping[str, str] | None, *, now: float) -> float | None:
    """Seconds to wait, from `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset`
    (Unix time of the reset), measured from `now` (Unix time); None if neither is usable."""
    if headers is None:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(float(retry_after), 0.0)
        except ValueError:
            pass
        try:
            return max(parsedate_to_datetime(retry_after).timestamp() - now, 0.0)
        except (TypeError, ValueError):
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(float(reset) - now, 0.0)
        except ValueError:
            pass
    return None


_FIELD = re.compile(r"[A-Za-z0-9_.\[\]-]{1,60}")


def describe_errors(status: int, body: bytes | str | None) -> str:
    """``400 Bad Request (fields: from.email)``: the status, its standard reason and the
    request fields SendGrid names. Never SendGrid's messages nor the body: they may quote
    an address, a name or a subject, and this text is stored with the touch."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    raw = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body or ""
    try:
        errors: Any = json.loads(raw)["errors"]
        named = [str(error.get("field") or "") for error in errors if isinstance(error, dict)]
    except (ValueError, KeyError, TypeError):
        named = []
    fields = list(dict.fromkeys(name for name in named if _FIELD.fullmatch(name)))[:5]
    return f"{status} {phrase}" + (f" (fields: {', '.join(fields)})" if fields else "")


def _reason(error: BaseException) -> str:
    if isinstance(error, URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
