"""Bookings from scheduling tools, on SQLite and PostgreSQL: a booking stops the chase and
confirms with an invitation; a reschedule updates it (same UID, higher SEQUENCE); a
cancellation withdraws it and pauses the sequence for a human to decide. Then the same,
end to end over HTTP with Calendly's and Cal.com's webhooks and the fake SendGrid."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest
from sqlalchemy import select
from store_support import (
    T0,
    Project,
    RecordingSender,
    dispatcher_for,
    enrollment_row,
    step,
    tick,
    touch_rows,
    write_project,
)
from test_calcom import booking_event, post_calcom
from test_calendly import invitee_event, post_calendly
from web_support import MONDAY, WebProject

from integrations import calendly
from relance.bookings import BookingEvent, BookingKind, BookingResult, MeetingOutcome
from relance.claims import next_due
from relance.engine import (
    EnrollmentState,
    Send,
    Signal,
    Skip,
    Status,
    TouchState,
    Wait,
    next_action,
)
from relance.enrollments import enroll
from relance.errors import InputError
from relance.meetings import apply_booking_event
from relance.outbound import OutboundEmail
from relance.prospect import Prospect
from relance.signals import record_signal
from relance.spec import Channel
from relance.store import Store
from relance.tables import events, meetings, tasks

ADA = "ada@example.com"
MEETING = T0 + timedelta(days=2, hours=2)
"""Wednesday 4 March 2026, 10:00 UTC (the test sequence runs in UTC)."""
LATER = T0 + timedelta(days=3, hours=2)
"""Thursday 5 March 2026, 10:00 UTC."""


def chase(root: Path, **fields: Any) -> Project:
    """email now, call two days later, email three days after that, and a confirmation."""
    return write_project(
        root,
        [
            step("hello", "email", "0d"),
            step("ring", "call", "2d"),
            step("follow-up", "email", "3d"),
            step("confirm", "meeting_confirmation", remind_before="1h"),
        ],
        **fields,
    )


def booking(
    kind: BookingKind = BookingKind.CREATED,
    booking_id: str = "bk-1",
    starts_at: datetime = MEETING,
    *,
    provider: str = "calcom",
    email: str = ADA,
    **extra: Any,
) -> BookingEvent:
    times: dict[str, Any] = {}
    if kind in (BookingKind.CREATED, BookingKind.RESCHEDULED):
        times = {"starts_at": starts_at, "ends_at": starts_at + timedelta(minutes=30)}
    return BookingEvent(
        kind, provider=provider, external_id=booking_id, email=email, **times, **extra
    )


@dataclass
class Desk:
    """A store with Ada enrolled in the chase, and a dispatcher sending to a recorder."""

    store: Store
    project: Project
    sender: RecordingSender
    enrollment_id: int

    def apply(self, event: BookingEvent, now: datetime) -> MeetingOutcome:
        return apply_booking_event(self.store, event, now=now)

    def tick(self, now: datetime) -> list[OutboundEmail]:
        """Dispatch at ``now``; the emails sent by this tick."""
        before = len(self.sender.sent)
        tick(self.store, dispatcher_for(self.store, self.project, self.sender), now)
        return self.sender.sent[before:]

    def meeting(self) -> Any:
        with self.store.reading() as connection:
            return connection.execute(select(meetings)).one()

    def booking_touches(self) -> dict[str, tuple[str, str | None, datetime]]:
        """key -> (status, reason, due_at) of the booking's touches."""
        return {
            row.key.replace(f"-{row.meeting_id}", "-M"): (row.status, row.reason, row.due_at)
            for row in touch_rows(self.store, self.enrollment_id)
            if row.meeting_id is not None
        }

    @property
    def uid(self) -> str:
        """The invitation's UID: the same in every mail about the meeting."""
        return f"meeting-{self.meeting().id}@relance.local"

    def chase_touches(self) -> dict[str, tuple[str, str | None]]:
        return {
            row.key: (row.status, row.reason)
            for row in touch_rows(self.store, self.enrollment_id)
            if row.meeting_id is None
        }

    def tasks(self) -> list[Any]:
        with self.store.reading() as connection:
            return list(connection.execute(select(tasks).order_by(tasks.c.id)))


