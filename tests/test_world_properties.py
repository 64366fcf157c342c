"""Properties of plans for prospects anywhere the ``holidays`` library knows.

Random countries, with or without one of their regions, a zone given, inferred from the
region, the country or the phone number, or the sequence's; random sequences with pinned
and stretched waits, windows that list days or say ``country``, and holiday categories.
The definitions below read the ``holidays`` library directly, not the planner's tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holiday_data
import phonenumbers
from hypothesis import given
from hypothesis import strategies as st

from relance.cadence import PlannedTouch, plan_touchpoints
from relance.prospect import Prospect
from relance.regions import countries
from relance.spec import Sequence, Weekday
from relance.workdays import wall_clock
from relance.zones import ZoneSource, zone_table

COUNTRIES = sorted(countries())
WITH_REGIONS = [country for country in COUNTRIES if countries()[country]]
EVERY_DAY = list(Weekday)
OTHER_ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns", "Pacific/Chatham", "Europe/Paris"]
CATEGORIES = ["public", "bank", "optional", "government", "half_day"]
TEMPLATES = {
    "email": {"subject": "s.j2", "html": "h.j2", "text": "t.j2"},
    "call": {"script": "c.j2"},
}


@cache
def weekend_of(country: str) -> frozenset[int]:
    return frozenset(holiday_data.country_holidays(country).weekend)


@cache
def zones_of(country: str) -> tuple[str, ...]:
    """The zones the tz database lists for ``country``."""
    return zone_table().get(country, ())


@cache
def closed(
    country: str, region: str | None, year: int, categories: tuple[str, ...]
) -> frozenset[date]:
    """Weekend (less working days moved onto it) and holidays, straight from the library."""
    supported = set(holiday_data.country_holidays(country).supported_categories)
    wanted = {"public"} | {category for category in categories if category in supported}
    subdiv = region.partition("-")[2] if region else None
    here = holiday_data.country_holidays(
        country, subdiv=subdiv, years=year, categories=tuple(wanted)
    )
    # Category by category, as a day some regions observe as public and others as bank
    # holiday is not a public holiday observed everywhere.
    observed = set().union(*(everywhere(country, year, (category,)) for category in wanted))
    day, weekend = date(year, 1, 1), set()
    while day.year == year:
        if here.is_weekend(day) and day not in here.weekend_workdays:
            weekend.add(day)
        day += timedelta(days=1)
    return frozenset(set(here) | observed | weekend)


@cache
def everywhere(
    country: str, year: int, categories: tuple[str, ...] = ("public",)
) -> frozenset[date]:
    """Days every region of ``country`` observes and its national calendar lacks."""
    subdivisions = holiday_data.country_holidays(country).subdivisions
    if not subdivisions:
        return frozenset()
    national = set(holiday_data.country_holidays(country, years=year, categories=categories))
    every = [
        set(holiday_data.country_holidays(country, subdiv=s, years=year, categories=categories))
        for s in subdivisions
    ]
    return frozenset(set.intersection(*every) - national)


@cache
def observed_everywhere() -> list[str]:
    """The countries with such days in 2026 or 2027 (Australia's observed Christmas...)."""
    return [c for c in WITH_REGIONS if everywhere(c, 2026) or everywhere(c, 2027)]


@st.composite
def places(draw: st.DrawFn) -> Prospect:
    country = draw(
        st.one_of(
            st.sampled_from(COUNTRIES),
            st.sampled_from(WITH_REGIONS),
            st.sampled_from(observed_everywhere()),
        )
    )
    subdivisions = countries()[country]
    region = draw(st.one_of(st.none(), st.sampled_from(subdivisions))) if subdivisions else None
    zone = draw(st.one_of(st.none(), st.sampled_from([*zones_of(country), *OTHER_ZONES])))
    example = phonenumbers.example_number(country)
    phone = ""
    if example is not None and draw(st.booleans()):
        phone = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    return Prospect(
        email="claire@example.com",
        country=country,
        region=f"{country}-{region}" if region else None,
        timezone=zone,
        phone=phone,
        deal_value=draw(st.one_of(st.just(0.0), st.floats(1, 1e7))),
        cycle_days=draw(st.one_of(st.just(0.0), st.floats(1, 720))),
    )


waits = st.one_of(
    st.integers(0, 600).map(lambda n: f"{n}m"),
    st.integers(0, 48).map(lambda n: f"{n / 2}h"),
    st.integers(0, 14).map(lambda n: f"{n / 2}d"),
    st.integers(0, 6).map(lambda n: f"{n} business days"),
)


@st.composite
def sequences(draw: st.DrawFn, country: str) -> Sequence:
    steps = [
        {
            "id": f"s{index}",
            "channel": channel,
            "wait": draw(waits),
            "stretch": draw(st.booleans()),
            "objective": "o",
            "templates": TEMPLATES[channel],
        }
        for index, channel in enumerate(
            draw(st.lists(st.sampled_from(["email", "call"]), min_size=1, max_size=5))
        )
    ]
    working = [day for index, day in enumerate(EVERY_DAY) if index not in weekend_of(country)]
    days: Any = "country"
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(EVERY_DAY), max_size=6, unique=True))
        days = sorted({*days, draw(st.sampled_from(working))}, key=EVERY_DAY.index)
        days = [day.value for day in days]
    first = draw(st.integers(0, 22 * 60))
    last = draw(st.integers(first + 30, 24 * 60 - 1))
    return Sequence.model_validate(
        {
            "id": "world",
            "name": "World",
            "timezone": draw(st.sampled_from(OTHER_ZONES)),
            "country": "FR",
            "send_window": {
                "days": days,
                "start": f"{first // 60:02d}:{first % 60:02d}",
                "end": f"{last // 60:02d}:{last % 60:02d}",
            },
            "holidays": {
                "country": True,
                "categories": draw(
                    st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True)
                ),
            },
            "cadence": {
                "deal_value_doubling": draw(st.floats(0, 2)),
                "cycle_doubling": draw(st.floats(0, 2)),
                "min_stretch": draw(st.floats(0.1, 1)),
                "max_stretch": draw(st.floats(1, 4)),
                "min_gap": draw(st.sampled_from(["0m", "30m", "4h", "1d", "2d"])),
            },
            "steps": steps,
        }
    )


