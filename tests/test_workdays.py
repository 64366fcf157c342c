"""Working days, send windows and wall-clock arithmetic, across DST changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays as holiday_data
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relance.country_calendars import closed_days, known_country, public_holidays, weekend_days
from relance.spec import Holidays, SendWindow, Weekday
from relance.workdays import WorkCalendar, resolve_local, wall_clock, work_calendar

PARIS = ZoneInfo("Europe/Paris")
EVERY_DAY = list(Weekday)
WEEKDAYS = EVERY_DAY[:5]

ZONES = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Auckland",
    "Europe/London",
    "UTC",
]
COUNTRIES = ["FR", "DE", "US", "GB", "BR", "IN", "AU", "NZ", "ES", "ZZ", "IL", "IR", "SA"]
WORKING_EVERYWHERE = [Weekday.MON, Weekday.TUE, Weekday.WED]
"""Days that are working days in every country above: a window needs one to ever open."""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def paris_calendar(
    start: time = time(9),
    end: time = time(17, 30),
    days: list[Weekday] | None = None,
    country: str = "FR",
) -> WorkCalendar:
    window = SendWindow(days=days or WEEKDAYS, start=start, end=end)
    return WorkCalendar(country, Holidays(), window, PARIS)


# Clocks change on Sundays in Paris: these calendars are those of an Israeli prospect in
# Paris, whose working week runs Sunday to Thursday.
SUNDAY_WORKER = "IL"


# Wall-clock arithmetic --------------------------------------------------------------


def test_a_local_time_in_the_spring_forward_gap_means_the_end_of_the_gap() -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    assert resolve_local(datetime(2026, 3, 29, 2, 30), PARIS) == utc(2026, 3, 29, 1, 0)
    assert resolve_local(datetime(2026, 3, 29, 1, 59), PARIS) == utc(2026, 3, 29, 0, 59)
    assert resolve_local(datetime(2026, 3, 29, 3, 0), PARIS) == utc(2026, 3, 29, 1, 0)


def test_an_ambiguous_local_time_means_its_first_occurrence() -> None:
    # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET (01:00 UTC).
    assert resolve_local(datetime(2026, 10, 25, 2, 30), PARIS) == utc(2026, 10, 25, 0, 30)


def test_the_wall_clock_of_a_repeated_hour_reads_as_its_end() -> None:
    first_pass = utc(2026, 10, 25, 0, 10)  # 02:10 CEST
    second_pass = utc(2026, 10, 25, 1, 10)  # 02:10 CET, an hour later
    assert wall_clock(first_pass, PARIS) == datetime(2026, 10, 25, 2, 10)
    assert wall_clock(second_pass, PARIS) == datetime(2026, 10, 25, 3, 0)
    assert wall_clock(utc(2026, 10, 25, 2, 10), PARIS) == datetime(2026, 10, 25, 3, 10)


def test_calendar_days_keep_the_local_time_across_dst() -> None:
    calendar = paris_calendar()
    friday_ten = utc(2026, 3, 27, 9, 0)  # 10:00 CET
    assert calendar.add_days(friday_ten, 3) == utc(2026, 3, 30, 8, 0)  # 10:00 CEST
    assert calendar.add_days(friday_ten, 0) == friday_ten


def test_business_days_skip_weekends_and_public_holidays() -> None:
    calendar = paris_calendar()
    thursday = utc(2026, 12, 24, 10, 0)  # 11:00 CET
    # Friday 25 is Christmas, then the weekend: Monday 28 and Tuesday 29.
    assert calendar.add_business_days(thursday, 2) == utc(2026, 12, 29, 10, 0)
    saturday = utc(2026, 12, 26, 10, 0)
    assert calendar.add_business_days(saturday, 1) == utc(2026, 12, 28, 10, 0)
    assert calendar.add_business_days(saturday, 0) == saturday


# Days --------------------------------------------------------------------------------


def test_closed_days_say_why() -> None:
    calendar = WorkCalendar(
        "FR",
        Holidays(extra=[date(2026, 8, 14)]),
        SendWindow(days=[Weekday.MON, Weekday.TUE, Weekday.THU, Weekday.FRI]),
        PARIS,
    )
    assert calendar.closed_reason(date(2026, 11, 28)) == "Sat 2026-11-28: weekend in FR"
    assert calendar.closed_reason(date(2026, 11, 25)) == "Wed 2026-11-25: not a send day"
    assert calendar.closed_reason(date(2026, 12, 25)) == (
        "Fri 2026-12-25: public holiday (Christmas Day)"
    )
    assert calendar.closed_reason(date(2026, 8, 14)) == "Fri 2026-08-14: closed (extra holiday)"
    assert calendar.closed_reason(date(2026, 11, 26)) is None
    assert calendar.is_working_day(date(2026, 11, 26))


def test_public_holidays_can_be_switched_off_but_extra_days_cannot() -> None:
    calendar = WorkCalendar(
        "FR", Holidays(country=False, extra=[date(2026, 12, 24)]), SendWindow(), PARIS
    )
    assert calendar.is_working_day(date(2026, 12, 25))
    assert not calendar.is_working_day(date(2026, 12, 24))


def test_an_unknown_country_has_no_public_holidays() -> None:
    assert not known_country("ZZ")
    assert known_country("FR")
    assert public_holidays("ZZ", 2026) == {}
    calendar = WorkCalendar("ZZ", Holidays(), SendWindow(), PARIS)
    assert calendar.is_working_day(date(2026, 12, 25))


def test_public_holidays_are_built_once_per_country_and_year() -> None:
    assert public_holidays("DE", 2026) is public_holidays("DE", 2026)
    assert public_holidays("DE", 2026)[date(2026, 10, 3)] == "German Unity Day"


def test_calendars_with_the_same_settings_are_shared() -> None:
    first = work_calendar("FR", Holidays(), SendWindow(), "Europe/Paris")
    again = work_calendar("FR", Holidays(), SendWindow(), "Europe/Paris")
    other = work_calendar("DE", Holidays(), SendWindow(), "Europe/Paris")
    assert first is again
    assert first is not other


# Send window -------------------------------------------------------------------------


def test_a_window_start_inside_the_spring_forward_gap_opens_at_the_jump() -> None:
    calendar = paris_calendar(time(2, 30), time(4, 0), EVERY_DAY, SUNDAY_WORKER)
    assert calendar.spans(date(2026, 3, 29)) == ((utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),)
    due = calendar.next_slot(utc(2026, 3, 28, 23, 0))
    assert due == utc(2026, 3, 29, 1, 0)
    assert due.astimezone(PARIS).time() == time(3, 0)


def test_a_window_inside_the_spring_forward_gap_skips_the_day() -> None:
    calendar = paris_calendar(time(2, 0), time(2, 45), EVERY_DAY, SUNDAY_WORKER)
    assert calendar.spans(date(2026, 3, 29)) == ()
    reasons: list[str] = []
    due = calendar.snap(utc(2026, 3, 28, 23, 0), reasons)
    assert due == utc(2026, 3, 30, 0, 0)  # Monday 02:00 CEST
    assert reasons == ["Sun 2026-03-29: no such local time (clock change)"]


def test_the_repeated_hour_can_open_the_window_twice() -> None:
    calendar = paris_calendar(time(1, 0), time(2, 30), EVERY_DAY, SUNDAY_WORKER)
    first, second = calendar.spans(date(2026, 10, 25))
    assert first == (utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 0, 30))
    assert second == (utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 1, 30))
    # 02:45 CEST is past the end; 02:00 CET, a quarter of an hour later, is open again.
    reasons: list[str] = []
    assert calendar.snap(utc(2026, 10, 25, 0, 45), reasons) == utc(2026, 10, 25, 1, 0)
    assert reasons == ["after 02:30 send window end"]


def test_next_slot_says_why_it_moved() -> None:
    calendar = paris_calendar()
    reasons: list[str] = []
    due = calendar.snap(utc(2026, 12, 24, 17, 0), reasons)  # Thursday 18:00 CET
    assert due == utc(2026, 12, 28, 8, 0)  # Monday 09:00 CET
    assert reasons == [
        "after 17:30 send window end",
        "Fri 2026-12-25: public holiday (Christmas Day)",
        "Sat 2026-12-26: weekend in FR",
        "Sun 2026-12-27: weekend in FR",
    ]
    reasons = []
    assert calendar.snap(utc(2026, 12, 28, 6, 0), reasons) == utc(2026, 12, 28, 8, 0)
    assert reasons == ["before 09:00 send window start"]
    inside = utc(2026, 12, 28, 12, 34)
    assert calendar.next_slot(inside) == inside


def test_next_slot_wants_an_aware_instant() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        paris_calendar().next_slot(datetime(2026, 1, 5, 10, 0))


# Properties --------------------------------------------------------------------------


@cache
def holiday_dates(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holiday_data.country_holidays(country, years=year))
    except NotImplementedError:
        return frozenset()


def is_open(
    instant: datetime, zone: ZoneInfo, country: str, window: SendWindow, extra: set[date]
) -> bool:
    """The definition, written independently of WorkCalendar."""
    local = instant.astimezone(zone)
    day = local.date()
    return (
        EVERY_DAY[day.weekday()] in window.days
        and day not in extra
        and day not in holiday_dates(country, day.year)
        and not is_weekend(country, day)
        and window.start <= local.time() < window.end
    )


@cache
def is_weekend(country: str, day: date) -> bool:
    """The country's weekend as the holidays library states it; Sat-Sun when unknown."""
    try:
        return bool(holiday_data.country_holidays(country).is_weekend(day))
    except NotImplementedError:
        return day.weekday() >= 5