@pytest.fixture
def desk(store: Store, tmp_path: Path) -> Desk:
    project = chase(tmp_path)
    result = enroll(store, project.sequence, [Prospect(email=ADA)], start=T0, now=T0)
    return Desk(store, project, RecordingSender(), result.enrolled[0][1])


def invitation(message: OutboundEmail) -> tuple[str, str, int, datetime, str]:
    """(METHOD, UID, SEQUENCE, DTSTART in UTC, content type) of the message's invite.ics."""
    (attachment,) = message.attachments
    calendar = icalendar.Calendar.from_ical(attachment.content)
    (event,) = calendar.walk("VEVENT")
    starts_at = event.decoded("dtstart").astimezone(UTC)
    return (
        str(calendar["method"]),
        str(event["uid"]),
        int(event["sequence"]),
        starts_at,
        attachment.content_type,
    )


# --- created ----------------------------------------------------------------------------------


def test_a_booking_stops_the_chase_and_is_recorded_once(desk: Desk) -> None:
    assert [m.step_id for m in desk.tick(T0)] == ["hello"]
    now = T0 + timedelta(hours=1)

    booked = desk.apply(booking(), now)

    assert (booked.result, booked.meeting_id, booked.enrollment_ids) == (
        BookingResult.BOOKED,
        desk.meeting().id,
        [desk.enrollment_id],
    )
    assert booked.signal == "booked"
    meeting = desk.meeting()
    assert (meeting.source, meeting.external_id, meeting.ical_sequence) == (
        "calcom",
        "calcom:bk-1",
        0,
    )
    assert desk.apply(booking(), now + timedelta(minutes=1)).result is BookingResult.DUPLICATE
    (confirmation,) = desk.tick(now)
    assert invitation(confirmation)[:4] == ("REQUEST", desk.uid, 0, MEETING)
    assert desk.chase_touches() == {
        "hello": ("sent", None),
        "ring": ("skipped", "booked"),
        "follow-up": ("skipped", "booked"),
    }


def test_bookings_from_people_relance_does_not_follow_change_nothing(desk: Desk) -> None:
    stranger = desk.apply(booking(email="stranger@example.com"), T0)
    assert stranger == MeetingOutcome(BookingResult.UNKNOWN_PROSPECT)
    assert desk.apply(booking(), T0).result is BookingResult.BOOKED
    second = desk.apply(booking(booking_id="bk-2", starts_at=LATER), T0)
    assert second == MeetingOutcome(BookingResult.NOT_FOLLOWED)
    for kind in (BookingKind.CANCELLED, BookingKind.SUPERSEDED):
        unknown = desk.apply(booking(kind, booking_id="bk-9"), T0)
        assert unknown == MeetingOutcome(BookingResult.UNKNOWN_BOOKING)
    with desk.store.reading() as connection:
        assert len(connection.execute(select(meetings)).all()) == 1
        assert len(connection.execute(select(events)).all()) == 1  # the booking


def test_a_sequence_without_confirmation_still_keeps_the_meeting(
    store: Store, tmp_path: Path
) -> None:
    project = write_project(tmp_path, [step("hello", "email"), step("ring", "call", "2d")])
    enroll(store, project.sequence, [Prospect(email=ADA)], start=T0, now=T0)

    booked = apply_booking_event(store, booking(), now=T0)
    cancelled = apply_booking_event(store, booking(BookingKind.CANCELLED), now=T0)

    assert booked.result is BookingResult.BOOKED and booked.meeting_id is not None
    assert cancelled.result is BookingResult.CANCELLED and cancelled.task_id is not None
    assert [r.key for r in touch_rows(store) if r.meeting_id is not None] == []


# --- cancelled ----------------------------------------------------------------------------------


