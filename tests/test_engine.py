"""The pure decisions (``next_action``, ``apply_signal``) and, driven through the real store
and dispatcher, the promise that pause, resume, snooze and replies never send a step twice
nor skip one."""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from store_support import (
    BUSINESS_HOURS,
    T0,
    Clock,
    RecordingSender,
    dispatcher_for,
    enrollment_row,
    fresh_sqlite,
    run_until_idle,
    step,
    tick,
    touch_rows,
    write_project,
)

from relance.engine import (
    Action,
    EnrollmentState,
    Hold,
    Send,
    Signal,
    Skip,
    Status,
    TouchState,
    Transition,
    Wait,
    apply_signal,
    next_action,
)
from relance.enrollments import enroll
from relance.errors import StateError
from relance.outbox import OutboxSender
from relance.prospect import Prospect
from relance.signals import record_signal
from relance.spec import Channel, Holidays, SendWindow
from relance.store import Store
from relance.tables import tasks, touchpoints
from relance.workdays import work_calendar

NOW = T0
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(hours=1)
OPENS = NOW + timedelta(hours=2)


def always_open(instant: datetime) -> datetime:
    return instant


def closed_until_opens(instant: datetime) -> datetime:
    """A window that opens two hours after NOW."""
    return max(instant, OPENS)


def decide(
    channel: Channel = Channel.EMAIL,
    *,
    due: datetime = EARLIER,
    booking: bool = False,
    status: Status = Status.ACTIVE,
    reason: str | None = None,
    snoozed: datetime | None = None,
    suppressed: str | None = None,
    window: Callable[[datetime], datetime] = always_open,
) -> Action:
    return next_action(
        TouchState(channel, due, booking),
        EnrollmentState(status, reason, snoozed, suppressed),
        NOW,
        window,
    )


EMAIL, CALL, REMINDER, CONFIRMATION = (
    Channel.EMAIL,
    Channel.CALL,
    Channel.REMINDER,
    Channel.MEETING_CONFIRMATION,
)

NEXT_ACTION_TABLE: list[tuple[str, dict[str, Any], Action]] = [
    ("due, active, open window", {}, Send()),
    ("due call", {"channel": CALL}, Send()),
    ("due reminder", {"channel": REMINDER}, Send()),
    ("not due yet", {"due": LATER}, Wait(LATER, "not due yet")),
    ("due exactly now", {"due": NOW}, Send()),
    (
        "outside the window",
        {"window": closed_until_opens},
        Wait(OPENS, "outside the send window"),
    ),
    (
        "snoozed",
        {"snoozed": NOW + timedelta(days=1)},
        Wait(NOW + timedelta(days=1), "snoozed"),
    ),
    (
        "snoozed into a closed window",
        {"snoozed": NOW + timedelta(minutes=30), "window": closed_until_opens},
        Wait(OPENS, "snoozed"),
    ),
    ("snooze over", {"snoozed": EARLIER}, Send()),
    ("paused by a reply", {"status": Status.PAUSED, "reason": "replied"}, Hold("paused: replied")),
    ("paused without reason", {"status": Status.PAUSED}, Hold("paused: paused")),
    ("paused, not due yet", {"status": Status.PAUSED, "due": LATER}, Hold("paused: paused")),
    ("paused call", {"channel": CALL, "status": Status.PAUSED}, Hold("paused: paused")),
    ("stopped", {"status": Status.STOPPED, "reason": "replied"}, Skip("stopped: replied")),
    ("completed", {"status": Status.COMPLETED}, Skip("completed: completed")),
    ("booked chase touch", {"status": Status.BOOKED}, Skip("booked")),
    ("booked chase call", {"channel": CALL, "status": Status.BOOKED}, Skip("booked")),
    ("suppressed email", {"suppressed": "bounced"}, Skip("suppressed: bounced")),
    (
        "suppressed email not due yet",
        {"suppressed": "unsubscribed", "due": LATER},
        Skip("suppressed: unsubscribed"),
    ),
    ("suppressed prospect's call", {"channel": CALL, "suppressed": "bounced"}, Send()),
    (
        "suppressed and paused email",
        {"suppressed": "bounced", "status": Status.PAUSED},
        Skip("suppressed: bounced"),
    ),
    (
        "confirmation of a booked meeting",
        {"channel": CONFIRMATION, "booking": True, "status": Status.BOOKED},
        Send(),
    ),
    (
        "confirmation is not held to the window",
        {
            "channel": CONFIRMATION,
            "booking": True,
            "status": Status.BOOKED,
            "window": closed_until_opens,
        },
        Send(),
    ),
    (
        "meeting reminder not due yet",
        {"channel": CONFIRMATION, "booking": True, "status": Status.BOOKED, "due": LATER},
        Wait(LATER, "not due yet"),
    ),
    (
        "confirmation to a suppressed address",
        {
            "channel": CONFIRMATION,
            "booking": True,
            "status": Status.BOOKED,
            "suppressed": "unsubscribed",
        },
        Skip("suppressed: unsubscribed"),
    ),
    (
        "confirmation after the booking stopped",
        {"channel": CONFIRMATION, "booking": True, "status": Status.STOPPED},
        Skip("meeting no longer booked (stopped)"),
    ),
    (
        "confirmation of an enrollment no longer booked",
        {"channel": CONFIRMATION, "booking": True, "status": Status.ACTIVE},
        Skip("meeting no longer booked (active)"),
    ),
]