LAST_MINUTE = 23 * 60 + 59


@cache
def clock_changes(zone: str) -> tuple[datetime, ...]:
    """The instants (whole hours UTC) at which ``zone`` changes its offset in 2026."""
    tz = ZoneInfo(zone)
    hour = utc(2026, 1, 1)
    changes = []
    while hour.year == 2026:
        following = hour + timedelta(hours=1)
        if hour.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            changes.append(following)
        hour = following
    return tuple(changes)


@dataclass(frozen=True)
class Case:
    """A zone, a whole-minute instant and a naive local time, mostly near a clock change,
    and a send window, often around the local time of that change."""

    zone: str
    instant: datetime
    wall: datetime
    window: SendWindow


def near(draw: st.DrawFn) -> int:
    """Minutes away from a clock change: often within the hour, sometimes days."""
    return draw(st.one_of(st.integers(-90, 90), st.integers(-240, 240), st.integers(-5760, 5760)))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    changes = clock_changes(zone)
    anywhere = draw(st.integers(0, 4)) == 0
    if changes and not anywhere:
        change = draw(st.sampled_from(changes))
    else:
        change = utc(2026, 1, 1) + timedelta(hours=draw(st.integers(0, 364 * 24)))
    instant = change + timedelta(minutes=near(draw))
    local_change = change.astimezone(tz)
    wall = local_change.replace(tzinfo=None, fold=0) + timedelta(minutes=near(draw))

    days = draw(st.lists(st.sampled_from(EVERY_DAY), min_size=1, max_size=7, unique=True))
    if draw(st.booleans()):  # open on the day the clocks change
        days = [day for day in EVERY_DAY if day in days or day is EVERY_DAY[local_change.weekday()]]
    if not set(days) & set(WORKING_EVERYWHERE):
        days.append(draw(st.sampled_from(WORKING_EVERYWHERE)))
    change_minute = local_change.hour * 60 + local_change.minute
    first = draw(
        st.one_of(
            st.integers(0, LAST_MINUTE - 1),
            st.integers(max(change_minute - 90, 0), min(change_minute + 60, LAST_MINUTE - 1)),
        )
    )
    last = draw(
        st.one_of(
            st.integers(first + 1, LAST_MINUTE),
            st.integers(first + 1, min(first + 120, LAST_MINUTE)),
        )
    )
    window = SendWindow(
        days=days, start=time(first // 60, first % 60), end=time(last // 60, last % 60)
    )
    return Case(zone, instant, wall, window)


extras = st.sets(st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 12, 31)), max_size=6)