def test_a_cancellation_pauses_the_sequence_for_a_human_and_nothing_restarts_alone(
    desk: Desk,
) -> None:
    desk.tick(T0)
    desk.apply(booking(), T0 + timedelta(hours=1))
    now = T0 + timedelta(hours=2)

    cancelled = desk.apply(
        booking(BookingKind.CANCELLED, reason="  Budget\n frozen ", cancelled_by="invitee"), now
    )

    assert cancelled.result is BookingResult.CANCELLED and cancelled.signal == "booking_cancelled"
    assert (desk.meeting().status, desk.meeting().ical_sequence) == ("cancelled", 0)
    enrollment = enrollment_row(desk.store, desk.enrollment_id)
    assert (enrollment.status, enrollment.reason) == ("paused", "meeting cancelled")
    # The confirmation had not gone out: nothing to withdraw.
    assert {k: v[:2] for k, v in desk.booking_touches().items()} == {
        "confirm@meeting-M": ("skipped", "meeting cancelled"),
        "confirm@reminder-M": ("skipped", "meeting cancelled"),
    }
    # What the booking skipped is held again, for the day someone resumes.
    assert desk.chase_touches() == {
        "hello": ("sent", None),
        "ring": ("planned", None),
        "follow-up": ("planned", None),
    }
    (task,) = desk.tasks()
    assert (task.id, task.kind, task.title, task.status, task.due_at, task.enrollment_id) == (
        cancelled.task_id,
        "call",
        "Meeting cancelled: re-book",
        "open",
        now,
        desk.enrollment_id,
    )
    assert task.body == (
        "The meeting of Wed 2026-03-04 10:00 (UTC), booked through Cal.com, was cancelled by "
        "ada@example.com.\n"
        "Reason given: Budget frozen\n"
        "\n"
        "The sequence demo is paused: nothing goes out by itself.\n"
        "Call to find a new time, then log this task as booked with the new time.\n"
        "No new meeting in sight? `relance resume ada@example.com` picks the chase up again "
        "from that day; `relance stop ada@example.com` ends it.\n"
    )
    for day in range(1, 15):
        assert desk.tick(T0 + timedelta(days=day)) == []
    assert len(desk.tasks()) == 1
    assert next_due(desk.store) is None

    resumed_at = T0 + timedelta(days=15)
    record_signal(desk.store, ADA, Signal.RESUMED, now=resumed_at)
    due = next_due(desk.store)
    assert due is not None and due > resumed_at  # re-planned from the day it resumed
    desk.tick(due)
    assert [t.title for t in desk.tasks()] == ["Meeting cancelled: re-book", "objective of ring"]


def test_a_cancellation_after_the_invitation_withdraws_it_even_though_the_sequence_paused(
    desk: Desk,
) -> None:
    booked_at = T0 + timedelta(hours=1)
    desk.apply(booking(), booked_at)
    desk.tick(booked_at)
    now = T0 + timedelta(hours=3)

    assert desk.apply(booking(BookingKind.CANCELLED), now).result is BookingResult.CANCELLED
    assert desk.apply(booking(BookingKind.CANCELLED), now).result is BookingResult.DUPLICATE

    assert desk.meeting().ical_sequence == 1
    assert enrollment_row(desk.store, desk.enrollment_id).status == "paused"
    (notice,) = desk.tick(now)
    assert invitation(notice) == (
        "CANCEL",
        desk.uid,
        1,
        MEETING,
        "text/calendar; method=CANCEL; charset=UTF-8",
    )
    assert desk.tick(MEETING - timedelta(hours=1)) == []  # no reminder of a cancelled meeting
    assert desk.booking_touches()["confirm@cancel-M"][0] == "sent"
    assert desk.booking_touches()["confirm@reminder-M"][:2] == ("skipped", "meeting cancelled")