@pytest.mark.parametrize(
    ("case", "given_state", "expected"),
    NEXT_ACTION_TABLE,
    ids=[case for case, _, _ in NEXT_ACTION_TABLE],
)
def test_next_action_table(case: str, given_state: dict[str, Any], expected: Action) -> None:
    assert decide(**given_state) == expected


def test_next_action_never_sends_what_it_must_not() -> None:
    """Every combination of status, booking, suppression, snooze, window and due time."""
    combinations = itertools.product(
        list(Status),
        [False, True],
        [None, "bounced"],
        [None, EARLIER, LATER],
        [always_open, closed_until_opens],
        [EARLIER, LATER],
        [EMAIL, CALL, CONFIRMATION],
    )
    seen: Counter[str] = Counter()
    for status, booking, suppressed, snoozed, window, due, channel in combinations:
        action = decide(
            channel,
            due=due,
            booking=booking,
            status=status,
            snoozed=snoozed,
            suppressed=suppressed,
            window=window,
        )
        seen[type(action).__name__] += 1
        mailed = channel in (EMAIL, CONFIRMATION)
        if isinstance(action, Send):
            assert due <= NOW
            assert not (mailed and suppressed)
            if booking:
                assert status is Status.BOOKED
            else:
                assert status is Status.ACTIVE
                assert window(NOW) == NOW
                assert snoozed is None or snoozed <= NOW
        elif isinstance(action, Wait):
            assert action.until > NOW
            assert status in (Status.ACTIVE, Status.BOOKED)
        elif isinstance(action, Hold):
            assert status is Status.PAUSED and not booking
        if status in (Status.STOPPED, Status.COMPLETED) or (mailed and suppressed):
            assert isinstance(action, Skip)
    assert set(seen) == {"Send", "Wait", "Hold", "Skip"}


WORK = work_calendar(
    "FR",
    Holidays(country=True),
    SendWindow.model_validate({"start": "09:00", "end": "17:30"}),
    "Europe/Paris",
)
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@given(
    now=instants,
    due_offset=st.integers(-10_000, 10_000),
    snooze_offset=st.none() | st.integers(-10_000, 10_000),
    status=st.sampled_from([Status.ACTIVE, Status.PAUSED]),
)
def test_next_action_waits_land_in_the_window(
    now: datetime, due_offset: int, snooze_offset: int | None, status: Status
) -> None:
    """With a real calendar: a touch is sent only inside the window, never before it is due
    or while snoozed, and every wait ends later, on an open slot when the window decided."""
    due = now + timedelta(minutes=due_offset)
    snoozed = None if snooze_offset is None else now + timedelta(minutes=snooze_offset)
    action = next_action(
        TouchState(EMAIL, due, booking=False),
        EnrollmentState(status, None, snoozed, None),
        now,
        WORK.next_slot,
    )
    if status is Status.PAUSED:
        assert isinstance(action, Hold)
    elif isinstance(action, Send):
        assert due <= now and WORK.next_slot(now) == now
        assert snoozed is None or snoozed <= now
    else:
        assert isinstance(action, Wait)
        assert action.until > now
        if action.reason != "not due yet":
            assert WORK.next_slot(action.until) == action.until
        if action.reason == "snoozed":
            assert snoozed is not None and action.until >= snoozed


# --- apply_signal -------------------------------------------------------------------------

