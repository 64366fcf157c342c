"""Calendly webhooks: the signature (t=...,v1=... over "<t>.<raw body>"), the v2 payloads,
and the endpoint refusing what it cannot prove and applying each event once."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from web_support import MONDAY, ROOT, FixedClock, WebProject

from integrations import calendly
from integrations.calendly import CANCELED, CREATED
from relance.bookings import BookingEvent, BookingKind
from relance.catalog import resolve_sequence
from relance.enrollments import enroll
from relance.errors import InputError, SignatureError
from relance.prospect import Prospect
from relance.settings import Settings
from relance.store import Store
from relance.tables import events, meetings, tasks, touchpoints
from relance.web.app import create_app

KEY = "calendly-signing-key"
"""The signing key of the `web` fixture's settings."""

CLAIRE = "claire.martin@example.com"
THURSDAY_10 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
"""Thursday 5 March 2026, 10:00 in Paris."""


def invitee_uri(invitee: str) -> str:
    return f"https://api.calendly.com/scheduled_events/EV-{invitee}/invitees/{invitee}"


def invitee_event(
    event: str = calendly.CREATED,
    *,
    email: str = CLAIRE,
    invitee: str = "INV-1",
    starts_at: datetime = THURSDAY_10,
    minutes: int = 30,
    rescheduled: bool = False,
    old_invitee: str | None = None,
    new_invitee: str | None = None,
    reason: str | None = None,
    canceler_type: str = "invitee",
    join_url: str | None = "https://zoom.example.com/j/123",
) -> dict[str, Any]:
    """A webhook body as Calendly sends it (API v2), trimmed of fields Relance ignores."""
    ends_at = starts_at + timedelta(minutes=minutes)
    canceled = event == calendly.CANCELED
    location: dict[str, Any] = {"type": "physical", "location": "12 rue de la Paix, Paris"}
    if join_url:
        location = {"type": "zoom", "status": "pushed", "join_url": join_url}
    return {
        "created_at": "2026-03-03T10:00:00.000000Z",
        "created_by": "https://api.calendly.com/users/HOST",
        "event": event,
        "payload": {
            "cancel_url": f"https://calendly.com/cancellations/{invitee}",
            "created_at": "2026-03-03T10:00:00.000000Z",
            "email": email,
            "event": f"https://api.calendly.com/scheduled_events/EV-{invitee}",
            "first_name": None,
            "last_name": None,
            "name": "Claire Martin",
            "new_invitee": invitee_uri(new_invitee) if new_invitee else None,
            "old_invitee": invitee_uri(old_invitee) if old_invitee else None,
            "questions_and_answers": [],
            "reschedule_url": f"https://calendly.com/reschedulings/{invitee}",
            "rescheduled": rescheduled,
            "status": "canceled" if canceled else "active",
            "text_reminder_number": None,
            "timezone": "Europe/Paris",
            "tracking": {"utm_campaign": None, "utm_source": None},
            "updated_at": "2026-03-03T10:00:00.000000Z",
            "uri": invitee_uri(invitee),
            **(
                {
                    "cancellation": {
                        "canceled_by": "Claire Martin",
                        "reason": reason,
                        "canceler_type": canceler_type,
                        "created_at": "2026-03-03T10:00:00.000000Z",
                    }
                }
                if canceled
                else {}
            ),
            "scheduled_event": {
                "uri": f"https://api.calendly.com/scheduled_events/EV-{invitee}",
                "name": "Discovery call",
                "status": "canceled" if canceled else "active",
                "start_time": starts_at.isoformat().replace("+00:00", ".000000Z"),
                "end_time": ends_at.isoformat().replace("+00:00", ".000000Z"),
                "event_type": "https://api.calendly.com/event_types/ET-1",
                "location": location,
                "invitees_counter": {"total": 1, "active": 1, "limit": 1},
                "created_at": "2026-03-03T10:00:00.000000Z",
                "updated_at": "2026-03-03T10:00:00.000000Z",
                "event_memberships": [
                    {"user": "https://api.calendly.com/users/HOST", "user_email": "host@x.com"}
                ],
                "event_guests": [],
            },
        },
    }