def test_a_cancellation_notice_goes_whatever_the_enrollment_except_to_a_suppressed_one() -> None:
    notice = TouchState(Channel.MEETING_CONFIRMATION, T0, booking=True, withdrawal=True)
    for status in Status:
        state = EnrollmentState(status, "meeting cancelled", None, None)
        assert next_action(notice, state, T0, lambda t: t) == Send()
        assert next_action(notice, state, T0 - timedelta(minutes=1), lambda t: t) == Wait(
            T0, "not due yet"
        )
    suppressed = EnrollmentState(Status.PAUSED, None, None, "bounced")
    assert next_action(notice, suppressed, T0, lambda t: t) == Skip("suppressed: bounced")
    confirmation = TouchState(Channel.MEETING_CONFIRMATION, T0, booking=True)
    paused = EnrollmentState(Status.PAUSED, "meeting cancelled", None, None)
    assert next_action(confirmation, paused, T0, lambda t: t) == Skip(
        "meeting no longer booked (paused)"
    )


def test_booking_again_after_a_cancellation_confirms_the_new_meeting(desk: Desk) -> None:
    desk.apply(booking(), T0)
    desk.apply(booking(BookingKind.CANCELLED), T0 + timedelta(hours=1))

    again = desk.apply(booking(booking_id="bk-2", starts_at=LATER), T0 + timedelta(hours=2))

    assert again.result is BookingResult.BOOKED
    assert enrollment_row(desk.store, desk.enrollment_id).status == "booked"
    chase = {r.reason for r in touch_rows(desk.store) if r.meeting_id is None}
    assert chase == {"booked"}
    (confirmation,) = desk.tick(T0 + timedelta(hours=2))
    second = f"meeting-{again.meeting_id}@relance.local"
    assert invitation(confirmation)[:4] == ("REQUEST", second, 0, LATER)


# --- rescheduled ------------------------------------------------------------------------------


def test_a_reschedule_sends_an_updated_invitation_and_reminds_at_the_new_time(desk: Desk) -> None:
    booked_at = T0 + timedelta(hours=1)
    desk.apply(booking(), booked_at)
    desk.tick(booked_at)
    now = T0 + timedelta(hours=3)
    moved = booking(BookingKind.RESCHEDULED, "bk-2", LATER, previous_external_id="bk-1")

    outcome = desk.apply(moved, now)

    assert (outcome.result, outcome.meeting_id, outcome.signal) == (
        BookingResult.RESCHEDULED,
        desk.meeting().id,
        "booking_rescheduled",
    )
    assert desk.apply(moved, now).result is BookingResult.DUPLICATE
    meeting = desk.meeting()
    assert (meeting.external_id, meeting.starts_at, meeting.ical_sequence) == (
        "calcom:bk-2",
        LATER,
        1,
    )
    assert desk.booking_touches() == {
        "confirm@meeting-M": ("sent", None, booked_at),
        "confirm@reminder-M": ("skipped", "meeting rescheduled", MEETING - timedelta(hours=1)),
        "confirm@update-M.1": ("planned", None, now),
        "confirm@reminder-M.1": ("planned", None, LATER - timedelta(hours=1)),
    }
    (update,) = desk.tick(now)
    assert invitation(update)[:4] == ("REQUEST", desk.uid, 1, LATER)
    assert desk.tick(MEETING - timedelta(hours=1)) == []
    (reminder,) = desk.tick(LATER - timedelta(hours=1))
    assert invitation(reminder)[:4] == ("REQUEST", desk.uid, 1, LATER)

    # The old booking lives on under its new id: cancelling the old one changes nothing.
    old = desk.apply(booking(BookingKind.CANCELLED, "bk-1"), now)
    assert old.result is BookingResult.ALREADY_RESCHEDULED
    assert desk.apply(booking(BookingKind.CANCELLED, "bk-2"), now).result is BookingResult.CANCELLED
    (notice,) = desk.tick(now)
    assert invitation(notice)[:3] == ("CANCEL", desk.uid, 2)


def test_a_reschedule_before_the_confirmation_went_out_only_moves_it(desk: Desk) -> None:
    desk.apply(booking(), T0)
    same_id = booking(BookingKind.RESCHEDULED, "bk-1", LATER, previous_external_id="bk-1")

    assert desk.apply(same_id, T0).result is BookingResult.RESCHEDULED
    assert desk.apply(same_id, T0).result is BookingResult.DUPLICATE

    assert {k: v[0] for k, v in desk.booking_touches().items()} == {
        "confirm@meeting-M": "planned",
        "confirm@reminder-M": "skipped",
        "confirm@reminder-M.1": "planned",
    }
    (confirmation,) = desk.tick(T0)
    assert invitation(confirmation)[:4] == ("REQUEST", desk.uid, 1, LATER)