@given(case=cases(), country=st.sampled_from(COUNTRIES), extra=extras)
def test_next_slot_is_the_earliest_open_minute(case: Case, country: str, extra: set[date]) -> None:
    instant, window = case.instant, case.window
    tz = ZoneInfo(case.zone)
    calendar = WorkCalendar(country, Holidays(extra=sorted(extra)), window, tz)
    due = calendar.next_slot(instant)
    assert due.tzinfo is UTC
    assert due >= instant
    assert is_open(due, tz, country, window, extra)
    # Nothing open in between, minute by minute (clock changes fall on whole minutes).
    probe = instant
    while probe < due:
        assert not is_open(probe, tz, country, window, extra), probe
        probe += timedelta(minutes=1)


@given(case=cases(), later=st.one_of(st.integers(0, 90), st.integers(0, 3 * 24 * 60)))
def test_wall_clock_and_resolve_local_never_go_backwards(case: Case, later: int) -> None:
    tz = ZoneInfo(case.zone)
    first, naive = case.instant, case.wall
    second = first + timedelta(minutes=later)
    assert wall_clock(first, tz) <= wall_clock(second, tz)
    assert resolve_local(naive, tz) <= resolve_local(naive + timedelta(minutes=later), tz)
    calendar = WorkCalendar("ZZ", Holidays(), case.window, tz)
    assert calendar.resolve(naive) == resolve_local(naive, tz)
    # resolve_local inverts wall_clock on every instant outside a repeated hour.
    if not first.astimezone(tz).fold:
        assert resolve_local(wall_clock(first, tz), tz) == first
    assert wall_clock(resolve_local(naive, tz), tz) >= naive