def post_calendly(
    web: WebProject,
    payload: dict[str, Any] | bytes,
    *,
    key: str = KEY,
    signed_at: datetime | None = None,
    header: str | None = None,
) -> httpx.Response:
    """POST a body signed as Calendly signs it (``header`` replaces the signature)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = int((signed_at or web.clock.now).timestamp())
    signature = calendly.signature_header(body, key, stamp) if header is None else header
    headers = {"Content-Type": "application/json"}
    if signature:
        headers[calendly.SIGNATURE_HEADER] = signature
    return web.post("/webhooks/calendly", content=body, headers=headers)


def stored(web: WebProject) -> dict[str, Any]:
    """What a refused request must leave untouched."""
    with web.store.reading() as connection:
        return {
            "events": connection.execute(select(events.c.id)).all(),
            "meetings": connection.execute(select(meetings)).all(),
            "touches": connection.execute(
                select(touchpoints.c.id, touchpoints.c.status, touchpoints.c.due_at)
            ).all(),
            "tasks": connection.execute(select(tasks.c.id)).all(),
        }


def enroll_claire(web: WebProject) -> None:
    web.enroll("outbound-2w", [Prospect(email=CLAIRE, fields={"industry": "packaging"})])


# --- signature ------------------------------------------------------------------------------

BODY = json.dumps(invitee_event()).encode()
NOW = MONDAY
STAMP = int(NOW.timestamp())


def verify(body: bytes, header: str | None, *, key: str | None = KEY, now: datetime = NOW) -> None:
    calendly.verify_signature(body, header, key=key, now=now, tolerance_seconds=300)


def test_a_signature_made_with_the_key_over_the_timestamp_and_body_is_accepted() -> None:
    header = calendly.signature_header(BODY, KEY, STAMP)
    assert header.startswith(f"t={STAMP},v1=") and len(header.split("v1=")[1]) == 64
    verify(BODY, header)
    verify(BODY, header, now=NOW + timedelta(seconds=300))  # at the edge of the tolerance
    verify(BODY, f" v1={header.split('v1=')[1].upper()} , t={STAMP}")  # any order, any case


@pytest.mark.parametrize(
    ("body", "header", "key", "now", "message"),
    [
        (BODY + b" ", None, KEY, NOW, "does not match"),
        (BODY, None, "another-key", NOW, "does not match"),
        (BODY, "", KEY, NOW, "missing Calendly-Webhook-Signature"),
        (BODY, None, KEY, NOW + timedelta(seconds=301), "301 seconds old"),
        (BODY, None, KEY, NOW - timedelta(seconds=301), "301 seconds ahead"),
        (BODY, None, None, NOW, "set RELANCE_CALENDLY_SIGNING_KEY"),
        (BODY, "sha256=abc", KEY, NOW, "malformed"),
        (BODY, f"t={STAMP}", KEY, NOW, "malformed"),
        (BODY, "v1=" + "0" * 64, KEY, NOW, "malformed"),
        (BODY, f"t=yesterday,v1={'0' * 64}", KEY, NOW, "malformed"),
        (BODY, f"t={STAMP},t={STAMP},v1={'0' * 64}", KEY, NOW, "malformed"),
        (BODY, f"t={STAMP},v1=é", KEY, NOW, "malformed"),
    ],
)
def test_a_request_it_cannot_prove_is_refused(
    body: bytes, header: str | None, key: str | None, now: datetime, message: str
) -> None:
    signed = header if header is not None else calendly.signature_header(BODY, KEY, STAMP)
    with pytest.raises(SignatureError, match=message):
        verify(body, signed, key=key, now=now)


# --- payloads -------------------------------------------------------------------------------


def parse(payload: dict[str, Any]) -> BookingEvent | None:
    return calendly.parse_event(json.dumps(payload).encode())


def test_invitee_created_is_a_booking_with_its_time_and_link() -> None:
    event = parse(invitee_event())
    assert event == BookingEvent(
        BookingKind.CREATED,
        provider="calendly",
        external_id=invitee_uri("INV-1"),
        email=CLAIRE,
        name="Claire Martin",
        starts_at=THURSDAY_10,
        ends_at=THURSDAY_10 + timedelta(minutes=30),
        join_url="https://zoom.example.com/j/123",
        occurred_at=datetime(2026, 3, 3, 10, tzinfo=UTC),
    )
    physical = parse(invitee_event(join_url=None))
    assert physical is not None
    assert (physical.location, physical.join_url) == ("12 rue de la Paix, Paris", None)


def test_a_reschedule_is_a_created_invitee_naming_the_old_one_and_a_canceled_old_one() -> None:
    created = parse(invitee_event(invitee="INV-2", old_invitee="INV-1"))
    assert created is not None
    assert (created.kind, created.external_id, created.previous_external_id) == (
        BookingKind.RESCHEDULED,
        invitee_uri("INV-2"),
        invitee_uri("INV-1"),
    )
    canceled = parse(invitee_event(calendly.CANCELED, rescheduled=True, new_invitee="INV-2"))
    assert canceled is not None
    assert (canceled.kind, canceled.external_id, canceled.replaced_by) == (
        BookingKind.SUPERSEDED,
        invitee_uri("INV-1"),
        invitee_uri("INV-2"),
    )


def test_a_cancellation_carries_its_reason_and_who_cancelled() -> None:
    event = parse(invitee_event(calendly.CANCELED, reason="Conflit d'agenda", canceler_type="host"))
    assert event is not None
    assert (event.kind, event.reason, event.cancelled_by) == (
        BookingKind.CANCELLED,
        "Conflit d'agenda",
        "host",
    )


def test_events_about_something_else_are_ignored() -> None:
    assert parse({"event": "invitee_no_show.created", "payload": {}}) is None
    assert parse({"event": "routing_form_submission.created"}) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"payload": {}}', "event: expected the event's name"),
        (b'{"event": "invitee.created"}', "payload: missing"),
        (b'{"event": "invitee.created", "payload": []}', "payload: expected an object, got list"),
    ],
)
def test_a_body_that_is_not_a_calendly_event_is_an_input_error(body: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        calendly.parse_event(body)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["payload"].pop("uri"), "payload.uri: missing"),
        (lambda p: p["payload"].update(email=42), "payload.email: expected a string, got int"),
        (lambda p: p["payload"].update(email="claire"), "the invitee's email address"),
        (lambda p: p["payload"].pop("scheduled_event"), "payload.scheduled_event: missing"),
        (
            lambda p: p["payload"]["scheduled_event"].update(start_time="2026-03-05T10:00:00"),
            "payload.scheduled_event.start_time: expected an ISO 8601 time with a UTC offset",
        ),
        (
            lambda p: p["payload"]["scheduled_event"].update(end_time="soon"),
            "payload.scheduled_event.end_time: expected an ISO 8601 time",
        ),
        (
            lambda p: p["payload"]["scheduled_event"].update(end_time="2026-03-05T08:00:00Z"),
            "the meeting ends .* before it starts",
        ),
        (lambda p: p["payload"].update(uri="x" * 151), "external_id: expected a booking id"),
        (lambda p: p.update(created_at="0001-01-01T00:00:00+14:00"), "between 1970 and 2999"),
    ],
)
def test_a_wrong_field_is_named(change: Any, message: str) -> None:
    payload = invitee_event()
    change(payload)
    with pytest.raises(InputError, match=message):
        parse(payload)


# --- the endpoint ------------------------------------------------------------------------------


def test_a_signed_booking_is_accepted_over_http(web: WebProject) -> None:
    enroll_claire(web)
    response = post_calendly(web, invitee_event())
    assert response.status_code == 200
    assert response.json() == {"outcome": "booked", "prospect_id": 1, "meeting_id": 1}


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"key": "not-the-key"}, "the signature does not match the body"),
        ({"header": ""}, "missing Calendly-Webhook-Signature header"),
        (
            {"header": "t=1,v1=2"},
            "malformed Calendly-Webhook-Signature header: expected t=...,v1=...",
        ),
        (
            {"signed_at": MONDAY - timedelta(minutes=6)},
            "the signature is 360 seconds old: more than the 300 accepted",
        ),
    ],
)
def test_a_request_it_cannot_prove_is_refused_with_403_and_nothing_stored(
    web: WebProject, tamper: dict[str, Any], message: str
) -> None:
    enroll_claire(web)
    before = stored(web)
    response = post_calendly(web, invitee_event(), **tamper)
    assert (response.status_code, response.json()) == (403, {"error": message})
    assert stored(web) == before


def test_a_tampered_body_is_refused_with_403_and_nothing_stored(web: WebProject) -> None:
    enroll_claire(web)
    before = stored(web)
    signed = json.dumps(invitee_event()).encode()
    header = calendly.signature_header(signed, KEY, int(web.clock.now.timestamp()))
    tampered = signed.replace(b"2026-03-05T09:00", b"2026-03-06T09:00")
    response = post_calendly(web, tampered, header=header)
    assert response.status_code == 403
    assert stored(web) == before


def test_without_a_signing_key_every_request_is_refused(tmp_path: Any) -> None:
    settings = Settings(home=ROOT, data_dir=tmp_path, calendly_signing_key=None)
    store = Store("sqlite://")
    client = TestClient(create_app(settings, store=store, clock=FixedClock()))
    body = json.dumps(invitee_event()).encode()
    header = calendly.signature_header(body, KEY, int(MONDAY.timestamp()))
    response = client.post(
        "/webhooks/calendly", content=body, headers={calendly.SIGNATURE_HEADER: header}
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "Calendly webhooks need a signing key: set RELANCE_CALENDLY_SIGNING_KEY"
    }


def test_a_signed_body_that_is_not_an_event_is_a_400_naming_the_problem(web: WebProject) -> None:
    payload = invitee_event()
    del payload["payload"]["scheduled_event"]["start_time"]
    response = post_calendly(web, payload)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "payload.scheduled_event.start_time: missing"},
    )
    assert post_calendly(web, b"{oops").json() == {"error": "the body is not JSON"}


def test_a_replayed_event_is_processed_once(web: WebProject) -> None:
    enroll_claire(web)
    assert post_calendly(web, invitee_event()).json()["outcome"] == "booked"
    after_first = stored(web)
    web.advance(minutes=2)  # Calendly retries: signed again, later
    again = post_calendly(web, invitee_event())
    assert again.json() == {"outcome": "duplicate", "prospect_id": 1, "meeting_id": None}
    assert stored(web) == after_first


def test_a_booking_from_someone_relance_does_not_follow_is_answered_and_changes_nothing(
    web: WebProject,
) -> None:
    before = stored(web)
    response = post_calendly(web, invitee_event(email="stranger@example.com"))
    assert response.json() == {
        "outcome": "unknown prospect",
        "prospect_id": None,
        "meeting_id": None,
    }
    other = post_calendly(web, {"event": "invitee_no_show.created", "payload": {}})
    assert other.json() == {"outcome": "ignored"}
    assert stored(web) == before


# --- fuzz ----------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@functools.cache
def fuzz_client() -> TestClient:
    """The service in process, a store where Claire is enrolled; errors come back as 500s."""
    settings = Settings(home=ROOT, calendly_signing_key=KEY, calcom_secret="calcom-secret")
    store = Store("sqlite://")
    sequence = resolve_sequence("outbound-2w", settings)
    people = [Prospect(email=CLAIRE, fields={"industry": "packaging"})]
    enroll(store, sequence, people, start=MONDAY, now=MONDAY)
    app = create_app(settings, store=store, clock=FixedClock())
    return TestClient(app, raise_server_exceptions=False)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, the document itself included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


@st.composite
def damaged_events(draw: st.DrawFn) -> dict[str, Any]:
    """A genuine invitee event (created, rescheduled, canceled) with one place replaced."""
    event = draw(st.sampled_from([CREATED, CANCELED]))
    payload = invitee_event(
        event,
        email=draw(st.sampled_from([CLAIRE, "stranger@example.com"])),
        invitee=draw(st.sampled_from(["INV-1", "INV-2"]) | st.text("ABC-12", min_size=1)),
        rescheduled=draw(st.booleans()),
        old_invitee=draw(st.sampled_from([None, "INV-1"])),
        new_invitee=draw(st.sampled_from([None, "INV-2"])),
    )
    where = draw(st.sampled_from(paths(payload)[1:]))
    target = payload
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = draw(JSON_VALUES)
    return payload


def fuzz_post(body: bytes, headers: dict[str, str]) -> httpx.Response:
    response = fuzz_client().post("/webhooks/calendly", content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert set(response.json()) & {"error", "outcome"}
    return response


def signed(body: bytes) -> dict[str, str]:
    return {calendly.SIGNATURE_HEADER: calendly.signature_header(body, KEY, STAMP)}


@given(body=st.binary(max_size=600), header=st.none() | HEADER_TEXT)
def test_fuzz_unsigned_requests_are_refused(body: bytes, header: str | None) -> None:
    headers = {} if header is None else {calendly.SIGNATURE_HEADER: header}
    assert fuzz_post(body, headers).status_code == 403


@given(body=st.binary(max_size=600) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_fuzz_signed_junk_is_answered_never_a_server_error(body: bytes) -> None:
    assert fuzz_post(body, signed(body)).status_code in (200, 400)


@given(payload=damaged_events())
def test_fuzz_signed_damaged_events_are_answered_never_a_server_error(
    payload: dict[str, Any],
) -> None:
    body = json.dumps(payload).encode()
    assert fuzz_post(body, signed(body)).status_code in (200, 400)
