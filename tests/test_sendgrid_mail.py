"""The SendGrid channel, through the official library, against a local fake SendGrid that
validates every request against the official Mail Send schema; and the fake itself."""

from __future__ import annotations

import base64
import json
import socket
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest

from integrations.sendgrid_mail import (
    SendGridSender,
    build_mail,
    describe_errors,
    retry_after_from,
)
from relance.errors import (
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
    UnconfirmedChannelError,
)
from relance.outbound import Attachment, OutboundEmail, SendResult, message_id_for
from tests.fakes.sendgrid_server import (
    SCHEMA_ENV,
    FakeSendGrid,
    SchemaNotFoundError,
    mail_send_validator,
    schema_path,
)

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
        "subject": "Une question, Léa",
        "text": "Bonjour Léa,\n",
        "html": "<p>Bonjour Léa,</p>",
        "message_id": message_id_for(touchpoint_id, "seller.example"),
    }
    fields.update(changes)
    return OutboundEmail(**fields)


@pytest.fixture
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def sender(sendgrid: FakeSendGrid) -> SendGridSender:
    return SendGridSender(api_key=sendgrid.api_key, host=sendgrid.url, timeout=5.0)


def post(url: str, body: Any, *, api_key: str = "SG.fake-key", path: str = "/v3/mail/send") -> Any:
    """POST a raw body to the fake: (status, decoded JSON answer or None)."""
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, None
    except HTTPError as error:
        return error.code, json.loads(error.read())


