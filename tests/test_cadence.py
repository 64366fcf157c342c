"""The cadence planner: the stretch, exact plans, and the properties every plan holds."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holiday_data
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from relance.cadence import PlannedTouch, plan_touchpoints, stretch_factor, stretch_wait
from relance.errors import NotFoundError
from relance.prospect import Prospect
from relance.spec import Cadence, Sequence, Wait, WaitUnit, Weekday
from relance.workdays import wall_clock, work_calendar

PARIS = ZoneInfo("Europe/Paris")
EVERY_DAY = list(Weekday)
ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "Europe/London",
]
COUNTRIES = ["FR", "DE", "US", "GB", "BR", "IN", "AU", "NZ", "ES", "IL", "IR", "SA"]
WORKING_EVERYWHERE = [Weekday.MON, Weekday.TUE, Weekday.WED]
"""Days that are working days in every country above: a window needs one to ever open."""
LAST_MINUTE = 23 * 60 + 59
ONE_DAY = timedelta(days=1)

TEMPLATES: dict[str, dict[str, str]] = {
    "email": {"subject": "s.j2", "html": "h.j2", "text": "t.j2"},
    "call": {"script": "c.j2"},
    "reminder": {"reminder": "r.j2"},
    "meeting_confirmation": {"subject": "s.j2", "html": "h.j2", "text": "t.j2"},
}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def step(step_id: str, channel: str, wait: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": step_id,
        "channel": channel,
        "objective": f"{step_id} objective",
        "templates": TEMPLATES[channel],
    }
    if wait is not None:
        data["wait"] = wait
    return data


def sequence(*steps: dict[str, Any], **fields: Any) -> Sequence:
    return Sequence.model_validate({"id": "demo", "name": "Demo", "steps": list(steps), **fields})


def prospect(**fields: Any) -> Prospect:
    return Prospect.model_validate({"email": "claire@example.com", **fields})


def dues(touches: list[PlannedTouch]) -> list[datetime]:
    return [touch.due_at for touch in touches]


OUTBOUND = sequence(
    step("intro", "email", "0d"),
    step("call", "call", "2 business days"),
    step("follow-up", "email", "3d"),
    step("nudge", "reminder", "4h"),
    step("confirm", "meeting_confirmation"),
    step("last", "email", "1w"),
)


# Stretch -----------------------------------------------------------------------------


def test_the_stretch_follows_the_cadence_formula() -> None:
    cadence = Cadence()
    assert stretch_factor(cadence, 10_000, 60) == 1
    assert stretch_factor(cadence, 20_000, 60) == pytest.approx(1.15)
    assert stretch_factor(cadence, 40_000, 60) == pytest.approx(1.15**2)
    assert stretch_factor(cadence, 10_000, 120) == pytest.approx(1.25)
    assert stretch_factor(cadence, 10_000, 30) == pytest.approx(1 / 1.25)
    assert stretch_factor(cadence, 20_000, 120) == pytest.approx(1.4375)
    assert stretch_factor(cadence, 10**9, 10**6) == 2.5
    assert stretch_factor(cadence, 1, 1) == 0.5


def test_an_unknown_value_leaves_its_term_at_one() -> None:
    cadence = Cadence()
    assert stretch_factor(cadence, None, None) == 1
    assert stretch_factor(cadence, None, 120) == pytest.approx(1.25)
    assert stretch_factor(cadence, 20_000, None) == pytest.approx(1.15)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_a_known_value_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="positive deal value or None"):
        stretch_factor(Cadence(), value, None)


def test_a_value_too_small_for_a_ratio_still_gives_the_floor() -> None:
    """1e-320 / 10000 underflows to 0: the stretch is computed from logarithms instead."""
    assert stretch_factor(Cadence(), 1e-320, None) == Cadence().min_stretch
    assert stretch_factor(Cadence(), 1e308, 1e308) == Cadence().max_stretch


def test_business_days_round_up_and_other_waits_stretch_exactly() -> None:
    assert stretch_wait(Wait.parse("2 business days"), 1.4375) == 3
    assert stretch_wait(Wait.parse("3 business days"), 1.0) == 3
    assert stretch_wait(Wait.parse("3 business days"), 1 / 3 * 3) == 3
    assert stretch_wait(Wait.parse("3d"), 1.5) == 4.5
    assert stretch_wait(Wait.parse("4h"), 0.5) == 2


cadences = st.builds(
    Cadence,
    reference_deal_value=st.floats(100, 1e6),
    reference_cycle_days=st.floats(5, 365),
    deal_value_doubling=st.floats(0, 2),
    cycle_doubling=st.floats(0, 2),
    min_stretch=st.floats(0.1, 1),
    max_stretch=st.floats(1, 4),
)
positive = st.floats(min_value=1e-6, max_value=1e12)


@given(cadence=cadences, low=positive, high=positive, other=st.one_of(st.none(), positive))
def test_the_stretch_never_decreases_and_stays_in_bounds(
    cadence: Cadence, low: float, high: float, other: float | None
) -> None:
    low, high = sorted((low, high))
    for small, large in (
        (stretch_factor(cadence, low, other), stretch_factor(cadence, high, other)),
        (stretch_factor(cadence, other, low), stretch_factor(cadence, other, high)),
    ):
        assert cadence.min_stretch <= small <= large <= cadence.max_stretch


# Exact plans -------------------------------------------------------------------------


def test_a_christmas_start_in_paris() -> None:
    touches = plan_touchpoints(OUTBOUND, prospect(), utc(2026, 12, 24, 17))  # Thu 18:00 CET
    assert [(t.step_id, t.channel.value, t.position) for t in touches] == [
        ("intro", "email", 0),
        ("call", "call", 1),
        ("follow-up", "email", 2),
        ("nudge", "reminder", 3),
        ("last", "email", 5),
    ]
    assert dues(touches) == [
        utc(2026, 12, 28, 8),  # Mon 09:00 CET
        utc(2026, 12, 30, 8),  # Wed 09:00
        utc(2027, 1, 4, 8),  # Sat 2 Jan + weekend -> Mon 09:00
        utc(2027, 1, 5, 8),  # 4h later is Mon 13:00, but no two touches within a day
        utc(2027, 1, 12, 8),
    ]
    assert [t.moved for t in touches] == [
        [
            "after 17:30 send window end",
            "Fri 2026-12-25: public holiday (Christmas Day)",
            "Sat 2026-12-26: weekend in FR",
            "Sun 2026-12-27: weekend in FR",
        ],
        [],
        ["Sat 2027-01-02: weekend in FR", "Sun 2027-01-03: weekend in FR"],
        ["raised to the minimum gap of 1d"],
        [],
    ]
    first = touches[0]
    assert first.nominal == utc(2026, 12, 24, 17)
    assert first.local_due_at == datetime(2026, 12, 28, 9, tzinfo=PARIS)
    assert first.local_due_at.tzinfo == PARIS
    assert first.stretch == 1
    assert touches[3].nominal == utc(2027, 1, 5, 8)


def test_deal_value_and_cycle_stretch_the_waits() -> None:
    touches = plan_touchpoints(
        OUTBOUND, prospect(deal_value=20_000, cycle_days=120), utc(2026, 6, 1, 7)
    )  # Mon 09:00 CEST
    assert [t.stretch for t in touches] == pytest.approx([1.4375] * 5)
    assert [t.stretched_wait for t in touches] == pytest.approx(
        [0, 3, 3 * 1.4375, 4 * 1.4375, 7 * 1.4375]
    )
    assert touches[1].due_at == utc(2026, 6, 4, 7)  # 3 business days: Thursday 09:00
    # 4.3125 days after Thursday 09:00 is Monday 16:30.
    assert touches[2].due_at == utc(2026, 6, 8, 14, 30)


def test_holidays_that_business_days_pass_over_are_reasons_too() -> None:
    plan = sequence(step("one", "email", "0d"), step("two", "call", "2 business days"))
    touches = plan_touchpoints(plan, prospect(), utc(2026, 12, 24, 9))  # Thu 10:00 CET
    assert dues(touches) == [utc(2026, 12, 24, 9), utc(2026, 12, 29, 9)]  # Tue 10:00
    assert touches[1].moved == ["business days skip Fri 2026-12-25: public holiday (Christmas Day)"]
    assert touches[1].nominal == touches[1].due_at


def test_calendar_days_keep_the_local_time_across_the_spring_change() -> None:
    plan = sequence(step("one", "email", "0d"), step("two", "email", "3d"))
    touches = plan_touchpoints(plan, prospect(), utc(2026, 3, 27, 9))  # Fri 10:00 CET
    assert dues(touches) == [utc(2026, 3, 27, 9), utc(2026, 3, 30, 8)]  # Mon 10:00 CEST
    assert touches[1].local_due_at.hour == 10


def test_hours_are_absolute_time_across_the_spring_change() -> None:
    plan = sequence(
        step("one", "email", "0d"),
        step("two", "email", "24h"),
        step("three", "email", "1d"),
        send_window={"days": [day.value for day in EVERY_DAY], "start": "00:00", "end": "23:59"},
        cadence={"min_gap": "0m"},
    )
    # An Iranian prospect in Paris: Iran rests on Friday only, so Saturday and Sunday work.
    person = prospect(country="IR", timezone="Europe/Paris")
    touches = plan_touchpoints(plan, person, utc(2026, 3, 28, 11))  # Sat 12:00 CET
    assert dues(touches) == [
        utc(2026, 3, 28, 11),
        utc(2026, 3, 29, 11),  # Sun 13:00 CEST: 24 hours later
        utc(2026, 3, 30, 11),  # Mon 13:00 CEST: one calendar day later
    ]


def test_the_american_fall_back_in_new_york() -> None:
    plan = sequence(step("one", "email", "0d"), step("two", "call", "3d"))
    person = prospect(timezone="America/New_York", country="US")
    touches = plan_touchpoints(plan, person, utc(2026, 10, 30, 13))  # Fri 09:00 EDT
    assert dues(touches) == [utc(2026, 10, 30, 13), utc(2026, 11, 2, 14)]  # Mon 09:00 EST


def test_a_window_opening_inside_the_spring_gap_opens_at_the_jump() -> None:
    plan = sequence(
        step("one", "email", "0d"),
        send_window={"days": [day.value for day in EVERY_DAY], "start": "02:30", "end": "04:00"},
    )
    person = prospect(country="IR", timezone="Europe/Paris")  # Sunday is a working day
    touches = plan_touchpoints(plan, person, utc(2026, 3, 28, 23))  # Sun 00:00 CET
    assert dues(touches) == [utc(2026, 3, 29, 1)]
    assert touches[0].local_due_at.time() == time(3, 0)
    assert touches[0].moved == ["before 02:30 send window start"]


def test_the_prospect_country_and_zone_win_over_the_sequence_defaults() -> None:
    plan = sequence(step("one", "email", "0d"))
    person = prospect(timezone="America/New_York", country="US")
    touches = plan_touchpoints(plan, person, utc(2026, 11, 26, 15))  # Thanksgiving 10:00 EST
    assert dues(touches) == [utc(2026, 11, 27, 14)]
    assert touches[0].moved == ["Thu 2026-11-26: public holiday (Thanksgiving Day)"]
    assert touches[0].local_due_at.tzinfo == ZoneInfo("America/New_York")


def test_an_unknown_country_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="got 'ZZ'"):
        prospect(country="ZZ")
    assert prospect(country="Germany").country == "DE"  # names are read, in several languages
    with pytest.raises(ValidationError, match=r"got 'Germani' \(did you mean 'DE'"):
        prospect(country="Germani")


def test_extra_days_are_closed_even_without_public_holidays() -> None:
    plan = sequence(
        step("one", "email", "0d"), holidays={"country": False, "extra": ["2026-12-24"]}
    )
    touches = plan_touchpoints(plan, prospect(), utc(2026, 12, 24, 9))
    assert dues(touches) == [utc(2026, 12, 25, 8)]  # Christmas, 09:00 CET
    assert touches[0].moved == ["Thu 2026-12-24: closed (extra holiday)"]


def test_after_step_plans_the_remaining_steps_from_start() -> None:
    start = utc(2026, 6, 3, 10)  # Wed 12:00 CEST
    touches = plan_touchpoints(OUTBOUND, prospect(), start, after_step="follow-up")
    assert [t.step_id for t in touches] == ["nudge", "last"]
    assert touches[0].due_at == utc(2026, 6, 3, 14)  # 4 hours later, no minimum gap
    assert plan_touchpoints(OUTBOUND, prospect(), start, after_step="last") == []
    assert [
        t.step_id for t in plan_touchpoints(OUTBOUND, prospect(), start, after_step="confirm")
    ] == ["last"]


def test_an_unknown_after_step_is_an_error() -> None:
    with pytest.raises(NotFoundError, match="no step 'nope' in sequence 'demo'"):
        plan_touchpoints(OUTBOUND, prospect(), utc(2026, 6, 3), after_step="nope")


def test_a_naive_start_is_an_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_touchpoints(OUTBOUND, prospect(), datetime(2026, 6, 3, 9))


# Properties --------------------------------------------------------------------------


@cache
def clock_changes(zone: str) -> tuple[datetime, ...]:
    """The instants (whole hours UTC) at which ``zone`` changes its offset in 2026."""
    tz = ZoneInfo(zone)
    hour, changes = utc(2026, 1, 1), []
    while hour.year == 2026:
        following = hour + timedelta(hours=1)
        if hour.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            changes.append(following)
        hour = following
    return tuple(changes)


ALL_CHANGES = sorted({change for zone in ZONES for change in clock_changes(zone)})


@cache
def holiday_dates(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holiday_data.country_holidays(country, years=year))
    except NotImplementedError:
        return frozenset()


waits = st.one_of(
    st.integers(0, 600).map(lambda n: f"{n}m"),
    st.integers(0, 96).map(lambda n: f"{n / 2}h"),
    st.integers(0, 28).map(lambda n: f"{n / 2}d"),
    st.integers(0, 10).map(lambda n: f"{n} business days"),
)


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    days = draw(st.lists(st.sampled_from(EVERY_DAY), min_size=1, max_size=7, unique=True))
    if draw(st.booleans()):  # clocks change on Sundays, a working day in Israel
        days = [day for day in EVERY_DAY if day in days or day is Weekday.SUN]
    if not set(days) & set(WORKING_EVERYWHERE):
        days.append(draw(st.sampled_from(WORKING_EVERYWHERE)))
    first = draw(st.one_of(st.integers(0, LAST_MINUTE - 1), st.integers(0, 240)))
    last = draw(
        st.one_of(
            st.integers(first + 1, LAST_MINUTE),
            st.integers(first + 1, min(first + 120, LAST_MINUTE)),
        )
    )
    return {
        "days": [day.value for day in days],
        "start": f"{first // 60:02d}:{first % 60:02d}",
        "end": f"{last // 60:02d}:{last % 60:02d}",
    }


@st.composite
def sequences(draw: st.DrawFn) -> Sequence:
    channels = draw(
        st.lists(st.sampled_from(["email", "call", "reminder"]), min_size=1, max_size=6)
    )
    steps = [step(f"s{index}", channel, draw(waits)) for index, channel in enumerate(channels)]
    if draw(st.booleans()):
        steps.insert(draw(st.integers(0, len(steps))), step("booked", "meeting_confirmation"))
    return sequence(
        *steps,
        timezone=draw(st.sampled_from(ZONES)),
        country=draw(st.sampled_from(COUNTRIES)),
        send_window=draw(windows()),
        holidays={
            "country": draw(st.booleans()),
            "extra": draw(
                st.lists(st.dates(date(2026, 1, 1), date(2027, 6, 30)), max_size=8, unique=True)
            ),
        },
        cadence={
            "reference_deal_value": draw(st.floats(100, 1e6)),
            "reference_cycle_days": draw(st.floats(5, 365)),
            "deal_value_doubling": draw(st.floats(0, 2)),
            "cycle_doubling": draw(st.floats(0, 2)),
            "min_stretch": draw(st.floats(0.1, 1)),
            "max_stretch": draw(st.floats(1, 4)),
            "min_gap": draw(waits),
        },
    )


deal_values = st.one_of(st.just(0.0), st.floats(1, 1e7))
cycle_lengths = st.one_of(st.just(0.0), st.floats(1, 720))


@st.composite
def prospects(draw: st.DrawFn) -> Prospect:
    return prospect(
        deal_value=draw(deal_values),
        cycle_days=draw(cycle_lengths),
        timezone=draw(st.sampled_from([*ZONES, None])),
        country=draw(st.sampled_from([*COUNTRIES, None])),
    )


@st.composite
def starts(draw: st.DrawFn) -> datetime:
    """Whole-minute instants, mostly within days of a clock change somewhere."""
    if draw(st.integers(0, 3)) == 0:
        return utc(2026, 1, 1) + timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    change = draw(st.sampled_from(ALL_CHANGES))
    return change + timedelta(minutes=draw(st.integers(-6 * 24 * 60, 2 * 24 * 60)))


def is_open(instant: datetime, plan: Sequence, zone: ZoneInfo, country: str) -> bool:
    """The definition, written independently of the planner."""
    local = instant.astimezone(zone)
    day, window = local.date(), plan.send_window
    return (
        EVERY_DAY[day.weekday()] in window.days
        and day not in plan.holidays.extra
        and not (plan.holidays.country and day in holiday_dates(country, day.year))
        and not (plan.holidays.country and holiday_data.country_holidays(country).is_weekend(day))
        and window.start <= local.time() < window.end
    )


def open_days_between(plan: Sequence, zone: str, country: str, first: date, last: date) -> int:
    """Open days in ``(first, last]``."""
    calendar = work_calendar(country, plan.holidays, plan.send_window, zone)
    return sum(
        calendar.is_working_day(first + timedelta(days=offset))
        for offset in range(1, (last - first).days + 1)
    )


def at_least(
    plan: Sequence, zone: str, country: str, earlier: datetime, later: datetime, wait: Wait
) -> bool:
    """True if ``later`` is at least ``wait`` after ``earlier``, in the wait's own terms."""
    tz = ZoneInfo(zone)
    if wait.amount == 0:
        return later >= earlier
    if wait.unit is WaitUnit.MINUTES:
        return later - earlier >= timedelta(minutes=wait.amount)
    if wait.unit is WaitUnit.HOURS:
        return later - earlier >= timedelta(hours=wait.amount)
    if wait.unit is WaitUnit.DAYS:
        # On the wall clock; in absolute time, a DST change may take an hour off.
        return wall_clock(later, tz) - wall_clock(earlier, tz) >= timedelta(
            days=wait.amount
        ) and later - earlier >= timedelta(days=wait.amount) - timedelta(hours=1)
    # The same local time on the n-th open day after, or any time on a later day.
    first, last = wall_clock(earlier, tz), wall_clock(later, tz)
    days_before = open_days_between(plan, zone, country, first.date(), last.date() - ONE_DAY)
    days_until = open_days_between(plan, zone, country, first.date(), last.date())
    return days_before >= wait.amount or (days_until >= wait.amount and last.time() >= first.time())