@pytest.mark.parametrize("new_booking_first", [False, True])
def test_calendly_reschedules_in_either_order_move_the_meeting_once(
    desk: Desk, new_booking_first: bool
) -> None:
    """Calendly sends the old invitee's cancellation (rescheduled) and the new invitee's
    creation (old_invitee) in no promised order, and may send each twice."""
    booked_at = T0 + timedelta(hours=1)
    desk.apply(booking(booking_id="inv-1", provider="calendly"), booked_at)
    desk.tick(booked_at)
    now = T0 + timedelta(hours=3)
    superseded = booking(BookingKind.SUPERSEDED, "inv-1", provider="calendly", replaced_by="inv-2")
    created = booking(
        BookingKind.RESCHEDULED, "inv-2", LATER, provider="calendly", previous_external_id="inv-1"
    )
    order = [created, superseded] if new_booking_first else [superseded, created]

    results = [desk.apply(event, now).result for event in order + order]

    if new_booking_first:
        assert results == [
            BookingResult.RESCHEDULED,
            BookingResult.ALREADY_RESCHEDULED,
            BookingResult.DUPLICATE,
            BookingResult.ALREADY_RESCHEDULED,
        ]
    else:
        assert results == [
            BookingResult.AWAITING_NEW_TIME,
            BookingResult.RESCHEDULED,
            BookingResult.DUPLICATE,
            BookingResult.DUPLICATE,
        ]
    meeting = desk.meeting()
    assert (meeting.status, meeting.external_id, meeting.starts_at, meeting.ical_sequence) == (
        "booked",
        "calendly:inv-2",
        LATER,
        1,
    )
    assert {k: v[:2] for k, v in desk.booking_touches().items()} == {
        "confirm@meeting-M": ("sent", None),
        "confirm@reminder-M": ("skipped", "meeting rescheduled"),
        "confirm@update-M.1": ("planned", None),
        "confirm@reminder-M.1": ("planned", None),
    }
    assert enrollment_row(desk.store, desk.enrollment_id).status == "booked"


def test_a_reschedule_of_a_booking_relance_never_saw_is_a_booking(desk: Desk) -> None:
    moved = booking(BookingKind.RESCHEDULED, "bk-2", LATER, previous_external_id="bk-0")
    assert desk.apply(moved, T0).result is BookingResult.BOOKED
    assert desk.apply(moved, T0).result is BookingResult.DUPLICATE
    assert (desk.meeting().external_id, desk.meeting().starts_at) == ("calcom:bk-2", LATER)


# --- the event itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"email": "not an address"}, "the invitee's email address"),
        ({"external_id": ""}, "external_id: expected a booking id"),
        ({"starts_at": None}, "needs its start and end times"),
        ({"starts_at": MEETING.replace(tzinfo=None)}, "with a UTC offset"),
        ({"ends_at": MEETING}, "ends .* before it starts"),
        ({"occurred_at": datetime(1969, 12, 31, tzinfo=UTC)}, "between 1970 and 2999"),
    ],
)
def test_a_booking_event_refuses_what_it_cannot_apply(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "provider": "calcom",
        "external_id": "bk-1",
        "email": ADA,
        "starts_at": MEETING,
        "ends_at": MEETING + timedelta(minutes=30),
    }
    with pytest.raises(InputError, match=message):
        BookingEvent(BookingKind.CREATED, **{**values, **fields})


# --- end to end, over HTTP ----------------------------------------------------------------------

CLAIRE = "claire.martin@example.com"
THURSDAY_10_PARIS = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
FRIDAY_15_PARIS = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Provider:
    """How a scheduling tool tells Relance about a booking, over real HTTP."""

    name: str
    book: Callable[[WebProject, str, datetime], Any]
    cancel: Callable[[WebProject, str, datetime], Any]
    reschedule: Callable[[WebProject, str, str, datetime, datetime], list[Any]]