VALID_BODY = {
    "personalizations": [{"to": [{"email": "lea@prospect.example"}]}],
    "from": {"email": "anne@seller.example"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hello"}],
}


# The sender


def test_an_accepted_email_returns_sendgrid_s_message_id(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    result = sender.send(email_for())

    assert result == SendResult(provider="sendgrid", provider_message_id="fake-00000001")
    assert sendgrid.rejected == []
    assert len(sendgrid.requests) == 1


def test_the_request_carries_every_part_of_the_email(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    email = email_for(
        reply_to="replies@seller.example",
        in_reply_to="<tp-tp0@seller.example>",
        references=["<tp-first@seller.example>", "<tp-tp0@seller.example>"],
        headers={"List-Unsubscribe": "<mailto:unsubscribe@seller.example>"},
        attachments=[
            Attachment(
                filename="invite.ics", content_type="text/calendar; method=REQUEST", content=INVITE
            )
        ],
    )
    sender.send(email)
    body = sendgrid.requests[0]

    assert body["from"] == {"email": "anne@seller.example", "name": "Anne Dupont"}
    assert body["personalizations"][0]["to"] == [
        {"email": "lea.martin@prospect.example", "name": "Léa Martin"}
    ]
    assert body["reply_to"] == {"email": "replies@seller.example"}
    assert body["subject"] == "Une question, Léa"
    assert body["content"] == [
        {"type": "text/plain", "value": "Bonjour Léa,\n"},
        {"type": "text/html", "value": "<p>Bonjour Léa,</p>"},
    ]
    assert body["headers"] == {
        "Message-ID": "<tp1@seller.example>",
        "In-Reply-To": "<tp-tp0@seller.example>",
        "References": "<tp-first@seller.example> <tp-tp0@seller.example>",
        "List-Unsubscribe": "<mailto:unsubscribe@seller.example>",
    }
    [attachment] = body["attachments"]
    assert attachment["filename"] == "invite.ics"
    assert attachment["type"] == "text/calendar; method=REQUEST"
    assert attachment["disposition"] == "attachment"
    assert base64.b64decode(attachment["content"]) == INVITE
    assert "mail_settings" not in body


def test_categories_and_ids_travel_for_the_event_webhook(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    sender.send(email_for(categories=["relance", "saas-trial", "relance"], custom_args={"ab": "b"}))
    body = sendgrid.requests[0]

    assert sorted(body["categories"]) == ["relance", "saas-trial"]
    assert body["personalizations"][0]["custom_args"] == {
        "touchpoint_id": "tp1",
        "enrollment_id": "en1",
        "sequence_id": "saas-trial",
        "step_id": "intro",
        "ab": "b",
    }
    assert "custom_args" not in body  # the schema allows only a string at the top level


def test_sandbox_mode_is_asked_for_when_configured(sendgrid: FakeSendGrid) -> None:
    sender = SendGridSender(api_key=sendgrid.api_key, host=sendgrid.url, sandbox=True)
    sender.send(email_for())

    assert sendgrid.requests[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}


def test_a_text_only_email_sends_one_content_part(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    sender.send(email_for(html=None))

    assert sendgrid.requests[0]["content"] == [{"type": "text/plain", "value": "Bonjour Léa,\n"}]


def test_a_400_is_permanent_and_says_what_sendgrid_said(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    sendgrid.fail_next(
        1, 400, message="lea.martin@prospect.example: Léa Martin is not valid", field="from.email"
    )

    with pytest.raises(PermanentChannelError) as raised:
        sender.send(email_for())

    assert str(raised.value) == (
        "touchpoint tp1: SendGrid answered 400 Bad Request (fields: from.email)"
    )  # the status and a short reason: SendGrid's message may quote personal data


def test_a_body_the_schema_refuses_is_permanent(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    with pytest.raises(
        PermanentChannelError, match=r"answered 400 Bad Request \(fields: subject\)$"
    ):
        sender.send(email_for(subject=""))

    assert len(sendgrid.rejected) == 1


def test_a_429_is_transient_with_the_wait_sendgrid_asked_for(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    sendgrid.fail_next(1, 429, message="too many requests", retry_after=7)

    with pytest.raises(TransientChannelError, match=r"answered 429 Too Many Requests$") as raised:
        sender.send(email_for())

    assert raised.value.retry_after == 7.0
    assert sender.send(email_for()).provider_message_id == "fake-00000001"


def test_a_500_is_transient(sender: SendGridSender, sendgrid: FakeSendGrid) -> None:
    sendgrid.fail_next(1, 500, message="internal error")

    with pytest.raises(
        TransientChannelError, match=r"answered 500 Internal Server Error$"
    ) as raised:
        sender.send(email_for())

    assert raised.value.retry_after is None


def test_a_refused_api_key_is_transient_so_that_no_message_is_lost(
    sendgrid: FakeSendGrid,
) -> None:
    sender = SendGridSender(api_key="SG.revoked", host=sendgrid.url)

    with pytest.raises(TransientChannelError, match="answered 401 Unauthorized"):
        sender.send(email_for())


def test_a_closed_port_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SendGridSender(api_key="SG.key", host=f"http://127.0.0.1:{port}", timeout=2.0)

    with pytest.raises(TransientChannelError, match="tp1: SendGrid unreachable"):
        sender.send(email_for())


def test_an_answer_slower_than_the_timeout_is_unconfirmed_not_transient(
    sendgrid: FakeSendGrid,
) -> None:
    """The request went out: SendGrid may have accepted it, so it must not be resent."""
    sendgrid.delay = 1.0
    sender = SendGridSender(api_key=sendgrid.api_key, host=sendgrid.url, timeout=0.2)

    with pytest.raises(UnconfirmedChannelError, match=r"tp1: no answer from SendGrid .*timed out"):
        sender.send(email_for())
    assert len(sendgrid.requests) == 1, "the fake did accept it"


def test_an_email_with_too_many_categories_is_refused_before_sending(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    with pytest.raises(PermanentChannelError, match="at most 10 categories, got 11"):
        sender.send(email_for(categories=[f"c{index}" for index in range(11)]))

    assert sendgrid.requests == sendgrid.rejected == []


def test_send_many_runs_concurrently_and_keeps_the_order(sendgrid: FakeSendGrid) -> None:
    sendgrid.delay = 0.05
    sendgrid.fail_next(3, 500)
    sender = SendGridSender(api_key=sendgrid.api_key, host=sendgrid.url, max_workers=8)
    emails = [email_for(f"tp{index}") for index in range(24)]

    outcomes = sender.send_many(emails)

    assert sendgrid.max_in_flight > 1
    assert sum(isinstance(outcome, TransientChannelError) for outcome in outcomes) == 3
    sent_to = {
        message_id: body["personalizations"][0]["custom_args"]["touchpoint_id"]
        for message_id, body in zip(sendgrid.message_ids, sendgrid.requests, strict=True)
    }
    for email, outcome in zip(emails, outcomes, strict=True):
        assert isinstance(outcome, SendResult | ChannelError)
        if isinstance(outcome, SendResult):
            assert outcome.provider_message_id is not None
            assert sent_to[outcome.provider_message_id] == email.touchpoint_id


def test_the_api_key_never_shows_in_the_sender_s_repr() -> None:
    assert "SG.secret" not in repr(SendGridSender(api_key="SG.secret"))


def test_retry_after_reads_seconds_dates_and_rate_limit_resets() -> None:
    now = datetime(2025, 3, 4, 9, 30, tzinfo=UTC).timestamp()
    in_a_minute = format_datetime(datetime(2025, 3, 4, 9, 31, tzinfo=UTC), usegmt=True)

    assert retry_after_from({"Retry-After": "12"}, now=now) == 12.0
    assert retry_after_from({"Retry-After": in_a_minute}, now=now) == 60.0
    assert retry_after_from({"X-RateLimit-Reset": str(int(now) + 30)}, now=now) == 30.0
    assert retry_after_from({"Retry-After": "soon"}, now=now) is None
    assert retry_after_from({}, now=now) is None
    assert retry_after_from(None, now=now) is None


def test_describe_errors_keeps_the_status_and_field_names_only() -> None:
    body = {
        "errors": [
            {"message": "ana@client.example bounced", "field": "personalizations.0.to.0.email"},
            {"message": "Ana Lopez", "field": None},
            {"message": "x", "field": "ana@client.example"},  # not a field name: dropped
        ]
    }

    assert describe_errors(400, json.dumps(body).encode()) == (
        "400 Bad Request (fields: personalizations.0.to.0.email)"
    )
    assert describe_errors(502, b"<html>ana@client.example</html>") == "502 Bad Gateway"
    assert describe_errors(503, b"") == "503 Service Unavailable"
    assert describe_errors(599, None) == "599 unexpected status"


def test_every_built_request_is_valid_against_the_official_schema() -> None:
    validator = mail_send_validator(schema_path())
    body = build_mail(
        email_for(
            attachments=[Attachment(filename="a.txt", content_type="text/plain", content=b"x")]
        ),
        sandbox=True,
    ).get()

    assert list(validator.iter_errors(body)) == []


# The fake: validation must really be on, or the tests above prove nothing


def test_the_fake_accepts_a_valid_body(sendgrid: FakeSendGrid) -> None:
    assert post(sendgrid.url, VALID_BODY) == (202, None)
    assert sendgrid.requests == [VALID_BODY]


def test_the_fake_refuses_a_body_without_from(sendgrid: FakeSendGrid) -> None:
    body = {key: value for key, value in VALID_BODY.items() if key != "from"}

    status, answer = post(sendgrid.url, body)

    assert status == 400
    assert answer == {
        "errors": [{"message": "'from' is a required property", "field": None, "help": None}]
    }
    assert sendgrid.rejected == [(body, "'from' is a required property")]
    assert sendgrid.requests == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"content": [{"type": "text/plain", "value": 42}]}, "content.0.value"),
        ({"content": "Hello"}, "content"),
        ({"from": {"email": "not an address"}}, "from.email"),
        ({"custom_args": {"touchpoint_id": "tp1"}}, "custom_args"),
        ({"categories": ["a", "a"]}, "categories"),
        (
            {"attachments": [{"content": "eA==", "filename": "a", "disposition": "x"}]},
            "attachments.0.disposition",
        ),
        ({"headers": {"Subject": "override"}}, "headers.Subject"),
        (
            {
                "content": [
                    {"type": "text/html", "value": "<p>"},
                    {"type": "text/plain", "value": "p"},
                ]
            },
            "content",
        ),
        ({"personalizations": [{"to": []}]}, "personalizations.0.to"),
    ],
)
def test_the_fake_refuses_what_sendgrid_refuses(
    sendgrid: FakeSendGrid, change: dict[str, Any], field: str
) -> None:
    status, answer = post(sendgrid.url, {**VALID_BODY, **change})

    assert status == 400
    assert field in [error["field"] for error in answer["errors"]]
    assert len(sendgrid.rejected) == 1


def test_the_fake_wants_the_bearer_api_key(sendgrid: FakeSendGrid) -> None:
    status, answer = post(sendgrid.url, VALID_BODY, api_key="SG.other")

    assert status == 401
    assert answer["errors"][0]["message"].startswith("The provided authorization grant")


def test_the_fake_serves_only_mail_send(sendgrid: FakeSendGrid) -> None:
    assert post(sendgrid.url, VALID_BODY, path="/v3/marketing/contacts")[0] == 404


def test_the_fake_will_not_run_without_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SCHEMA_ENV, str(tmp_path / "missing.json"))

    with pytest.raises(SchemaNotFoundError, match=r"missing\.json"):
        FakeSendGrid()


def test_the_fake_wants_a_subject_somewhere(sendgrid: FakeSendGrid) -> None:
    without = {key: value for key, value in VALID_BODY.items() if key != "subject"}
    with_one_per_recipient = {
        **without,
        "personalizations": [{"to": [{"email": "lea@prospect.example"}], "subject": "Hi"}],
    }

    assert post(sendgrid.url, without)[1]["errors"][0]["field"] == "subject"
    assert post(sendgrid.url, with_one_per_recipient) == (202, None)


def test_a_body_that_leaks_an_api_key_is_refused_by_the_library_before_sending(
    sender: SendGridSender, sendgrid: FakeSendGrid
) -> None:
    leaked = "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

    with pytest.raises(PermanentChannelError, match="API Key detected"):
        sender.send(email_for(text=f"{leaked} is our key"))

    assert sendgrid.requests == []