@cache
def rare_days(country: str, region: str | None, year: int) -> tuple[date, ...]:
    """The holidays a plan is least likely to meet by chance: the region's own, and those
    every region observes but the national calendar lacks (else the national ones)."""
    national = holiday_data.country_holidays(country, years=year)
    subdivisions = holiday_data.country_holidays(country).subdivisions
    found: set[date] = set()
    if region:
        here = holiday_data.country_holidays(country, subdiv=region.partition("-")[2], years=year)
        found |= set(here) - set(national)
    if subdivisions:
        every = [
            set(holiday_data.country_holidays(country, subdiv=s, years=year)) for s in subdivisions
        ]
        found |= set.intersection(*every) - set(national)
    return tuple(sorted(found or set(national)))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Sequence, Prospect, datetime]:
    person = draw(places())
    assert person.country is not None
    plan = draw(sequences(person.country))
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 730 * 1440)))
    near = rare_days(person.country, person.region, draw(st.sampled_from([2026, 2027])))
    if near and draw(st.booleans()):  # just before a holiday, often a regional one
        day = draw(st.sampled_from(near)) - timedelta(days=draw(st.integers(0, 3)))
        start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(
            minutes=draw(st.integers(0, 1439))
        )
    return plan, person, start


def local(touch: PlannedTouch, plan: Sequence, person: Prospect) -> datetime:
    return touch.due_at.astimezone(ZoneInfo(person.timezone or plan.timezone))


@given(case=cases())
def test_no_touch_on_the_weekend_or_a_national_or_regional_holiday(
    case: tuple[Sequence, Prospect, datetime],
) -> None:
    plan, person, start = case
    assert person.country is not None
    categories = tuple(category.value for category in plan.holidays.categories)
    for touch in plan_touchpoints(plan, person, start):
        day = local(touch, plan, person).date()
        assert day not in closed(person.country, person.region, day.year, categories), touch
        assert EVERY_DAY[day.weekday()] in plan.send_window.days


@given(case=cases())
def test_every_touch_is_inside_the_window_in_local_time(
    case: tuple[Sequence, Prospect, datetime],
) -> None:
    plan, person, start = case
    window = plan.send_window
    for touch in plan_touchpoints(plan, person, start):
        assert window.start <= local(touch, plan, person).time() < window.end, touch
    # The zone is the prospect's, and where it came from is said.
    if person.timezone is None:
        assert person.timezone_source is ZoneSource.SEQUENCE
    else:
        assert person.timezone_source is not ZoneSource.SEQUENCE


@given(case=cases())
def test_due_times_never_go_backwards(case: tuple[Sequence, Prospect, datetime]) -> None:
    plan, person, start = case
    previous = start
    for touch in plan_touchpoints(plan, person, start):
        assert touch.due_at >= previous
        assert touch.nominal <= touch.due_at
        previous = touch.due_at


@given(case=cases())
def test_the_minimum_gap_holds(case: tuple[Sequence, Prospect, datetime]) -> None:
    plan, person, start = case
    gap = plan.cadence.min_gap
    zone = ZoneInfo(person.timezone or plan.timezone)
    touches = plan_touchpoints(plan, person, start)
    for earlier, later in pairwise(touches):
        if gap.unit.value == "days":
            spent = wall_clock(later.due_at, zone) - wall_clock(earlier.due_at, zone)
        else:
            spent = later.due_at - earlier.due_at
        assert spent >= gap.as_timedelta(), (earlier, later)


@given(case=cases(), more_deal=st.floats(1, 100), more_cycle=st.floats(1, 100))
def test_gaps_grow_with_deal_value_and_cycle_and_pinned_waits_do_not_move(
    case: tuple[Sequence, Prospect, datetime], more_deal: float, more_cycle: float
) -> None:
    plan, person, start = case
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
        if plan.step(before.step_id).stretch:
            assert before.stretched_wait <= after.stretched_wait
        else:
            assert before.stretched_wait == after.stretched_wait == before.wait.amount
        assert before.due_at <= after.due_at
