"""SendGrid's signed Event Webhook: signatures (keys made here, signed as SendGrid signs),
parsing, idempotent recording, and the bounce that suppresses an address everywhere."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from store_support import T0, people, step, write_project

from integrations.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventSignatureError,
    parse_events,
    read_mail_events,
    translate,
    verify_signature,
)
from relance.dispatcher import Dispatcher
from relance.engagement import MailEvent, MailEventKind, apply_mail_events, settle_unknown
from relance.engine import Signal
from relance.enrollments import enroll
from relance.errors import InputError
from relance.prospect import Prospect
from relance.rendering import template_environment
from relance.runtime import email_sender
from relance.settings import Settings
from relance.store import Store
from relance.tables import enrollments, events, suppressions, touchpoints
from relance.web.app import create_app
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.web_support import MONDAY, ROOT, FixedClock, LiveServer, WebProject

PATH = "/webhooks/sendgrid/events"
ADA = "ada@example.com"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_der_b64(private: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings show it: base64 of the DER SubjectPublicKeyInfo."""
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def public_pem(private: ec.EllipticCurvePrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """As SendGrid signs: ECDSA P-256 / SHA-256 over timestamp + body, DER, base64."""
    der = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def signed(private: ec.EllipticCurvePrivateKey, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    return {
        SIGNATURE_HEADER: sign(private, body, timestamp),
        TIMESTAMP_HEADER: timestamp,
        "Content-Type": "application/json",
    }


KEY = new_key()
OTHER_KEY = new_key()
_ids = count(1)


def sg_event(kind: str, email: str = ADA, **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it; custom_args arrive as top-level string values."""
    return {
        "email": email,
        "timestamp": int(MONDAY.timestamp()),
        "event": kind,
        "sg_event_id": f"ev-{next(_ids)}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def body_of(*items: dict[str, Any]) -> bytes:
    return json.dumps(list(items)).encode()


# --- signature ------------------------------------------------------------------------


@pytest.mark.parametrize("key_form", [public_der_b64, public_pem])
def test_a_signature_made_with_the_key_is_accepted(key_form: Any) -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(KEY, body, MONDAY)
    verify_signature(
        key_form(KEY), body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], now=MONDAY
    )


def refusal(
    body: bytes, signature: str | None, timestamp: str | None, key: str | None = None
) -> str:
    with pytest.raises(EventSignatureError) as caught:
        verify_signature(key or public_der_b64(KEY), body, signature, timestamp, now=MONDAY)
    return str(caught.value)


def test_a_tampered_body_is_refused() -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(KEY, body, MONDAY)
    tampered = body.replace(b"delivered", b"bounce")
    message = refusal(tampered, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    assert message == "the signature does not match the body"


def test_a_signature_by_another_key_is_refused() -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(OTHER_KEY, body, MONDAY)
    assert "does not match" in refusal(body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(KEY, body, MONDAY)
    later = str(int(headers[TIMESTAMP_HEADER]) + 1)
    assert "does not match" in refusal(body, headers[SIGNATURE_HEADER], later)


@pytest.mark.parametrize(
    ("signature", "timestamp"), [(None, "1772438400"), ("c2ln", None), ("", ""), (None, None)]
)
def test_a_missing_header_is_refused(signature: str | None, timestamp: str | None) -> None:
    message = refusal(b"[]", signature, timestamp)
    assert message == f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header"


@pytest.mark.parametrize(
    "signature",
    [
        "not base64 at all!",
        "@@@@",
        "é",
        base64.b64encode(b"garbage that is no DER signature").decode(),
        base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(),  # r = s = 1
        "AAAA",
    ],
)
def test_a_malformed_signature_is_a_refusal_not_a_crash(signature: str) -> None:
    timestamp = str(int(MONDAY.timestamp()))
    refusal(b"[]", signature, timestamp)


@pytest.mark.parametrize("timestamp", ["soon", "-1", "1.5", "１２３", "9" * 20])
def test_a_timestamp_that_is_no_unix_time_is_refused(timestamp: str) -> None:
    assert "Unix time" in refusal(b"[]", "c2ln", timestamp)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=-9), True),
        (timedelta(minutes=9), True),
        (timedelta(minutes=-11), False),
        (timedelta(hours=-25), False),
        (timedelta(minutes=11), False),
    ],
)
def test_a_stale_or_future_timestamp_is_refused(offset: timedelta, accepted: bool) -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(KEY, body, MONDAY + offset)
    arguments = (body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
    if accepted:
        verify_signature(public_der_b64(KEY), *arguments, now=MONDAY)
    else:
        assert "away from now (more than 600 s)" in refusal(*arguments)


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        base64.b64encode(b"junk").decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        public_der_b64(ec.generate_private_key(ec.SECP384R1())),
        base64.b64encode(
            rsa.generate_private_key(public_exponent=65537, key_size=1024)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode(),
    ],
)
def test_a_key_that_is_no_p256_public_key_refuses_everything(key: str) -> None:
    body = body_of(sg_event("delivered"))
    headers = signed(KEY, body, MONDAY)
    message = refusal(body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], key=key)
    assert "RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY" in message


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "kind", "signal"),
    [
        ({"event": "processed"}, MailEventKind.ACCEPTED, None),
        ({"event": "deferred", "response": "try later"}, MailEventKind.DEFERRED, None),
        ({"event": "delivered"}, MailEventKind.DELIVERED, None),
        ({"event": "open"}, MailEventKind.OPENED, None),
        ({"event": "click", "url": "https://x.test"}, MailEventKind.CLICKED, None),
        ({"event": "bounce", "type": "bounce"}, MailEventKind.BOUNCED, Signal.BOUNCED),
        ({"event": "bounce"}, MailEventKind.BOUNCED, Signal.BOUNCED),
        ({"event": "bounce", "type": "blocked"}, MailEventKind.BLOCKED, None),
        ({"event": "dropped", "reason": "Bounced Address"}, MailEventKind.DROPPED, Signal.BOUNCED),
        (
            {"event": "dropped", "reason": "Unsubscribed Address"},
            MailEventKind.DROPPED,
            Signal.UNSUBSCRIBED,
        ),
        (
            {"event": "dropped", "reason": "Spam Reporting Address"},
            MailEventKind.DROPPED,
            Signal.SPAM_REPORT,
        ),
        ({"event": "spamreport"}, MailEventKind.SPAM_REPORT, Signal.SPAM_REPORT),
        ({"event": "unsubscribe"}, MailEventKind.UNSUBSCRIBED, Signal.UNSUBSCRIBED),
        ({"event": "group_unsubscribe"}, MailEventKind.UNSUBSCRIBED, Signal.UNSUBSCRIBED),
    ],
)
def test_events_are_translated(
    fields: dict[str, Any], kind: MailEventKind, signal: Signal | None
) -> None:
    (parsed,) = parse_events(body_of({**sg_event("x"), **fields})).events
    mail_event = translate(parsed)
    assert mail_event is not None
    assert (mail_event.kind, mail_event.signal) == (kind, signal)


def test_the_ids_relance_sent_come_back_as_top_level_custom_args() -> None:
    item = sg_event(
        "delivered",
        email="Ada@Example.com",
        touchpoint_id="42",
        enrollment_id="7",
        sequence_id="outbound-2w",
        step_id="email-benchmark",
    )
    (parsed,) = parse_events(body_of(item)).events
    assert (parsed.touchpoint_id, parsed.enrollment_id) == (42, 7)
    assert (parsed.sequence_id, parsed.step_id) == ("outbound-2w", "email-benchmark")
    assert parsed.email == ADA
    assert parsed.timestamp == MONDAY
    assert parsed.external_id == f"sendgrid:{item['sg_event_id']}"


def test_unknown_and_malformed_items_are_ignored_not_refused() -> None:
    body = body_of(
        sg_event("delivered"), sg_event("group_resubscribe"), sg_event("brand_new_event")
    )
    body = body[:-1] + b', 3, "x", null, []]'
    kept, ignored = read_mail_events(body)
    assert [e.kind for e in kept] == [MailEventKind.DELIVERED]
    assert ignored == 6


@pytest.mark.parametrize(
    "body", [b"", b"{", b'{"event": "delivered"}', b"\xff\xfe\x00", b"[" * 5000]
)
def test_a_body_that_is_no_json_array_is_an_input_error(body: bytes) -> None:
    with pytest.raises(InputError):
        parse_events(body)


def test_addresses_in_bounce_reasons_are_masked() -> None:
    reason = "550 5.1.1 <ada@example.com>: Recipient address rejected"
    (parsed,) = parse_events(body_of(sg_event("bounce", reason=reason))).events
    assert parsed.reason == "550 5.1.1 <<address>>: Recipient address rejected"


def test_a_group_unsubscribe_from_another_group_is_not_about_relance() -> None:
    (parsed,) = parse_events(body_of(sg_event("group_unsubscribe", asm_group_id=99))).events
    assert translate(parsed, asm_group_id=12) is None
    assert translate(parsed, asm_group_id=99) is not None
    assert translate(parsed) is not None


def test_an_event_without_id_is_keyed_by_its_content() -> None:
    item = sg_event("delivered")
    del item["sg_event_id"]
    first = translate(parse_events(body_of(item)).events[0])
    again = translate(parse_events(json.dumps([item], indent=2).encode()).events[0])
    assert first is not None and again is not None
    assert first.external_id == again.external_id
    assert first.external_id.startswith("sendgrid:sha256:")


# --- the endpoint, in process -----------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=ROOT, data_dir=tmp_path, sendgrid_webhook_public_key=public_der_b64(KEY)
    )
    app = create_app(settings, store=Store("sqlite://"), clock=FixedClock())
    with TestClient(app) as test_client:
        yield test_client


def stored(app_client: TestClient) -> tuple[int, int]:
    store: Store = app_client.app.state.store  # type: ignore[attr-defined]
    with store.reading() as connection:
        rows = connection.execute(select(func.count()).select_from(events)).scalar_one()
        listed = connection.execute(select(func.count()).select_from(suppressions)).scalar_one()
    return rows, listed


def forged_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    body = body_of(sg_event("bounce", email="forged@example.com"))
    good = signed(KEY, body, MONDAY)
    return [
        ("tampered body", body.replace(b"forged", b"forget"), good),
        ("wrong key", body, signed(OTHER_KEY, body, MONDAY)),
        ("no signature", body, {TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]}),
        ("no timestamp", body, {SIGNATURE_HEADER: good[SIGNATURE_HEADER]}),
        ("no headers", body, {}),
        ("malformed", body, {**good, SIGNATURE_HEADER: "%%%not-base64%%%"}),
        ("stale", body, signed(KEY, body, MONDAY - timedelta(hours=1))),
    ]


@pytest.mark.parametrize(
    ("body", "headers"),
    [(b, h) for _, b, h in forged_requests()],
    ids=[name for name, _, _ in forged_requests()],
)
def test_forged_requests_get_403_and_store_nothing(
    client: TestClient, body: bytes, headers: dict[str, str]
) -> None:
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 403
    assert "error" in response.json()
    assert stored(client) == (0, 0)


def test_without_a_configured_key_every_request_is_refused(tmp_path: Path) -> None:
    app = create_app(Settings(home=ROOT, data_dir=tmp_path), store=Store("sqlite://"))
    body = body_of(sg_event("bounce"))
    with TestClient(app) as unkeyed:
        response = unkeyed.post(PATH, content=body, headers=signed(KEY, body, MONDAY))
        assert response.status_code == 403
        assert response.json() == {
            "error": "signed events are required: set RELANCE_SENDGRID_WEBHOOK_PUBLIC_KEY"
        }
        assert stored(unkeyed) == (0, 0)


def test_a_signed_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    body = b"events, but not in JSON"
    response = client.post(PATH, content=body, headers=signed(KEY, body, MONDAY))
    assert response.status_code == 400
    assert response.json() == {
        "error": "the body is not JSON: expected an array of SendGrid events"
    }


def test_an_address_no_enrollment_knows_is_suppressed(client: TestClient) -> None:
    body = body_of(sg_event("bounce", email="Stranger@Example.org", reason="550 unknown user"))
    response = client.post(PATH, content=body, headers=signed(KEY, body, MONDAY))
    assert response.json() == {"accepted": 1, "duplicates": 0, "ignored": 0}
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    with store.reading() as connection:
        listed = connection.execute(select(suppressions.c.email, suppressions.c.reason)).all()
    assert [tuple(row) for row in listed] == [("stranger@example.org", "bounced")]


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """One app for every example, whose store knows the fuzzed addresses and touchpoints."""
    store = Store("sqlite://")
    project = write_project(tmp_path_factory.mktemp("fuzz"), [step("hello", "email")])
    enroll(
        store, project.sequence, [Prospect(email=ADA), Prospect(email="b@x.io")], start=T0, now=T0
    )
    settings = Settings(home=ROOT, sendgrid_webhook_public_key=public_der_b64(KEY))
    return TestClient(create_app(settings, store=store, clock=FixedClock()))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(
            [
                "bounce",
                "dropped",
                "delivered",
                "open",
                "click",
                "processed",
                "spamreport",
                "unsubscribe",
                "group_unsubscribe",
                "deferred",
                "x",
            ]
        )
        | st.text(max_size=10),
        "email": st.sampled_from([ADA, "b@x.io", "", "@", "a@b@c"]) | json_values,
        "sg_event_id": st.text(max_size=20) | json_values,
        "timestamp": st.integers() | st.floats() | json_values,
        "touchpoint_id": st.sampled_from(["1", "2", "0", "-1", "99999999999999999999"])
        | json_values,
        "type": st.sampled_from(["bounce", "blocked"]) | json_values,
        "reason": st.text(max_size=40) | json_values,
        "asm_group_id": json_values,
    },
)
bodies = (
    st.binary(max_size=200)
    | st.lists(event_like, max_size=5).map(lambda items: json.dumps(items).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
)
header_values = st.none() | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=40
)


@given(body=bodies, sign_it=st.booleans(), signature=header_values, timestamp=header_values)
def test_no_body_or_header_makes_the_endpoint_fail(
    fuzz_client: TestClient,
    body: bytes,
    sign_it: bool,
    signature: str | None,
    timestamp: str | None,
) -> None:
    headers: dict[str, str | bytes] = {
        name: value.encode("latin-1")  # any byte a client may put in a header
        for name, value in ((SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp))
        if value is not None
    }
    if sign_it:
        headers = {**signed(KEY, body, MONDAY)}
    response = fuzz_client.post(PATH, content=body, headers=headers)
    assert response.status_code in ((200, 400) if sign_it else (403,))
    if response.status_code == 200:
        assert set(response.json()) == {"accepted", "duplicates", "ignored"}


# --- end to end, over real HTTP -----------------------------------------------------------


@pytest.fixture
def signed_web(tmp_path: Path) -> Iterator[WebProject]:
    """The `web` project, with an Event Webhook key made for the test."""
    with FakeSendGrid() as sendgrid:
        settings = Settings(
            home=ROOT,
            data_dir=tmp_path / "data",
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_host=sendgrid.url,
            public_url="https://relance.example.com",
            sendgrid_webhook_public_key=public_der_b64(KEY),
            claim_chunk=8,
        )
        store = Store(settings.store_url)
        clock = FixedClock()
        dispatcher = Dispatcher(
            store, settings, email_sender(settings), template_environment(settings.templates_path)
        )
        with LiveServer(create_app(settings, store=store, clock=clock)) as server:
            project = WebProject(settings, store, sendgrid, clock, server, dispatcher)
            yield project
            project.client.close()


def post_events(web: WebProject, *items: dict[str, Any]) -> dict[str, int]:
    body = body_of(*items)
    response = web.post(PATH, content=body, headers=signed(KEY, body, web.clock.now))
    assert response.status_code == 200, response.text
    answer: dict[str, int] = response.json()
    return answer


TUESDAY_NOON = MONDAY + timedelta(days=1, hours=4)


def first_email(web: WebProject, email: str = ADA) -> dict[str, str]:
    """Enroll in outbound-2w and tick until the first email went out; its custom_args."""
    web.enroll("outbound-2w", [Prospect(email=email, fields={"industry": "packaging"})])
    web.tick(MONDAY)
    web.clock.now = TUESDAY_NOON
    web.tick()
    (sent,) = web.sent_to(email)
    custom_args: dict[str, str] = sent["personalizations"][0]["custom_args"]
    return custom_args


def test_a_bounce_stops_the_enrollment_and_suppresses_the_address_everywhere(
    signed_web: WebProject,
) -> None:
    web = signed_web
    ids = first_email(web)
    answer = post_events(
        web, sg_event("bounce", type="bounce", reason="550 5.1.1 user unknown", **ids)
    )
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": 0}
    with web.store.reading() as connection:
        status, reason = connection.execute(
            select(enrollments.c.status, enrollments.c.reason).where(
                enrollments.c.id == int(ids["enrollment_id"])
            )
        ).one()
        listed = connection.execute(select(suppressions.c.reason)).scalars().all()
        bounce = connection.execute(select(events).where(events.c.kind == "bounced")).one()
    assert (status, reason) == ("stopped", "bounced")
    assert listed == ["bounced"]
    assert bounce.touchpoint_id == int(ids["touchpoint_id"])
    assert bounce.data["reason"] == "550 5.1.1 user unknown"

    for day in range(2, 20):
        web.tick(MONDAY + timedelta(days=day, hours=4))
    assert len(web.sent_to(ADA)) == 1

    elsewhere = web.enroll("nurture-warm", [Prospect(email=ADA, first_name="Ada")])
    assert elsewhere.suppressed == [ADA]
    assert elsewhere.enrolled == []


def test_processed_delivered_opened_clicked_are_recorded_once_with_the_touchpoint(
    signed_web: WebProject,
) -> None:
    web = signed_web
    ids = first_email(web)
    batch = [
        sg_event("processed", **ids),
        sg_event("delivered", **ids),
        sg_event("open", sg_machine_open=True, **ids),
        sg_event("click", url="https://example.com/benchmark", **ids),
        sg_event("delivered", email="someone-else@example.com", **ids),  # not our message
    ]
    assert post_events(web, *batch) == {"accepted": 4, "duplicates": 0, "ignored": 1}
    assert post_events(web, *batch) == {"accepted": 0, "duplicates": 4, "ignored": 1}
    assert post_events(web, batch[2], batch[2]) == {"accepted": 0, "duplicates": 2, "ignored": 0}
    with web.store.reading() as connection:
        rows = connection.execute(
            select(events.c.kind, events.c.touchpoint_id, events.c.enrollment_id, events.c.data)
            .where(events.c.source == "sendgrid")
            .order_by(events.c.id)
        ).all()
    touchpoint, enrollment = int(ids["touchpoint_id"]), int(ids["enrollment_id"])
    assert [tuple(row) for row in rows] == [
        ("accepted", touchpoint, enrollment, {}),
        ("delivered", touchpoint, enrollment, {}),
        ("opened", touchpoint, enrollment, {"machine_open": True}),
        ("clicked", touchpoint, enrollment, {}),
    ]


def test_a_replayed_unsubscribe_is_processed_once(signed_web: WebProject) -> None:
    web = signed_web
    ids = first_email(web)
    unsubscribe = sg_event("unsubscribe", **ids)
    assert post_events(web, unsubscribe)["accepted"] == 1
    web.advance(hours=1)
    assert post_events(web, unsubscribe) == {"accepted": 0, "duplicates": 1, "ignored": 0}
    with web.store.reading() as connection:
        kinds = connection.execute(select(events.c.kind).where(events.c.source == "sendgrid"))
        assert kinds.scalars().all() == ["unsubscribed"]


def test_a_touchpoint_left_unknown_is_settled_by_the_providers_events(
    signed_web: WebProject,
) -> None:
    web = signed_web
    ids = first_email(web)
    touchpoint = int(ids["touchpoint_id"])
    with web.store.transaction() as connection:
        connection.execute(
            update(touchpoints)
            .where(touchpoints.c.id == touchpoint)
            .values(status="unknown", reason="dispatcher stopped during the send: check provider")
        )
    answer = post_events(web, sg_event("processed", **ids))
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": 0}
    with web.store.reading() as connection:
        status, reason = connection.execute(
            select(touchpoints.c.status, touchpoints.c.reason).where(touchpoints.c.id == touchpoint)
        ).one()
    assert (status, reason) == ("sent", "confirmed by the provider's events")


def test_a_soft_bounce_is_recorded_and_the_sequence_goes_on(signed_web: WebProject) -> None:
    web = signed_web
    ids = first_email(web)
    answer = post_events(web, sg_event("bounce", type="blocked", reason="421 try later", **ids))
    assert answer == {"accepted": 1, "duplicates": 0, "ignored": 0}
    with web.store.reading() as connection:
        status = connection.execute(select(enrollments.c.status)).scalar_one()
        listed = connection.execute(select(func.count()).select_from(suppressions)).scalar_one()
    assert (status, listed) == ("active", 0)


# --- recording, on SQLite and PostgreSQL ------------------------------------------------


def test_events_are_recorded_once_on_every_store(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("hello", "email"), step("again", "email", "2d")])
    result = enroll(store, project.sequence, people(2), start=T0, now=T0)
    (first, first_enrollment), (second, second_enrollment) = result.enrolled
    with store.transaction() as connection:
        firsts = dict(
            connection.execute(
                select(touchpoints.c.enrollment_id, touchpoints.c.id).where(
                    touchpoints.c.step_id == "hello"
                )
            ).all()
        )
        one, two = firsts[first_enrollment], firsts[second_enrollment]
        connection.execute(
            update(touchpoints).where(touchpoints.c.id == two).values(status="unknown")
        )

    def mail(key: str, kind: MailEventKind, email: str, touchpoint: int, **extra: Any) -> Any:
        return MailEvent(f"sendgrid:{key}", kind, "sendgrid", email, T0, touchpoint, **extra)

    batch = [
        mail("a", MailEventKind.DELIVERED, first, one),
        mail("b", MailEventKind.OPENED, first, one),
        mail("a", MailEventKind.DELIVERED, first, one),
        mail("c", MailEventKind.DROPPED, second, two, signal=Signal.BOUNCED),
        mail("d", MailEventKind.DELIVERED, first, 10**9),
    ]
    tally = apply_mail_events(store, batch, now=T0)
    assert (tally.accepted, tally.duplicates, tally.ignored, tally.settled) == (3, 1, 1, 1)
    assert [outcome.changed for outcome in tally.signals] == [
        [(second_enrollment, "active", "stopped")]
    ]
    again = apply_mail_events(store, batch, now=T0 + timedelta(hours=1))
    assert (again.accepted, again.duplicates, again.ignored) == (0, 4, 1)
    with store.reading() as connection:
        recorded = connection.execute(
            select(events.c.kind, events.c.touchpoint_id)
            .where(events.c.source == "sendgrid")
            .order_by(events.c.kind)
        ).all()
        settled = connection.execute(
            select(touchpoints.c.status, touchpoints.c.reason).where(touchpoints.c.id == two)
        ).one()
    assert [tuple(row) for row in recorded] == [
        ("bounced", two),
        ("delivered", one),
        ("opened", one),
    ]
    assert tuple(settled) == ("failed", "dropped by the provider")


def test_events_that_came_before_the_unknown_flag_settle_it(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("hello", "email")])
    (email, _), *_ = enroll(store, project.sequence, people(1), start=T0, now=T0).enrolled
    with store.transaction() as connection:
        touchpoint = connection.execute(select(touchpoints.c.id)).scalar_one()
        connection.execute(update(touchpoints).values(status="sending"))
    delivered = MailEvent("sendgrid:x1", MailEventKind.DELIVERED, "sendgrid", email, T0, touchpoint)
    assert apply_mail_events(store, [delivered], now=T0).accepted == 1
    assert settle_unknown(store) == 0, "a touch still sending belongs to its dispatcher"
    with store.transaction() as connection:
        connection.execute(update(touchpoints).values(status="unknown"))

    assert settle_unknown(store) == 1

    with store.reading() as connection:
        status, sent_at = connection.execute(
            select(touchpoints.c.status, touchpoints.c.sent_at)
        ).one()
    assert (status, sent_at) == ("sent", T0)
