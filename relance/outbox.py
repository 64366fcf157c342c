"""The local e-mail channel: one RFC 5322 `.eml` file per touchpoint in a directory.

Used for demos, dry runs and tests, and by anyone who wants to read what would be sent.
A file is named `<touchpoint_id>.eml` and written atomically (temporary file, then
`os.replace`): a crash never leaves half a file, and sending the same touchpoint again
replaces its file instead of adding a second one.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime
from pathlib import Path

from relance.errors import ChannelError, PermanentChannelError, TransientChannelError
from relance.outbound import OutboundEmail, SendResult, send_concurrently

PROVIDER = "outbox"

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def compose_message(message: OutboundEmail, sent_at: datetime) -> EmailMessage:
    """The MIME message for an outbound e-mail: text and HTML alternatives, then attachments."""
    mail = EmailMessage()
    mail["Message-ID"] = message.message_id
    mail["Date"] = format_datetime(sent_at)
    mail["From"] = Address(display_name=message.from_name or "", addr_spec=message.from_email)
    mail["To"] = Address(display_name=message.to_name or "", addr_spec=message.to_email)
    if message.reply_to:
        mail["Reply-To"] = Address(addr_spec=message.reply_to)
    mail["Subject"] = message.subject
    if message.in_reply_to:
        mail["In-Reply-To"] = message.in_reply_to
    if message.references:
        mail["References"] = " ".join(message.references)
    mail["X-Relance-Touchpoint"] = message.touchpoint_id
    mail["X-Relance-Enrollment"] = message.enrollment_id
    mail["X-Relance-Sequence"] = message.sequence_id
    mail["X-Relance-Step"] = message.step_id
    if message.categories:
        mail["X-Relance-Categories"] = ", ".join(message.categories)
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        content_type = Message()
        content_type["Content-Type"] = attachment.content_type
        params = dict(content_type.get_params(failobj=[])[1:])
        mail.add_attachment(
            attachment.content,
            maintype=content_type.get_content_maintype(),
            subtype=content_type.get_content_subtype(),
            filename=attachment.filename,
            disposition=attachment.disposition,
            cid=attachment.content_id,
            params=params,
        )
    return mail


class OutboxSender:
    """Writes each message to `<directory>/<touchpoint_id>.eml` (provider "outbox")."""

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], datetime] = _utc_now,
        fsync: bool = True,
        max_workers: int = 1,
    ) -> None:
        self.directory = directory
        self._clock = clock
        self._fsync = fsync
        self._max_workers = max_workers

    def path_for(self, touchpoint_id: str) -> Path:
        """Where the file of a touchpoint is written."""
        if not _SAFE_NAME.fullmatch(touchpoint_id):
            raise PermanentChannelError(
                f"touchpoint id {touchpoint_id!r} cannot be a file name in the outbox"
            )
        return self.directory / f"{touchpoint_id}.eml"

    def send(self, message: OutboundEmail) -> SendResult:
        path = self.path_for(message.touchpoint_id)
        try:
            mail = compose_message(message, message.date or self._clock())
            data = mail.as_bytes()
        except (ValueError, TypeError, HeaderParseError) as error:
            raise PermanentChannelError(
                f"touchpoint {message.touchpoint_id}: cannot compose the e-mail: {error}"
            ) from error
        written = [name.lower() for name in BytesHeaderParser(policy=compat32).parsebytes(data)]
        if written != [name.lower() for name in mail]:
            raise PermanentChannelError(
                f"touchpoint {message.touchpoint_id}: the written headers differ from the "
                "ones set (a header value held a line break): not written"
            )
        try:
            self._write_atomically(path, data)
        except OSError as error:
            raise TransientChannelError(f"cannot write {path}: {error}") from error
        return SendResult(provider=PROVIDER, provider_message_id=message.message_id)

    def send_many(self, messages: Sequence[OutboundEmail]) -> list[SendResult | ChannelError]:
        return send_concurrently(self.send, messages, self._max_workers)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                if self._fsync:
                    file.flush()
                    os.fsync(file.fileno())
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
