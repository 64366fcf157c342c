"""Cal.com webhooks: the signature (hex HMAC-SHA256 of the raw body), the booking payloads,
and the endpoint refusing what it cannot prove and applying each event once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from test_calendly import HEADER_TEXT, JSON_VALUES, fuzz_client, paths, stored
from web_support import ROOT, FixedClock, WebProject

from integrations import calcom
from relance.bookings import BookingEvent, BookingKind
from relance.errors import InputError, SignatureError
from relance.prospect import Prospect
from relance.settings import Settings
from relance.store import Store
from relance.web.app import create_app

SECRET = "calcom-secret"
"""The webhook secret of the `web` fixture's settings."""

CLAIRE = "claire.martin@example.com"
THURSDAY_10 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
"""Thursday 5 March 2026, 10:00 in Paris."""


def booking_event(
    trigger: str = "BOOKING_CREATED",
    *,
    email: str = CLAIRE,
    uid: str = "bk-1",
    starts_at: datetime = THURSDAY_10,
    minutes: int = 30,
    reschedule_uid: str | None = None,
    location: str = "integrations:daily",
    video_url: str | None = "https://app.cal.com/video/bk-1",
    reason: str | None = None,
    cancelled_by: str | None = None,
) -> dict[str, Any]:
    """A webhook body as Cal.com sends it, trimmed of fields Relance ignores."""
    ends_at = starts_at + timedelta(minutes=minutes)
    payload: dict[str, Any] = {
        "type": "discovery-30",
        "title": "Discovery call between Camille Durand and Claire Martin",
        "description": "",
        "startTime": starts_at.isoformat().replace("+00:00", "Z"),
        "endTime": ends_at.isoformat().replace("+00:00", "Z"),
        "organizer": {
            "id": 7,
            "name": "Camille Durand",
            "email": "camille@example.com",
            "timeZone": "Europe/Paris",
            "language": {"locale": "fr"},
        },
        "attendees": [
            {
                "email": email,
                "name": "Claire Martin",
                "timeZone": "Europe/Paris",
                "language": {"locale": "fr"},
            },
            {"email": "guest@example.com", "name": "A colleague", "timeZone": "Europe/Paris"},
        ],
        "location": location,
        "uid": uid,
        "bookingId": 1234,
        "status": "CANCELLED" if trigger == "BOOKING_CANCELLED" else "ACCEPTED",
        "metadata": {"videoCallUrl": video_url} if video_url else {},
        "eventTypeId": 42,
        "length": minutes,
    }
    if reschedule_uid is not None:
        payload.update(
            rescheduleUid=reschedule_uid,
            rescheduleId=1233,
            rescheduleStartTime="2026-03-05T09:00:00Z",
            rescheduleEndTime="2026-03-05T09:30:00Z",
            rescheduledBy=email,
        )
    if trigger == "BOOKING_CANCELLED":
        payload.update(cancellationReason=reason, cancelledBy=cancelled_by)
    return {"triggerEvent": trigger, "createdAt": "2026-03-03T10:00:00.000Z", "payload": payload}