@given(
    case=cases(),
    country=st.sampled_from(COUNTRIES),
    count=st.integers(0, 12),
    more=st.integers(0, 3),
)
def test_business_days_land_on_open_days_and_grow_with_the_count(
    case: Case, country: str, count: int, more: int
) -> None:
    instant = case.instant
    calendar = WorkCalendar(country, Holidays(), case.window, ZoneInfo(case.zone))
    later = calendar.add_business_days(instant, count)
    assert later >= instant
    assert calendar.add_business_days(instant, count + more) >= later
    if count:
        day = later.astimezone(calendar.zone).date()
        start_day = wall_clock(instant, calendar.zone).date()
        assert calendar.is_working_day(day)
        open_days = [
            start_day + timedelta(days=offset)
            for offset in range(1, (day - start_day).days + 1)
            if calendar.is_working_day(start_day + timedelta(days=offset))
        ]
        assert len(open_days) == count


@pytest.mark.parametrize("zone", ZONES)
def test_wall_clock_and_resolve_local_are_monotone_minute_by_minute_around_each_change(
    zone: str,
) -> None:
    tz = ZoneInfo(zone)
    for change in clock_changes(zone):
        instants = [change + timedelta(minutes=step) for step in range(-120, 121)]
        walls = [wall_clock(instant, tz) for instant in instants]
        assert walls == sorted(walls)
        local = change.astimezone(tz).replace(tzinfo=None, fold=0)
        naives = [local + timedelta(minutes=step) for step in range(-120, 121)]
        resolved = [resolve_local(naive, tz) for naive in naives]
        assert resolved == sorted(resolved)
        calendar = WorkCalendar("ZZ", Holidays(), SendWindow(), tz)
        assert [calendar.resolve(naive) for naive in naives] == resolved
        assert all(
            wall_clock(instant, tz) >= naive
            for instant, naive in zip(resolved, naives, strict=True)
        )


# Each country's calendar ------------------------------------------------------------


def test_the_weekend_is_the_countrys_and_the_window_only_narrows_it() -> None:
    weekdays = SendWindow(days=WEEKDAYS)
    israel = WorkCalendar("IL", Holidays(), weekdays, ZoneInfo("Asia/Jerusalem"))
    assert israel.closed_reason(date(2027, 4, 16)) == "Fri 2027-04-16: weekend in IL"
    assert israel.closed_reason(date(2027, 4, 18)) == "Sun 2027-04-18: not a send day"
    country = SendWindow.model_validate({"days": "country"})
    israel = WorkCalendar("IL", Holidays(), country, ZoneInfo("Asia/Jerusalem"))
    assert israel.is_working_day(date(2027, 4, 18))
    iran = WorkCalendar("IR", Holidays(), country, ZoneInfo("Asia/Tehran"))
    assert iran.is_working_day(date(2027, 4, 17))  # Saturday
    assert iran.closed_reason(date(2027, 4, 16)) == "Fri 2027-04-16: weekend in IR"


def test_a_weekend_follows_the_date_it_falls_on() -> None:
    # Saudi Arabia moved its weekend from Thursday-Friday to Friday-Saturday on 28 June 2013.
    assert date(2013, 6, 27) in weekend_days("SA", 2013)
    assert date(2013, 7, 4) not in weekend_days("SA", 2013)
    assert date(2013, 7, 6) in weekend_days("SA", 2013)
    # A Saturday made a working day in Hungary.
    assert date(2024, 8, 3) not in weekend_days("HU", 2024)
    assert date(2024, 8, 10) in weekend_days("HU", 2024)


def test_regional_and_everywhere_holidays_and_other_categories() -> None:
    assert closed_days("DE", "DE-BY", 2027, ("public",))[date(2027, 1, 6)] == (
        "public holiday in DE-BY (Epiphany)"
    )
    assert date(2027, 1, 6) not in closed_days("DE", None, 2027, ("public",))
    assert closed_days("AU", None, 2027, ("public",))[date(2027, 12, 27)] == (
        "public holiday in every region of AU (Christmas Day (observed))"
    )
    assert date(2026, 8, 3) not in closed_days("AU", "AU-NSW", 2026, ("public",))
    assert closed_days("AU", "AU-NSW", 2026, ("public", "bank"))[date(2026, 8, 3)] == (
        "bank holiday in AU-NSW (Bank Holiday)"
    )
    # A category the country does not have is ignored.
    assert closed_days("IL", None, 2027, ("public", "bank")) == closed_days(
        "IL", None, 2027, ("public",)
    )


def test_the_countrys_calendar_can_be_turned_off() -> None:
    every_day = SendWindow(days=EVERY_DAY)
    calendar = WorkCalendar("FR", Holidays(country=False), every_day, PARIS)
    assert calendar.is_working_day(date(2026, 12, 26))  # a Saturday
    assert calendar.is_working_day(date(2026, 12, 25))
