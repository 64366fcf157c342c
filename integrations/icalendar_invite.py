"""Meeting invitations as iCalendar (RFC 5545 / iTIP RFC 5546) files, with `icalendar`.

`build_invite` makes a `METHOD:REQUEST` calendar that mail clients show with accept and
decline buttons; `build_cancel` withdraws it (`METHOD:CANCEL`, same UID, higher SEQUENCE).
Times in a named zone (`zoneinfo.ZoneInfo`) are written with their TZID and the VTIMEZONE
that defines it; other aware times are written in UTC. The output depends only on the
arguments: `now` is the DTSTAMP.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, vCalAddress

from relance.outbound import Attachment

PRODID = "-//Relance//Relance meeting invitation//EN"
ALARM_BEFORE = timedelta(hours=1)


def build_invite(
    *,
    uid: str,
    starts_at: datetime,
    ends_at: datetime,
    summary: str,
    description: str,
    location: str,
    organizer_email: str,
    organizer_name: str,
    attendee_email: str,
    attendee_name: str,
    now: datetime,
    sequence: int = 0,
    method: str = "REQUEST",
    alarm_before: timedelta | None = ALARM_BEFORE,
) -> bytes:
    """An invitation for one attendee, with a display reminder `alarm_before` the start."""
    return _calendar(
        method=method,
        status="CONFIRMED",
        uid=uid,
        starts_at=starts_at,
        ends_at=ends_at,
        summary=summary,
        description=description,
        location=location,
        organizer_email=organizer_email,
        organizer_name=organizer_name,
        attendee_email=attendee_email,
        attendee_name=attendee_name,
        now=now,
        sequence=sequence,
        alarm_before=alarm_before,
    )


def build_cancel(
    *,
    uid: str,
    starts_at: datetime,
    ends_at: datetime,
    summary: str,
    organizer_email: str,
    organizer_name: str,
    attendee_email: str,
    attendee_name: str,
    now: datetime,
    sequence: int = 1,
    description: str = "",
    location: str = "",
) -> bytes:
    """The cancellation of the invitation `uid`; `sequence` must exceed the invitation's."""
    return _calendar(
        method="CANCEL",
        status="CANCELLED",
        uid=uid,
        starts_at=starts_at,
        ends_at=ends_at,
        summary=summary,
        description=description,
        location=location,
        organizer_email=organizer_email,
        organizer_name=organizer_name,
        attendee_email=attendee_email,
        attendee_name=attendee_name,
        now=now,
        sequence=sequence,
        alarm_before=None,
    )


def invite_attachment(
    ics: bytes, *, method: str = "REQUEST", filename: str = "invite.ics"
) -> Attachment:
    """The calendar as an e-mail attachment that mail clients recognise as an invitation
    (a NUL, which no calendar text may hold, is dropped)."""
    return Attachment(
        filename=filename,
        content_type=f"text/calendar; method={method}; charset=UTF-8",
        content=ics.replace(b"\x00", b""),
    )


def _calendar(
    *,
    method: str,
    status: str,
    uid: str,
    starts_at: datetime,
    ends_at: datetime,
    summary: str,
    description: str,
    location: str,
    organizer_email: str,
    organizer_name: str,
    attendee_email: str,
    attendee_name: str,
    now: datetime,
    sequence: int,
    alarm_before: timedelta | None,
) -> bytes:
    start, end = _zoned(starts_at, "starts_at"), _zoned(ends_at, "ends_at")
    if end <= start:
        raise ValueError(f"ends_at ({ends_at}) must be after starts_at ({starts_at})")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)

    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", _zoned(now, "now").astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("sequence", sequence)
    event.add("status", status)
    event.add("summary", summary)
    if description:
        event.add("description", description)
    if location:
        event.add("location", location)
    event.add(
        "organizer", vCalAddress.new(organizer_email, cn=organizer_name or None), encode=False
    )
    asks_reply = method == "REQUEST"
    attendee = vCalAddress.new(
        attendee_email,
        cn=attendee_name or None,
        role="REQ-PARTICIPANT",
        partstat="NEEDS-ACTION" if asks_reply else None,
        rsvp=True if asks_reply else None,
    )
    event.add("attendee", attendee, encode=False)
    if alarm_before is not None:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"Reminder: {summary}")
        alarm.add("trigger", -alarm_before)
        event.add_component(alarm)
    calendar.add_component(event)
    # A VTIMEZONE covering a year either side keeps the file small and exact.
    calendar.add_missing_timezones(
        first_date=date(start.year - 1, 1, 1), last_date=date(end.year + 2, 1, 1)
    )
    data: bytes = calendar.to_ical()
    return data


def _zoned(moment: datetime, name: str) -> datetime:
    """`moment` if it is in a named zone, else the same instant in UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    if isinstance(moment.tzinfo, ZoneInfo) and moment.tzinfo.key != "UTC":
        return moment
    return moment.astimezone(UTC)
