"""Meeting invitations parse back with icalendar and say exactly what was asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from integrations.icalendar_invite import PRODID, build_cancel, build_invite, invite_attachment
from relance.outbound import OutboundEmail
from relance.outbox import OutboxSender

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 3, 20, 8, 15, tzinfo=UTC)


def invite(**changes: Any) -> bytes:
    arguments: dict[str, Any] = {
        "uid": "meeting-42@seller.example",
        "starts_at": datetime(2025, 3, 31, 10, 0, tzinfo=PARIS),  # the day after the DST change
        "ends_at": datetime(2025, 3, 31, 10, 30, tzinfo=PARIS),
        "summary": "Découverte : Acme, Relance; 30 min",
        "description": "Ordre du jour :\n1. vos relances\n2. démo",
        "location": "https://meet.example/acme",
        "organizer_email": "anne@seller.example",
        "organizer_name": "Anne Dupont",
        "attendee_email": "lea.martin@prospect.example",
        "attendee_name": "Léa Martin",
        "now": NOW,
    }
    arguments.update(changes)
    return build_invite(**arguments)


def event_of(data: bytes) -> Any:
    [event] = Calendar.from_ical(data).walk("VEVENT")
    return event


def test_the_invitation_is_a_request_with_a_confirmed_event() -> None:
    calendar = Calendar.from_ical(invite())

    assert calendar["METHOD"] == "REQUEST"
    assert calendar["PRODID"] == PRODID
    assert calendar["VERSION"] == "2.0"
    event = event_of(invite())
    assert event["UID"] == "meeting-42@seller.example"
    assert event["STATUS"] == "CONFIRMED"
    assert event["SEQUENCE"] == 0
    assert event["SUMMARY"] == "Découverte : Acme, Relance; 30 min"
    assert event["DESCRIPTION"] == "Ordre du jour :\n1. vos relances\n2. démo"
    assert event["LOCATION"] == "https://meet.example/acme"
    assert event.decoded("DTSTAMP") == NOW


def test_start_and_end_keep_their_zone_and_the_zone_is_defined() -> None:
    data = invite()
    calendar = Calendar.from_ical(data)
    event = event_of(data)

    assert b"DTSTART;TZID=Europe/Paris:20250331T100000" in data
    assert b"DTEND;TZID=Europe/Paris:20250331T103000" in data
    assert event.decoded("DTSTART") == datetime(2025, 3, 31, 8, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2025, 3, 31, 8, 30, tzinfo=UTC)
    assert [zone["TZID"] for zone in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]
    assert calendar.get_missing_tzids() == set()
    offsets = {
        (part.name, part["TZOFFSETTO"].td) for part in calendar.walk("VTIMEZONE")[0].subcomponents
    }
    assert ("DAYLIGHT", timedelta(hours=2)) in offsets
    assert ("STANDARD", timedelta(hours=1)) in offsets


def test_organizer_and_attendee_are_mail_addresses_with_names() -> None:
    event = event_of(invite())

    assert event["ORGANIZER"] == "mailto:anne@seller.example"
    assert event["ORGANIZER"].params["CN"] == "Anne Dupont"
    attendee = event["ATTENDEE"]
    assert attendee == "mailto:lea.martin@prospect.example"
    assert dict(attendee.params) == {
        "CN": "Léa Martin",
        "ROLE": "REQ-PARTICIPANT",
        "PARTSTAT": "NEEDS-ACTION",
        "RSVP": "TRUE",
    }


def test_a_display_reminder_rings_an_hour_before() -> None:
    [alarm] = event_of(invite()).walk("VALARM")

    assert alarm["ACTION"] == "DISPLAY"
    assert alarm.decoded("TRIGGER") == timedelta(hours=-1)
    assert alarm["DESCRIPTION"] == "Reminder: Découverte : Acme, Relance; 30 min"


def test_the_reminder_can_be_moved_or_left_out() -> None:
    [alarm] = event_of(invite(alarm_before=timedelta(minutes=10))).walk("VALARM")

    assert alarm.decoded("TRIGGER") == timedelta(minutes=-10)
    assert event_of(invite(alarm_before=None)).walk("VALARM") == []


def test_a_new_version_of_the_invitation_raises_its_sequence() -> None:
    assert event_of(invite(sequence=3))["SEQUENCE"] == 3


def test_utc_times_are_written_in_utc_without_a_zone() -> None:
    data = invite(
        starts_at=datetime(2025, 3, 31, 8, 0, tzinfo=UTC),
        ends_at=datetime(2025, 3, 31, 11, 0, tzinfo=timezone(timedelta(hours=2))),
    )

    assert b"DTSTART:20250331T080000Z" in data
    assert b"DTEND:20250331T090000Z" in data
    assert Calendar.from_ical(data).walk("VTIMEZONE") == []


def test_the_output_depends_only_on_the_arguments() -> None:
    assert invite() == invite()


def test_naive_times_and_empty_meetings_are_refused() -> None:
    with pytest.raises(ValueError, match="starts_at must be timezone-aware"):
        invite(starts_at=datetime(2025, 3, 31, 10, 0))
    with pytest.raises(ValueError, match="must be after starts_at"):
        invite(ends_at=datetime(2025, 3, 31, 10, 0, tzinfo=PARIS))


def test_a_cancellation_withdraws_the_same_event() -> None:
    data = build_cancel(
        uid="meeting-42@seller.example",
        starts_at=datetime(2025, 3, 31, 10, 0, tzinfo=PARIS),
        ends_at=datetime(2025, 3, 31, 10, 30, tzinfo=PARIS),
        summary="Découverte",
        organizer_email="anne@seller.example",
        organizer_name="Anne Dupont",
        attendee_email="lea.martin@prospect.example",
        attendee_name="Léa Martin",
        now=NOW,
    )
    calendar = Calendar.from_ical(data)
    event = event_of(data)

    assert calendar["METHOD"] == "CANCEL"
    assert event["UID"] == "meeting-42@seller.example"
    assert event["STATUS"] == "CANCELLED"
    assert event["SEQUENCE"] == 1
    assert event.walk("VALARM") == []
    assert dict(event["ATTENDEE"].params) == {"CN": "Léa Martin", "ROLE": "REQ-PARTICIPANT"}
    assert [zone["TZID"] for zone in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]


def test_the_invitation_reaches_the_mailbox_as_a_calendar_request(tmp_path: Path) -> None:
    data = invite()
    outbox = OutboxSender(tmp_path, clock=lambda: NOW, fsync=False)
    outbox.send(
        OutboundEmail(
            touchpoint_id="tp9",
            enrollment_id="en1",
            sequence_id="saas-trial",
            step_id="meeting_confirmation",
            to_email="lea.martin@prospect.example",
            from_email="anne@seller.example",
            subject="Invitation : Découverte",
            text="À lundi !",
            message_id="<tp-tp9@seller.example>",
            attachments=[invite_attachment(data)],
        )
    )
    message = BytesParser(policy=policy.default).parsebytes((tmp_path / "tp9.eml").read_bytes())

    [attachment] = [part for part in message.walk() if part.get_filename() == "invite.ics"]
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_param("charset") == "UTF-8"
    assert Calendar.from_ical(attachment.get_payload(decode=True))["METHOD"] == "REQUEST"