LIVE_TABLE: list[tuple[Status, Signal, str, Transition]] = [
    (Status.ACTIVE, Signal.REPLIED, "pause", Transition(Status.PAUSED, "hold")),
    (Status.PAUSED, Signal.REPLIED, "pause", Transition(Status.PAUSED, "hold")),
    (Status.ACTIVE, Signal.REPLIED, "stop", Transition(Status.STOPPED, "skip")),
    (Status.PAUSED, Signal.REPLIED, "stop", Transition(Status.STOPPED, "skip")),
    (Status.ACTIVE, Signal.PAUSED, "pause", Transition(Status.PAUSED, "hold")),
    (Status.PAUSED, Signal.RESUMED, "pause", Transition(Status.ACTIVE, "replan")),
    (Status.ACTIVE, Signal.STOPPED, "pause", Transition(Status.STOPPED, "skip")),
    (Status.PAUSED, Signal.STOPPED, "pause", Transition(Status.STOPPED, "skip")),
    (Status.ACTIVE, Signal.SNOOZED, "pause", Transition(Status.ACTIVE, "keep")),
    (Status.PAUSED, Signal.SNOOZED, "pause", Transition(Status.PAUSED, "keep")),
]


@pytest.mark.parametrize(("status", "signal", "reply", "expected"), LIVE_TABLE)
def test_apply_signal_to_a_live_enrollment(
    status: Status, signal: Signal, reply: str, expected: Transition
) -> None:
    assert apply_signal(status, signal, reply) == expected


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("signal", [Signal.BOUNCED, Signal.UNSUBSCRIBED, Signal.SPAM_REPORT])
def test_suppressing_signals_stop_from_any_status(status: Status, signal: Signal) -> None:
    assert apply_signal(status, signal) == Transition(Status.STOPPED, "skip", suppress=True)


@pytest.mark.parametrize("status", list(Status))
def test_booking_stops_the_chase_from_any_status(status: Status) -> None:
    assert apply_signal(status, Signal.BOOKED) == Transition(Status.BOOKED, "skip")


STATE_ERRORS: list[tuple[Status, Signal, str]] = [
    (Status.PAUSED, Signal.PAUSED, "the enrollment is already paused"),
    (Status.ACTIVE, Signal.RESUMED, "the enrollment is active, not paused: nothing to resume"),
    *(
        (status, signal, f"the enrollment is {status.value}: nothing left to {verb}")
        for status in (Status.STOPPED, Status.COMPLETED, Status.BOOKED)
        for signal, verb in (
            (Signal.REPLIED, "pause"),
            (Signal.PAUSED, "pause"),
        )
        if (status, signal) != (Status.COMPLETED, Signal.REPLIED)
    ),
    *(
        (status, signal, f"the enrollment is {status.value}: nothing left to {verb}")
        for status in (Status.STOPPED, Status.COMPLETED, Status.BOOKED)
        for signal, verb in (
            (Signal.RESUMED, "resume"),
            (Signal.STOPPED, "stop"),
            (Signal.SNOOZED, "snooze"),
        )
    ),
]


def test_a_reply_after_the_last_touch_keeps_the_enrollment_completed() -> None:
    assert apply_signal(Status.COMPLETED, Signal.REPLIED) == Transition(Status.COMPLETED, "keep")


@pytest.mark.parametrize(("status", "signal", "message"), STATE_ERRORS)
def test_signals_that_do_not_fit_raise_state_errors(
    status: Status, signal: Signal, message: str
) -> None:
    with pytest.raises(StateError) as raised:
        apply_signal(status, signal)
    assert str(raised.value) == message


# --- pause / resume / snooze / reply never send a step twice nor skip one ------------------

WAITS = ["0d", "1d", "2d", "6h", "2 business days", "30m"]
CHANNELS = ["email", "email", "call", "reminder"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 96)),
        st.tuples(st.just("pause"), st.just(0)),
        st.tuples(st.just("resume"), st.just(0)),
        st.tuples(st.just("reply"), st.just(0)),
        st.tuples(st.just("snooze"), st.integers(1, 240)),
    ),
    max_size=14,
)


@st.composite
def small_sequences(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bool]:
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(CHANNELS), st.sampled_from(WAITS)), min_size=1, max_size=4
        )
    )
    return steps, draw(st.booleans())


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=small_sequences(), script=operations)
def test_signals_between_ticks_never_send_a_step_twice_nor_skip_one(
    sqlite_template: Path,
    tmp_path: Path,
    shape: tuple[list[tuple[str, str]], bool],
    script: list[tuple[str, int]],
) -> None:
    example = Path(tempfile.mkdtemp(dir=tmp_path))
    store = fresh_sqlite(sqlite_template, example)
    try:
        check_signals_between_ticks(store, example, shape, script)
    finally:
        store.dispose()