def _calendly_reschedule(
    web: WebProject, old: str, new: str, starts_at: datetime, old_starts: datetime
) -> list[Any]:
    return [
        post_calendly(
            web,
            invitee_event(
                calendly.CANCELED,
                email=CLAIRE,
                invitee=old,
                starts_at=old_starts,
                rescheduled=True,
                new_invitee=new,
            ),
        ),
        post_calendly(
            web, invitee_event(email=CLAIRE, invitee=new, starts_at=starts_at, old_invitee=old)
        ),
    ]


PROVIDERS = [
    Provider(
        "calendly",
        book=lambda web, uid, at: post_calendly(
            web, invitee_event(email=CLAIRE, invitee=uid, starts_at=at)
        ),
        cancel=lambda web, uid, at: post_calendly(
            web,
            invitee_event(
                calendly.CANCELED, email=CLAIRE, invitee=uid, starts_at=at, reason="Conflit"
            ),
        ),
        reschedule=_calendly_reschedule,
    ),
    Provider(
        "calcom",
        book=lambda web, uid, at: post_calcom(
            web, booking_event(email=CLAIRE, uid=uid, starts_at=at)
        ),
        cancel=lambda web, uid, at: post_calcom(
            web, booking_event("BOOKING_CANCELLED", email=CLAIRE, uid=uid, starts_at=at)
        ),
        reschedule=lambda web, old, new, at, _: [
            post_calcom(
                web,
                booking_event(
                    "BOOKING_RESCHEDULED", email=CLAIRE, uid=new, reschedule_uid=old, starts_at=at
                ),
            )
        ],
    ),
]


def decoded_invite(body: dict[str, Any]) -> tuple[str, str, int, datetime, str]:
    """(METHOD, UID, SEQUENCE, DTSTART in UTC, STATUS) of a Mail Send body's invite.ics."""
    (attachment,) = body["attachments"]
    assert attachment["filename"] == "invite.ics"
    calendar = icalendar.Calendar.from_ical(base64.b64decode(attachment["content"]))
    (event,) = calendar.walk("VEVENT")
    return (
        str(calendar["method"]),
        str(event["uid"]),
        int(event["sequence"]),
        event.decoded("dtstart").astimezone(UTC),
        str(event["status"]),
    )


def run_until(web: WebProject, until: datetime) -> None:
    """Tick at every due time up to ``until``, as the interval schedule would."""
    while (due := next_due(web.store)) is not None and due <= until:
        web.clock.now = max(web.clock.now, due)
        web.tick()
    web.clock.now = max(web.clock.now, until)


