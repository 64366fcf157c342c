"""Working days and send windows in a prospect's zone: when a touch may fall.

A ``WorkCalendar`` answers, for one country, holidays spec, send window and time zone,
which local days are open and at which instants the window is open on them. Instants go
in and come out as timezone-aware UTC datetimes; days are local dates.

Wall-clock rules across daylight-saving changes, chosen so that every function here is
monotone (a later input never gives an earlier output):

- a local time that does not exist (the spring-forward gap) means the first instant after
  the gap: 02:30 on a day when clocks jump from 02:00 to 03:00 means 03:00;
- an ambiguous local time (fall back) means its first occurrence (``fold=0``);
- the wall clock of an instant in the second pass of a repeated hour reads as the end of
  that hour (03:00 for 02:10 after clocks went back from 03:00 to 02:00), since the
  clock has already shown that time once;
- the window of a day is every instant whose local date is that day and whose local time
  is in ``[start, end)``: on a spring-forward day a start inside the gap opens at the jump;
  on a fall-back day the repeated hour may open the window twice.

A day is open when it is a working day of the prospect's country (its own weekend, from
the ``holidays`` library: Friday-Saturday in Israel, Friday in Iran; unless the sequence
turns the country's calendar off with ``holidays.country: false``), one of the window's
``days`` when they are listed (they narrow the country's week, never widen it), not an
``extra`` date, and not a holiday of the country, of the prospect's region, or of every
region of the country (``everywhere_holidays``), in the sequence's holiday categories.
Holidays and weekends are built once per (country, region, year, categories).
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from relance.country_calendars import closed_days, weekend_days
from relance.errors import InputError
from relance.spec import HolidayCategory, Holidays, SendWindow, Weekday

ONE_DAY = timedelta(days=1)
HORIZON_DAYS = 3 * 366
"""How far ahead the calendar looks for an open day before giving up."""

WEEKDAYS = tuple(Weekday)
"""Monday first, as ``date.weekday()`` counts."""
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

Span = tuple[datetime, datetime]
"""An open stretch of time ``[opens, closes)`` in UTC."""


def day_label(day: date) -> str:
    """ "Sat 2026-11-28", whatever the process locale."""
    return f"{WEEKDAY_NAMES[day.weekday()]} {day.isoformat()}"


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in ``(before, after]`` with the UTC offset ``after`` has."""
    target = _offset(after, zone)
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(datetime.fromtimestamp(middle, UTC), zone) == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def resolve_local(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of the naive local time ``wall`` in ``zone``.

    Ambiguous times take their first occurrence; times in a gap take the end of the gap.
    """
    wall = wall.replace(tzinfo=None, fold=0)
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(zone, min(instant, other), max(instant, other))


def wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local time of ``instant``, never going backwards across a fall-back."""
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    if not local.fold:
        return wall
    first = local.replace(fold=0)
    turn = _transition(zone, first.astimezone(UTC), instant.astimezone(UTC))
    before = first.utcoffset()
    assert before is not None
    return (turn + before).replace(tzinfo=None)


class WorkCalendar:
    """Open days and send-window instants for one (country, region, holidays, window, zone)."""

    def __init__(
        self,
        country: str | None,
        holidays: Holidays,
        window: SendWindow,
        zone: ZoneInfo,
        region: str | None = None,
    ) -> None:
        self.country = country
        self.region = region
        self.zone = zone
        self.public = holidays.country and country is not None
        # Public holidays always count; the sequence's other categories add to them.
        self.categories = tuple(
            dict.fromkeys(["public", *(category.value for category in holidays.categories)])
        )
        self.extra = frozenset(holidays.extra)
        self.weekdays = frozenset(WEEKDAYS.index(day) for day in window.days)
        self.weekend_text = f"weekend in {country}" if country else "weekend"
        self.start = window.start
        self.end = window.end
        self.before_start = f"before {window.start:%H:%M} send window start"
        self.after_end = f"after {window.end:%H:%M} send window end"
        self._days: dict[date, tuple[str | None, tuple[Span, ...], bool]] = {}
        self._later: dict[tuple[date, int], tuple[date, tuple[str, ...]]] = {}
        self._steady: dict[date, timedelta | None] = {}

    # Days ------------------------------------------------------------------------------

    def closed_reason(self, day: date) -> str | None:
        """Why nothing is sent on ``day`` ("Fri 2027-03-12: weekend in IL"), None if open."""
        return self._day(day)[0]

    def is_working_day(self, day: date) -> bool:
        return self._day(day)[0] is None

    def spans(self, day: date) -> tuple[Span, ...]:
        """The open stretches of ``day``'s send window in UTC (none on a closed day)."""
        return self._day(day)[1]

    def _day(self, day: date) -> tuple[str | None, tuple[Span, ...], bool]:
        known = self._days.get(day)
        if known is None:
            reason, holiday = self._closure(day)
            known = (reason, () if reason else self._window_spans(day), holiday)
            self._days[day] = known
        return known

    def _closure(self, day: date) -> tuple[str | None, bool]:
        """(why ``day`` is closed, whether for a holiday), (None, False) when it is open."""
        label = day_label(day)
        if self.public and day in weekend_days(self.country or "", day.year):
            return f"{label}: {self.weekend_text}", False
        if day.weekday() not in self.weekdays:
            return f"{label}: not a send day", False
        if day in self.extra:
            return f"{label}: closed (extra holiday)", True
        if self.public and self.country is not None:
            name = closed_days(self.country, self.region, day.year, self.categories).get(day)
            if name is not None:
                return f"{label}: {name}", True
        return None, False

    def _window_spans(self, day: date) -> tuple[Span, ...]:
        zone = self.zone
        opens = datetime.combine(day, self.start)
        closes = datetime.combine(day, self.end)
        before = opens.replace(tzinfo=zone).utcoffset()
        after = closes.replace(tzinfo=zone, fold=1).utcoffset()
        assert before is not None and after is not None
        if before == after:
            return (((opens - before).replace(tzinfo=UTC), (closes - before).replace(tzinfo=UTC)),)
        # The clocks change on this day, near or inside the window.
        turn = _transition(
            zone,
            (opens - max(before, after)).replace(tzinfo=UTC),
            (closes - min(before, after)).replace(tzinfo=UTC),
        )
        candidates = (
            (
                (opens - before).replace(tzinfo=UTC),
                min((closes - before).replace(tzinfo=UTC), turn),
            ),
            (max((opens - after).replace(tzinfo=UTC), turn), (closes - after).replace(tzinfo=UTC)),
        )
        return tuple((low, high) for low, high in candidates if low < high)

    # Instants --------------------------------------------------------------------------

    def next_slot(self, instant: datetime) -> datetime:
        """The earliest instant >= ``instant`` inside the send window on an open day (UTC)."""
        if instant.tzinfo is None:
            raise ValueError(f"expected a timezone-aware instant, got {instant.isoformat()}")
        return self.snap(instant.astimezone(UTC), None)

    def snap(self, instant: datetime, reasons: list[str] | None) -> datetime:
        """``next_slot`` for a UTC ``instant``, appending to ``reasons`` why it moved."""
        local = instant.astimezone(self.zone)
        day = local.date()
        first = True
        for _ in range(HORIZON_DAYS):
            reason, spans, _holiday = self._day(day)
            if reason is None:
                for opens, closes in spans:
                    if closes > instant:
                        if opens <= instant:
                            return instant
                        if first and reasons is not None:
                            reasons.append(self._time_reason(local.time()))
                        return opens
                if first and reasons is not None:
                    reasons.append(
                        self._time_reason(local.time())
                        if spans
                        else f"{day_label(day)}: no such local time (clock change)"
                    )
            elif reasons is not None:
                reasons.append(reason)
            first = False
            day += ONE_DAY
        raise InputError(f"no open send window within {HORIZON_DAYS} days of {instant}")

    def _time_reason(self, local: time) -> str:
        return self.before_start if local < self.start else self.after_end

    def add_days(self, instant: datetime, days: float) -> datetime:
        """``days`` calendar days later on the local wall clock (09:00 stays 09:00)."""
        if days <= 0:
            return instant
        return self.resolve(wall_clock(instant, self.zone) + timedelta(days=days))

    def add_business_days(
        self, instant: datetime, count: int, reasons: list[str] | None = None
    ) -> datetime:
        """The same local time ``count`` open days later (Sat + 1 business day = Mon).

        Holidays passed over while counting are appended to ``reasons`` (weekends are not).
        """
        if count <= 0:
            return instant
        wall = wall_clock(instant, self.zone)
        key = (wall.date(), count)
        found = self._later.get(key)
        if found is None:
            found = self._later[key] = self._open_day_after(wall.date(), count)
        day, skipped = found
        if reasons is not None and skipped:
            reasons.extend(skipped)
        return self.resolve(datetime.combine(day, wall.time()))

    def _open_day_after(self, day: date, count: int) -> tuple[date, tuple[str, ...]]:
        skipped: list[str] = []
        for _ in range(HORIZON_DAYS + count):
            day += ONE_DAY
            reason, _spans, holiday = self._day(day)
            if reason is None:
                count -= 1
                if count == 0:
                    return day, tuple(skipped)
            elif holiday:
                skipped.append(f"business days skip {reason}")
        raise InputError(f"no open day within {HORIZON_DAYS} days of {day}")

    def resolve(self, wall: datetime) -> datetime:
        """``resolve_local`` in this calendar's zone, quick on days without a clock change."""
        day = wall.date()
        if day in self._steady:
            offset = self._steady[day]
        else:
            offset = self._steady[day] = _steady_offset(self.zone, day)
        if offset is None:
            return resolve_local(wall, self.zone)
        return (wall - offset).replace(tzinfo=UTC)


def _steady_offset(zone: ZoneInfo, day: date) -> timedelta | None:
    """The UTC offset of ``zone`` all through local ``day``, None if the clocks change."""
    midnight = datetime.combine(day, time(), tzinfo=zone)
    following = datetime.combine(day + ONE_DAY, time(), tzinfo=zone)
    offsets = {
        moment.replace(fold=fold).utcoffset() for moment in (midnight, following) for fold in (0, 1)
    }
    return offsets.pop() if len(offsets) == 1 else None


@functools.lru_cache(maxsize=1024)
def _cached_calendar(
    country: str | None,
    region: str | None,
    holidays: tuple[bool, tuple[HolidayCategory, ...], tuple[date, ...]],
    window: tuple[tuple[Weekday, ...], time, time],
    zone: str,
) -> WorkCalendar:
    public, categories, extra = holidays
    days, start, end = window
    return WorkCalendar(
        country,
        Holidays(country=public, categories=list(categories), extra=list(extra)),
        SendWindow(days=list(days), start=start, end=end),
        ZoneInfo(zone),
        region,
    )


def work_calendar(
    country: str | None,
    holidays: Holidays,
    window: SendWindow,
    zone: str,
    region: str | None = None,
) -> WorkCalendar:
    """A shared ``WorkCalendar`` for these settings: its day cache is reused across calls."""
    return _cached_calendar(
        country,
        region,
        (holidays.country, tuple(holidays.categories), tuple(sorted(set(holidays.extra)))),
        (tuple(sorted(set(window.days), key=WEEKDAYS.index)), window.start, window.end),
        zone,
    )