@given(plan=sequences(), person=prospects(), start=starts())
def test_every_plan_keeps_its_promises(plan: Sequence, person: Prospect, start: datetime) -> None:
    touches = plan_touchpoints(plan, person, start)
    zone = person.timezone or plan.timezone
    country = person.country or plan.country
    tz = ZoneInfo(zone)
    calendar = work_calendar(country, plan.holidays, plan.send_window, zone)
    cadence = plan.cadence
    stretch = stretch_factor(cadence, person.deal_value or None, person.cycle_days or None)

    timed = [(position, s) for position, s in enumerate(plan.steps) if s.timed]
    assert [(t.position, t.step_id, t.channel) for t in touches] == [
        (position, s.id, s.channel) for position, s in timed
    ]
    previous = start
    for index, touch in enumerate(touches):
        assert touch.due_at.tzinfo is UTC
        assert touch.local_due_at.astimezone(UTC) == touch.due_at  # == is False in a fold
        assert touch.local_due_at.tzinfo == tz
        assert touch.stretch == stretch
        assert cadence.min_stretch <= touch.stretch <= cadence.max_stretch
        exact = touch.wait.amount * stretch
        if touch.wait.unit is WaitUnit.BUSINESS_DAYS:  # whole days, rounded up
            assert touch.stretched_wait == int(touch.stretched_wait)
            assert exact - 1e-6 <= touch.stretched_wait < max(exact, 0) + 1
        else:
            assert touch.stretched_wait == exact
        # Open: a window day, no holiday, inside the window, at the earliest open instant.
        assert is_open(touch.due_at, plan, tz, country)
        assert touch.nominal <= touch.due_at
        assert calendar.next_slot(touch.nominal) == touch.due_at
        snapped = [
            reason
            for reason in touch.moved
            if not reason.startswith(("raised to", "business days skip"))
        ]
        assert bool(snapped) == (touch.due_at != touch.nominal)
        # Never backwards; the stretched wait and the minimum gap are both honoured.
        assert touch.due_at >= previous
        stretched = Wait(amount=touch.stretched_wait, unit=touch.wait.unit)
        assert at_least(plan, zone, country, previous, touch.nominal, stretched)
        if index > 0:
            assert at_least(plan, zone, country, previous, touch.due_at, cadence.min_gap)
        previous = touch.due_at


