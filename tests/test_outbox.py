"""The outbox channel writes one parseable .eml per touchpoint, atomically and idempotently;
and the outbound types keep their promises."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from relance.errors import PermanentChannelError, TransientChannelError
from relance.outbound import (
    Attachment,
    OutboundEmail,
    SendResult,
    backoff_delay,
    message_id_for,
    send_concurrently,
    tracking_args,
)
from relance.outbox import OutboxSender

NOW = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
INVITE = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"


def email_for(touchpoint_id: str = "tp1", **changes: Any) -> OutboundEmail:
    fields: dict[str, Any] = {
        "touchpoint_id": touchpoint_id,
        "enrollment_id": "en1",
        "sequence_id": "saas-trial",
        "step_id": "intro",
        "to_email": "lea.martin@prospect.example",
        "to_name": "Léa Martin",
        "from_email": "anne@seller.example",
        "from_name": "Anne Dupont",
        "reply_to": "replies@seller.example",
        "subject": "Une question, Léa",
        "text": "Bonjour Léa,\n\nOn en parle mardi ?\n",
        "html": "<p>Bonjour Léa,</p><p>On en parle mardi ?</p>",
        "message_id": message_id_for(touchpoint_id, "seller.example"),
        "in_reply_to": "<tp-tp0@seller.example>",
        "references": ["<tp-first@seller.example>", "<tp-tp0@seller.example>"],
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@seller.example>"},
        "categories": ["relance", "saas-trial"],
    }
    fields.update(changes)
    return OutboundEmail(**fields)


def read_eml(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
def outbox(tmp_path: Path) -> OutboxSender:
    return OutboxSender(tmp_path / "outbox", clock=lambda: NOW)


def test_an_email_becomes_one_eml_file_named_after_its_touchpoint(outbox: OutboxSender) -> None:
    result = outbox.send(email_for())

    assert result == SendResult(provider="outbox", provider_message_id="<tp1@seller.example>")
    assert sorted(path.name for path in outbox.directory.iterdir()) == ["tp1.eml"]


def test_the_eml_file_parses_back_with_every_header(outbox: OutboxSender) -> None:
    outbox.send(email_for())
    message = read_eml(outbox.directory / "tp1.eml")

    assert message["Message-ID"] == "<tp1@seller.example>"
    assert message["In-Reply-To"] == "<tp-tp0@seller.example>"
    assert message["References"] == "<tp-first@seller.example> <tp-tp0@seller.example>"
    assert message["From"] == "Anne Dupont <anne@seller.example>"
    assert message["To"] == "Léa Martin <lea.martin@prospect.example>"
    assert message["Reply-To"] == "replies@seller.example"
    assert message["Subject"] == "Une question, Léa"
    assert message["Date"] == "Tue, 04 Mar 2025 09:30:00 +0000"
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@seller.example>"
    assert message["X-Relance-Touchpoint"] == "tp1"
    assert message["X-Relance-Enrollment"] == "en1"
    assert message["X-Relance-Sequence"] == "saas-trial"
    assert message["X-Relance-Step"] == "intro"
    assert message["X-Relance-Categories"] == "relance, saas-trial"


def test_text_and_html_are_alternatives(outbox: OutboxSender) -> None:
    outbox.send(email_for())
    message = read_eml(outbox.directory / "tp1.eml")

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Bonjour Léa,\n\nOn en parle mardi ?\n"
    assert parts[1].get_content() == "<p>Bonjour Léa,</p><p>On en parle mardi ?</p>\n"


def test_a_text_only_email_is_a_single_part(outbox: OutboxSender) -> None:
    outbox.send(email_for(html=None))
    message = read_eml(outbox.directory / "tp1.eml")

    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Bonjour Léa,\n\nOn en parle mardi ?\n"


def test_an_invite_travels_as_a_text_calendar_attachment(outbox: OutboxSender) -> None:
    invite = Attachment(
        filename="invite.ics", content_type="text/calendar; method=REQUEST", content=INVITE
    )
    outbox.send(email_for(attachments=[invite]))
    message = read_eml(outbox.directory / "tp1.eml")

    assert message.get_content_type() == "multipart/mixed"
    body, attachment = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_payload(decode=True) == INVITE


def test_sending_a_touchpoint_again_replaces_its_file(outbox: OutboxSender) -> None:
    outbox.send(email_for(subject="First"))
    outbox.send(email_for(subject="Second"))

    assert sorted(path.name for path in outbox.directory.iterdir()) == ["tp1.eml"]
    assert read_eml(outbox.directory / "tp1.eml")["Subject"] == "Second"


def test_a_failed_write_leaves_the_previous_file_whole_and_no_debris(
    outbox: OutboxSender, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox.send(email_for(subject="First"))

    def full_disk(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(TransientChannelError, match="No space left on device"):
        outbox.send(email_for(subject="Second"))

    assert sorted(path.name for path in outbox.directory.iterdir()) == ["tp1.eml"]
    assert read_eml(outbox.directory / "tp1.eml")["Subject"] == "First"


@pytest.mark.parametrize("touchpoint_id", ["../escape", ".hidden", "a/b", ""])
def test_a_touchpoint_id_that_is_not_a_plain_file_name_is_refused(
    outbox: OutboxSender, touchpoint_id: str
) -> None:
    with pytest.raises(PermanentChannelError, match="cannot be a file name"):
        outbox.send(email_for(touchpoint_id))


def test_an_address_that_is_not_one_is_a_permanent_error(outbox: OutboxSender) -> None:
    with pytest.raises(PermanentChannelError, match="tp1: cannot compose"):
        outbox.send(email_for(to_email="lea martin@@prospect"))


def test_send_many_returns_one_outcome_per_message_in_order(tmp_path: Path) -> None:
    outbox = OutboxSender(tmp_path, clock=lambda: NOW, fsync=False, max_workers=4)
    emails = [email_for(f"tp{index}") for index in range(12)] + [email_for("../bad")]

    outcomes = outbox.send_many(emails)

    assert [
        outcome.provider_message_id for outcome in outcomes if isinstance(outcome, SendResult)
    ] == [f"<tp{index}@seller.example>" for index in range(12)]
    assert isinstance(outcomes[-1], PermanentChannelError)
    assert len(list(tmp_path.glob("*.eml"))) == 12


def test_headers_may_not_repeat_what_the_fields_set() -> None:
    with pytest.raises(ValueError, match="Message-ID, Reply-To are set from"):
        email_for(headers={"Reply-To": "x@example.com", "Message-ID": "<x@example.com>"})


def test_lists_are_kept_as_tuples_and_references_may_be_one_string() -> None:
    email = email_for(references="<a@x> <b@x>", categories=["one"])

    assert email.references == ("<a@x>", "<b@x>")
    assert email.categories == ("one",)


def test_tracking_args_carry_the_ids_and_the_message_s_own() -> None:
    assert tracking_args(email_for(custom_args={"campaign": "q1"})) == {
        "touchpoint_id": "tp1",
        "enrollment_id": "en1",
        "sequence_id": "saas-trial",
        "step_id": "intro",
        "campaign": "q1",
    }


def test_backoff_doubles_up_to_a_cap_unless_the_provider_said_when() -> None:
    assert [backoff_delay(attempt) for attempt in range(1, 9)] == [
        30.0,
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        3600.0,
    ]
    assert backoff_delay(5, retry_after=12) == 12.0
    assert backoff_delay(1, retry_after=-3) == 0.0
    with pytest.raises(ValueError, match="attempt counts from 1"):
        backoff_delay(0)


def test_send_concurrently_turns_a_defect_into_an_outcome_not_a_crash() -> None:
    def send(email: OutboundEmail) -> SendResult:
        if email.touchpoint_id == "tp2":
            raise RuntimeError("template bug")
        return SendResult(provider="test", provider_message_id=email.touchpoint_id)

    outcomes = send_concurrently(send, [email_for(f"tp{index}") for index in range(4)], 3)

    assert [getattr(outcome, "provider_message_id", None) for outcome in outcomes] == [
        "tp0",
        "tp1",
        None,
        "tp3",
    ]
    assert isinstance(outcomes[2], PermanentChannelError)
    assert str(outcomes[2]) == "unexpected RuntimeError: template bug"