def check_signals_between_ticks(
    store: Store,
    directory: Path,
    shape: tuple[list[tuple[str, str]], bool],
    script: list[tuple[str, int]],
) -> None:
    """Run ``script`` against one enrollment in ``store``; the project lives in ``directory``."""
    raw_steps, business_hours = shape
    window: dict[str, Any] = {}
    if business_hours:
        window = {"send_window": BUSINESS_HOURS, "timezone": "Europe/Paris"}
    project = write_project(
        directory,
        [step(f"s{n}", channel, wait) for n, (channel, wait) in enumerate(raw_steps)],
        **window,
    )
    sequence = project.sequence
    calendar = work_calendar(
        sequence.country, sequence.holidays, sequence.send_window, sequence.timezone
    )
    outbox = OutboxSender(directory / "outbox", clock=lambda: T0, fsync=False)
    sender = RecordingSender(outbox=outbox)
    dispatcher = dispatcher_for(store, project, sender)
    clock = Clock()
    result = enroll(store, sequence, [Prospect(email="ada@example.com")], start=T0, now=T0)
    (_, enrollment_id), *_ = result.enrolled
    status = Status.ACTIVE

    def performed() -> Counter[str]:
        """How many times each step was performed: e-mails sent plus SDR tasks created."""
        with store.reading() as connection:
            task_steps = connection.execute(
                select(touchpoints.c.step_id).join(tasks, tasks.c.touchpoint_id == touchpoints.c.id)
            ).scalars()
            return Counter([m.step_id for m in sender.sent] + list(task_steps))

    for operation, amount in script:
        if operation == "tick":
            before = performed()
            tick(store, dispatcher, clock.advance(hours=amount))
            if status is Status.PAUSED:
                assert performed() == before, "a paused enrollment was touched"
            left = [r for r in touch_rows(store, enrollment_id) if r.status == "planned"]
            if status is Status.ACTIVE and not left:
                status = Status.COMPLETED  # its last touch is done
        elif operation == "snooze":
            until = clock.now + timedelta(hours=amount)
            if status is Status.COMPLETED:
                with pytest.raises(StateError):
                    record_signal(
                        store, "ada@example.com", Signal.SNOOZED, now=clock.now, until=until
                    )
                continue
            record_signal(store, "ada@example.com", Signal.SNOOZED, now=clock.now, until=until)
            planned = [r for r in touch_rows(store, enrollment_id) if r.status == "planned"]
            assert all(r.due_at >= until for r in planned)
        else:
            signal = {"pause": Signal.PAUSED, "resume": Signal.RESUMED, "reply": Signal.REPLIED}[
                operation
            ]
            fits = not (
                (signal is Signal.PAUSED and status is Status.PAUSED)
                or (signal is Signal.RESUMED and status is Status.ACTIVE)
                or (signal is not Signal.REPLIED and status is Status.COMPLETED)
            )
            if not fits:
                with pytest.raises(StateError):
                    record_signal(store, "ada@example.com", signal, now=clock.now)
                continue
            record_signal(store, "ada@example.com", signal, now=clock.now)
            if status is not Status.COMPLETED:  # a reply keeps a completed enrollment so
                status = Status.ACTIVE if signal is Signal.RESUMED else Status.PAUSED
            if signal is Signal.RESUMED:
                planned = [r for r in touch_rows(store, enrollment_id) if r.status == "planned"]
                assert all(r.due_at >= clock.now for r in planned)
                assert all(calendar.next_slot(r.due_at) == r.due_at for r in planned)
        counts = performed()
        assert all(n == 1 for n in counts.values()), f"a step was performed twice: {counts}"
        assert Status(enrollment_row(store, enrollment_id).status) is status

    if status is Status.PAUSED:
        record_signal(store, "ada@example.com", Signal.RESUMED, now=clock.now)
    run_until_idle(store, dispatcher, clock)

    timed = project.timed_step_ids()
    assert performed() == Counter(timed), "every step exactly once"
    assert sender.duplicates() == {}
    rows = touch_rows(store, enrollment_id)
    assert [r.step_id for r in rows] == timed
    assert {r.status for r in rows} == {"sent"}
    sent_times = [r.sent_at for r in rows]
    assert sent_times == sorted(sent_times), "steps performed out of the sequence's order"
    emails = [s for s in timed if sequence.step(s).channel is Channel.EMAIL]
    assert sorted(p.stem for p in (directory / "outbox").glob("*.eml")) == sorted(
        str(r.id) for r in touch_rows(store, enrollment_id) if r.step_id in emails
    )
    if business_hours:
        for row in touch_rows(store, enrollment_id):
            assert row.sent_at is not None
            assert calendar.next_slot(row.sent_at) == row.sent_at, "sent outside the window"