@given(
    plan=sequences(),
    person=prospects(),
    start=starts(),
    more_deal=st.floats(1, 100),
    more_cycle=st.floats(1, 100),
)
def test_a_larger_deal_or_a_longer_cycle_never_brings_a_touch_forward(
    plan: Sequence, person: Prospect, start: datetime, more_deal: float, more_cycle: float
) -> None:
    """Unknown (0) is not on the scale: compare known values, or unknown with itself."""
    bigger = person.model_copy(
        update={
            "deal_value": person.deal_value * more_deal,
            "cycle_days": person.cycle_days * more_cycle,
        }
    )
    small = plan_touchpoints(plan, person, start)
    large = plan_touchpoints(plan, bigger, start)
    for before, after in zip(small, large, strict=True):
        assert before.stretch <= after.stretch
        assert before.stretched_wait <= after.stretched_wait
        assert before.nominal <= after.nominal
        assert before.due_at <= after.due_at


@given(plan=sequences(), person=prospects(), start=starts(), data=st.data())
def test_after_step_returns_exactly_the_remaining_steps(
    plan: Sequence, person: Prospect, start: datetime, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(plan.steps) - 1))
    after = plan.steps[position].id
    remaining = plan_touchpoints(plan, person, start, after_step=after)
    assert [t.step_id for t in remaining] == [s.id for s in plan.steps[position + 1 :] if s.timed]
    assert all(t.due_at >= start for t in remaining)


@given(plan=sequences(), person=prospects(), start=starts(), data=st.data())
def test_resuming_after_a_touch_at_its_due_time_replans_the_same_tail(
    plan: Sequence, person: Prospect, start: datetime, data: st.DataObject
) -> None:
    """Without a minimum gap, the tail planned from a touch equals the full plan's tail."""
    no_gap = plan.model_copy(
        update={"cadence": plan.cadence.model_copy(update={"min_gap": Wait.parse("0m")})}
    )
    full = plan_touchpoints(no_gap, person, start)
    index = data.draw(st.integers(0, len(full) - 1))
    tail = plan_touchpoints(no_gap, person, full[index].due_at, after_step=full[index].step_id)
    assert tail == full[index + 1 :]