def booked_after_the_first_email(web: WebProject, provider: Provider) -> list[dict[str, Any]]:
    """Enroll Claire, send the first email, book Thursday 10:00 Paris, send the confirmation."""
    web.enroll("outbound-2w", [Prospect(email=CLAIRE, fields={"industry": "packaging"})])
    web.tick()  # Monday 09:00 Paris: the intro call is a task, no email yet
    web.advance(days=1)
    web.tick()  # Tuesday 09:00 Paris: the benchmark email
    assert [b["subject"] for b in web.sent_to(CLAIRE)] == [web.sent_to(CLAIRE)[0]["subject"]]
    web.advance(hours=2)
    response = provider.book(web, "first", THURSDAY_10_PARIS)
    assert (response.status_code, response.json()["outcome"]) == (200, "booked")
    web.tick()
    return web.sent_to(CLAIRE)


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_booking_stops_the_chase_and_confirms_with_an_invitation(
    web: WebProject, provider: Provider
) -> None:
    sent = booked_after_the_first_email(web, provider)

    assert len(sent) == 2
    confirmation = sent[1]
    assert confirmation["subject"] == "Confirmé : notre rendez-vous du jeudi 5 mars à 10h00"
    assert confirmation["attachments"][0]["type"] == "text/calendar; method=REQUEST; charset=UTF-8"
    assert decoded_invite(confirmation) == (
        "REQUEST",
        "meeting-1@relance.local",
        0,
        THURSDAY_10_PARIS,
        "CONFIRMED",
    )
    reminder_at = THURSDAY_10_PARIS - timedelta(days=1)
    run_until(web, reminder_at - timedelta(minutes=1))
    assert len(web.sent_to(CLAIRE)) == 2  # no chasing step, no early reminder
    run_until(web, reminder_at)
    reminder = web.sent_to(CLAIRE)[2]
    assert reminder["subject"] == "Rappel : notre rendez-vous du jeudi 5 mars à 10h00"
    assert decoded_invite(reminder)[:4] == (
        "REQUEST",
        "meeting-1@relance.local",
        0,
        THURSDAY_10_PARIS,
    )
    run_until(web, MONDAY + timedelta(weeks=4))
    assert len(web.sent_to(CLAIRE)) == 3
    with web.store.reading() as connection:
        titles = list(connection.execute(select(tasks.c.title)).scalars())
    assert len(titles) == 1  # the intro call only: the follow-up calls were never due


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_cancelled_meeting_is_withdrawn_and_the_chase_waits_for_a_human(
    web: WebProject, provider: Provider
) -> None:
    booked_after_the_first_email(web, provider)
    web.advance(hours=20)  # Wednesday 08:00 UTC

    response = provider.cancel(web, "first", THURSDAY_10_PARIS)
    assert response.json() == {"outcome": "cancelled", "prospect_id": 1, "meeting_id": 1}
    web.tick()

    notice = web.sent_to(CLAIRE)[2]
    assert notice["subject"] == "Annulé : notre rendez-vous du jeudi 5 mars à 10h00"
    assert notice["attachments"][0]["type"] == "text/calendar; method=CANCEL; charset=UTF-8"
    assert decoded_invite(notice) == (
        "CANCEL",
        "meeting-1@relance.local",
        1,
        THURSDAY_10_PARIS,
        "CANCELLED",
    )
    run_until(web, MONDAY + timedelta(weeks=4))
    assert len(web.sent_to(CLAIRE)) == 3  # no reminder, and the chase did not restart
    with web.store.reading() as connection:
        open_tasks = list(connection.execute(select(tasks.c.title).where(tasks.c.status == "open")))
    assert [t.title for t in open_tasks][-1] == "Meeting cancelled: re-book"
    assert enrollment_row(web.store, 1).status == "paused"


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
def test_a_rescheduled_meeting_is_updated_and_reminded_at_its_new_time(
    web: WebProject, provider: Provider
) -> None:
    booked_after_the_first_email(web, provider)
    web.advance(hours=2)

    responses = provider.reschedule(web, "first", "second", FRIDAY_15_PARIS, THURSDAY_10_PARIS)
    assert [r.json()["outcome"] for r in responses][-1] == "rescheduled"
    web.tick()

    update = web.sent_to(CLAIRE)[2]
    assert update["subject"] == "Nouvel horaire : notre rendez-vous du vendredi 6 mars à 15h00"
    assert decoded_invite(update) == (
        "REQUEST",
        "meeting-1@relance.local",
        1,
        FRIDAY_15_PARIS,
        "CONFIRMED",
    )
    new_reminder = FRIDAY_15_PARIS - timedelta(days=1)
    run_until(web, new_reminder - timedelta(minutes=1))
    assert len(web.sent_to(CLAIRE)) == 3  # the old reminder (Wednesday 10:00) never went
    run_until(web, new_reminder)
    reminder = web.sent_to(CLAIRE)[3]
    assert reminder["subject"] == "Rappel : notre rendez-vous du vendredi 6 mars à 15h00"
    assert decoded_invite(reminder)[:4] == (
        "REQUEST",
        "meeting-1@relance.local",
        1,
        FRIDAY_15_PARIS,
    )
    run_until(web, MONDAY + timedelta(weeks=4))
    assert len(web.sent_to(CLAIRE)) == 4
