"""Each country's own calendar, from the ``holidays`` library: its weekend, its holidays
by category, its regions' holidays, and the days every region observes.

Each table is built once per (country, region, year, categories) and kept: the planner
asks about one day at a time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date, timedelta
from types import MappingProxyType

import holidays as holiday_data

from relance.regions import countries, subdivision

ONE_DAY = timedelta(days=1)


def known_country(code: str) -> bool:
    """True if the holidays library knows the public holidays of ``code`` (e.g. "FR")."""
    return code in countries()


def _category_word(category: str) -> str:
    return "public holiday" if category == "public" else f"{category.replace('_', ' ')} holiday"


@functools.lru_cache(maxsize=8192)
def _named(country: str, subdiv: str | None, year: int, category: str) -> Mapping[date, str]:
    """One category of holidays of ``country`` (and ``subdiv``) in ``year``, English names."""
    try:
        found = holiday_data.country_holidays(
            country, subdiv=subdiv, years=year, categories=(category,), language="en_US"
        )
    except (NotImplementedError, ValueError):
        return MappingProxyType({})
    return MappingProxyType({day: str(name) for day, name in found.items()})


@functools.cache
def _categories(country: str) -> frozenset[str]:
    return frozenset(holiday_data.country_holidays(country).supported_categories)


@functools.lru_cache(maxsize=4096)
def everywhere_holidays(country: str, year: int, category: str = "public") -> Mapping[date, str]:
    """The days of ``year`` every region of ``country`` observes and its national calendar
    lacks: "Christmas Day (observed)" on 27 December 2027 in each Australian state."""
    subdivisions = countries().get(country, ())
    if not subdivisions:
        return MappingProxyType({})
    calendars = [_named(country, subdivision, year, category) for subdivision in subdivisions]
    national = _named(country, None, year, category)
    common = set(calendars[0]).intersection(*calendars[1:]).difference(national)
    return MappingProxyType({day: calendars[0][day] for day in sorted(common)})


def public_holidays(country: str, year: int) -> Mapping[date, str]:
    """The public holidays of ``country`` in ``year`` with their English names.

    Empty for a country the holidays library does not know: validation reports it.
    """
    return _named(country, None, year, "public")


@functools.lru_cache(maxsize=4096)
def closed_days(
    country: str, region: str | None, year: int, categories: tuple[str, ...]
) -> Mapping[date, str]:
    """Why each holiday of ``year`` is closed for a prospect of ``country`` and ``region``:
    "public holiday (Christmas Day)", "public holiday in DE-BY (Epiphany)", "bank holiday
    (...)", "public holiday in every region of AU (...)". Categories the country does not
    have are ignored."""
    if country not in countries():
        return MappingProxyType({})
    supported = _categories(country)
    reasons: dict[date, str] = {}
    for category in categories:
        if category not in supported:
            continue
        word = _category_word(category)
        for day, name in _named(country, None, year, category).items():
            reasons.setdefault(day, f"{word} ({name})")
        if region is not None:
            for day, name in _named(country, subdivision(region), year, category).items():
                reasons.setdefault(day, f"{word} in {region} ({name})")
        for day, name in everywhere_holidays(country, year, category).items():
            reasons.setdefault(day, f"{word} in every region of {country} ({name})")
    return MappingProxyType(reasons)


@functools.lru_cache(maxsize=4096)
def weekend_days(country: str, year: int) -> frozenset[date]:
    """The days of ``year`` that are ``country``'s weekend (the library's rule for each date,
    so Saudi Arabia's move from Thu-Fri to Fri-Sat in 2013 is kept), less working days moved
    onto a weekend."""
    if country not in countries():
        return _saturday_sunday(year)
    calendar = holiday_data.country_holidays(country, years=year)
    moved = calendar.weekend_workdays
    return frozenset(day for day in _every_day(year, None) if calendar.is_weekend(day)) - moved


@functools.lru_cache(maxsize=512)
def _saturday_sunday(year: int) -> frozenset[date]:
    return frozenset(_every_day(year, {5, 6}))


def _every_day(year: int, weekdays: set[int] | None) -> list[date]:
    day, days = date(year, 1, 1), []
    while day.year == year:
        if weekdays is None or day.weekday() in weekdays:
            days.append(day)
        day += ONE_DAY
    return days