def post_calcom(
    web: WebProject,
    payload: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    header: str | None = None,
) -> httpx.Response:
    """POST a body signed as Cal.com signs it (``header`` replaces the signature)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = calcom.signature(body, secret) if header is None else header
    headers = {"Content-Type": "application/json"}
    if signature:
        headers[calcom.SIGNATURE_HEADER] = signature
    return web.post("/webhooks/calcom", content=body, headers=headers)


# --- signature ------------------------------------------------------------------------------

BODY = json.dumps(booking_event()).encode()


def test_the_hex_hmac_of_the_raw_body_is_accepted() -> None:
    signed = calcom.signature(BODY, SECRET)
    assert len(signed) == 64
    calcom.verify_signature(BODY, signed, secret=SECRET)
    calcom.verify_signature(BODY, f" {signed.upper()} ", secret=SECRET)


@pytest.mark.parametrize(
    ("body", "header", "secret", "message"),
    [
        (BODY + b"\n", None, SECRET, "the signature does not match the body"),
        (BODY, None, "another-secret", "the signature does not match the body"),
        (BODY, "", SECRET, "missing X-Cal-Signature-256 header"),
        (BODY, "no-secret-provided", SECRET, "malformed X-Cal-Signature-256 header"),
        (BODY, "é" * 64, SECRET, "malformed"),
        (BODY, None, None, "set RELANCE_CALCOM_SECRET"),
    ],
)
def test_a_request_it_cannot_prove_is_refused(
    body: bytes, header: str | None, secret: str | None, message: str
) -> None:
    signed = calcom.signature(BODY, SECRET) if header is None else header
    with pytest.raises(SignatureError, match=message):
        calcom.verify_signature(body, signed, secret=secret)


# --- payloads -------------------------------------------------------------------------------


def parse(payload: dict[str, Any]) -> BookingEvent | None:
    return calcom.parse_event(json.dumps(payload).encode())


def test_booking_created_is_a_booking_by_its_first_attendee_with_the_video_link() -> None:
    assert parse(booking_event()) == BookingEvent(
        BookingKind.CREATED,
        provider="calcom",
        external_id="bk-1",
        email=CLAIRE,
        name="Claire Martin",
        starts_at=THURSDAY_10,
        ends_at=THURSDAY_10 + timedelta(minutes=30),
        join_url="https://app.cal.com/video/bk-1",
        occurred_at=datetime(2026, 3, 3, 10, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("location", "video", "expected"),
    [
        ("https://meet.google.com/abc", None, (None, "https://meet.google.com/abc")),
        ("12 rue de la Paix, Paris", None, ("12 rue de la Paix, Paris", None)),
        ("integrations:zoom", "https://zoom.us/j/1", (None, "https://zoom.us/j/1")),
        ("integrations:daily", None, (None, None)),
    ],
)
def test_the_location_is_a_place_or_a_link(
    location: str, video: str | None, expected: tuple[str | None, str | None]
) -> None:
    event = parse(booking_event(location=location, video_url=video))
    assert event is not None
    assert (event.location, event.join_url) == expected


def test_a_reschedule_is_a_new_booking_naming_the_one_it_replaces() -> None:
    event = parse(booking_event("BOOKING_RESCHEDULED", uid="bk-2", reschedule_uid="bk-1"))
    assert event is not None
    assert (event.kind, event.external_id, event.previous_external_id) == (
        BookingKind.RESCHEDULED,
        "bk-2",
        "bk-1",
    )
    kept = parse(booking_event("BOOKING_RESCHEDULED", uid="bk-1"))
    assert kept is not None and kept.previous_external_id == "bk-1"


def test_a_cancellation_says_who_cancelled_and_why() -> None:
    by_her = parse(booking_event("BOOKING_CANCELLED", reason="Sick", cancelled_by=CLAIRE.upper()))
    by_host = parse(booking_event("BOOKING_CANCELLED", cancelled_by="camille@example.com"))
    unsaid = parse(booking_event("BOOKING_CANCELLED"))
    assert by_her is not None and by_host is not None and unsaid is not None
    assert (by_her.kind, by_her.reason, by_her.cancelled_by) == (
        BookingKind.CANCELLED,
        "Sick",
        "invitee",
    )
    assert (by_host.cancelled_by, unsaid.cancelled_by, unsaid.reason) == ("host", None, None)


def test_other_triggers_are_ignored() -> None:
    assert parse({"triggerEvent": "PING", "payload": {}}) is None
    assert parse({"triggerEvent": "MEETING_ENDED", "payload": {"uid": "bk-1"}}) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("triggerEvent"), "triggerEvent: expected the trigger's name"),
        (lambda p: p.pop("payload"), "payload: missing"),
        (lambda p: p["payload"].pop("uid"), "payload.uid: missing"),
        (lambda p: p["payload"].update(attendees=[]), "payload.attendees: expected a list"),
        (lambda p: p["payload"].update(attendees=["x"]), r"payload.attendees\[0\]: expected"),
        (
            lambda p: p["payload"]["attendees"][0].pop("email"),
            r"payload.attendees\[0\].email: missing",
        ),
        (lambda p: p["payload"].update(startTime=None), "payload.startTime: missing"),
        (lambda p: p["payload"].update(endTime=1772700000), "payload.endTime: expected a string"),
        (lambda p: p["payload"].update(metadata="x"), "payload.metadata: expected an object"),
        (lambda p: p["payload"].update(location="a\x00b"), "payload.location: expected text"),
    ],
)
def test_a_wrong_field_is_named(change: Any, message: str) -> None:
    payload = booking_event()
    change(payload)
    with pytest.raises(InputError, match=message):
        parse(payload)


# --- the endpoint ------------------------------------------------------------------------------


def enroll_claire(web: WebProject) -> None:
    web.enroll("outbound-2w", [Prospect(email=CLAIRE, fields={"industry": "packaging"})])


def test_a_signed_booking_is_accepted_over_http(web: WebProject) -> None:
    enroll_claire(web)
    response = post_calcom(web, booking_event())
    assert (response.status_code, response.json()) == (
        200,
        {"outcome": "booked", "prospect_id": 1, "meeting_id": 1},
    )


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"secret": "not-the-secret"}, "the signature does not match the body"),
        ({"header": ""}, "missing X-Cal-Signature-256 header"),
        (
            {"header": "no-secret-provided"},
            "malformed X-Cal-Signature-256 header: expected 64 hex digits",
        ),
    ],
)
def test_a_request_it_cannot_prove_is_refused_with_403_and_nothing_stored(
    web: WebProject, tamper: dict[str, Any], message: str
) -> None:
    enroll_claire(web)
    before = stored(web)
    response = post_calcom(web, booking_event(), **tamper)
    assert (response.status_code, response.json()) == (403, {"error": message})
    assert stored(web) == before


def test_a_tampered_body_is_refused_with_403_and_nothing_stored(web: WebProject) -> None:
    enroll_claire(web)
    before = stored(web)
    signed = json.dumps(booking_event()).encode()
    tampered = signed.replace(b"2026-03-05T09:00", b"2026-03-06T09:00")
    response = post_calcom(web, tampered, header=calcom.signature(signed, SECRET))
    assert response.status_code == 403
    assert stored(web) == before


def test_without_a_secret_every_request_is_refused(tmp_path: Any) -> None:
    settings = Settings(home=ROOT, data_dir=tmp_path, calcom_secret=None)
    client = TestClient(create_app(settings, store=Store("sqlite://"), clock=FixedClock()))
    body = json.dumps(booking_event()).encode()
    response = client.post(
        "/webhooks/calcom", content=body, headers={calcom.SIGNATURE_HEADER: "no-secret-provided"}
    )
    assert (response.status_code, response.json()) == (
        403,
        {"error": "Cal.com webhooks need a secret: set RELANCE_CALCOM_SECRET"},
    )


def test_a_signed_body_that_is_not_an_event_is_a_400_naming_the_problem(web: WebProject) -> None:
    payload = booking_event()
    payload["payload"]["attendees"] = "claire"
    response = post_calcom(web, payload)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "payload.attendees: expected a list of at least one attendee"},
    )


def test_a_replayed_event_is_processed_once(web: WebProject) -> None:
    enroll_claire(web)
    assert post_calcom(web, booking_event()).json()["outcome"] == "booked"
    after_first = stored(web)
    again = post_calcom(web, booking_event())
    assert again.json() == {"outcome": "duplicate", "prospect_id": 1, "meeting_id": None}
    assert stored(web) == after_first
    assert post_calcom(web, {"triggerEvent": "PING", "payload": {}}).json() == {
        "outcome": "ignored"
    }


# --- fuzz ----------------------------------------------------------------------------------------


@st.composite
def damaged_events(draw: st.DrawFn) -> dict[str, Any]:
    """A genuine booking event (created, rescheduled, cancelled) with one place replaced."""
    trigger = draw(st.sampled_from(sorted(calcom.KINDS)))
    payload = booking_event(
        trigger,
        email=draw(st.sampled_from([CLAIRE, "stranger@example.com"])),
        uid=draw(st.sampled_from(["bk-1", "bk-2"]) | st.text("abc-12", min_size=1)),
        reschedule_uid=draw(st.sampled_from([None, "bk-1"])),
        cancelled_by=draw(st.sampled_from([None, CLAIRE])),
    )
    where = draw(st.sampled_from(paths(payload)[1:]))
    target = payload
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = draw(JSON_VALUES)
    return payload


def fuzz_post(body: bytes, headers: dict[str, str]) -> httpx.Response:
    response = fuzz_client().post("/webhooks/calcom", content=body, headers=headers)
    assert response.status_code < 500, response.text
    assert set(response.json()) & {"error", "outcome"}
    return response


@given(body=st.binary(max_size=600), header=st.none() | HEADER_TEXT)
def test_fuzz_unsigned_requests_are_refused(body: bytes, header: str | None) -> None:
    headers = {} if header is None else {calcom.SIGNATURE_HEADER: header}
    assert fuzz_post(body, headers).status_code == 403


@given(body=st.binary(max_size=600) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_fuzz_signed_junk_is_answered_never_a_server_error(body: bytes) -> None:
    headers = {calcom.SIGNATURE_HEADER: calcom.signature(body, SECRET)}
    assert fuzz_post(body, headers).status_code in (200, 400)


@given(payload=damaged_events())
def test_fuzz_signed_damaged_events_are_answered_never_a_server_error(
    payload: dict[str, Any],
) -> None:
    body = json.dumps(payload).encode()
    headers = {calcom.SIGNATURE_HEADER: calcom.signature(body, SECRET)}
    assert fuzz_post(body, headers).status_code in (200, 400)
