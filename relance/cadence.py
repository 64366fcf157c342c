"""The cadence planner: when each touch of a sequence falls for one prospect.

``plan_touchpoints(sequence, prospect, start)`` is a pure function. For each step on the
clock, in order:

1. the wait is stretched: business days become ``ceil(n * stretch)``, calendar days,
   hours and minutes are multiplied exactly; a step with ``stretch: false`` is not;
2. it is measured from the previous touch's due time (the first from ``start``):
   calendar and business days on the local wall clock (09:00 stays 09:00 across a DST
   change), hours and minutes in absolute time;
3. from the second touch on, it is raised to at least ``cadence.min_gap`` after the
   previous touch (the *nominal* time);
4. it moves to the next instant inside the send window on an open day of the prospect's
   country, region and zone (``moved`` says why: "Fri 2027-03-12: weekend in IL").

What holds, and what the tests check:

- due times never go backwards; each is at least ``min_gap`` after the previous one
  (minutes and hours: absolute time; days: local wall clock; business days: open days);
- every due time is on an open day (a window day, not a public holiday when
  ``holidays.country`` is on, not an ``extra`` date), inside ``[start, end)`` local time;
- a step with ``stretch: false`` keeps its wait as written (a pinned wait);
- the stretch is non-decreasing in deal value and in cycle length (over known values),
  every step of the chain is monotone, so a larger stretch never makes a due time earlier
  and never shortens a stretched wait. The gap between two due times can still shrink:
  when the earlier touch moves to the next open slot, it absorbs part of the next wait.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from relance.errors import InputError, NotFoundError
from relance.prospect import Prospect
from relance.spec import Cadence, Channel, Sequence, Wait, WaitUnit
from relance.workdays import WorkCalendar, work_calendar

ROUNDING_SLACK = 1e-9
"""Absorbs float noise before rounding business days up: 3 x 1.0000000000000002 is 3."""

_LOG2_LIMIT = 1_000.0
"""The stretch exponent is bounded before exponentiation so that huge inputs cannot overflow."""


def stretch_factor(cadence: Cadence, deal_value: float | None, cycle_days: float | None) -> float:
    """How much the waits stretch for this deal value and sales-cycle length.

    ``(1 + deal_value_doubling) ** log2(deal_value / reference_deal_value)
    * (1 + cycle_doubling) ** log2(cycle_days / reference_cycle_days)``, clamped to
    ``[min_stretch, max_stretch]``.

    ``None`` means unknown: that term is 1 (the waits apply as written). A known value
    must be positive. Unknown is not a point on the scale, so the factor is monotone
    non-decreasing in each input over positive values, and says nothing about unknown
    versus known; a Prospect's 0 ("unknown") becomes ``None`` in ``plan_touchpoints``.
    """
    exponent = 0.0
    for value, reference, doubling, name in (
        (deal_value, cadence.reference_deal_value, cadence.deal_value_doubling, "deal value"),
        (cycle_days, cadence.reference_cycle_days, cadence.cycle_doubling, "cycle length"),
    ):
        if value is None:
            continue
        if not value > 0:
            raise ValueError(f"expected a positive {name} or None (unknown), got {value!r}")
        if doubling > 0:
            # A difference of logarithms: value / reference can underflow to 0.
            exponent += (math.log2(value) - math.log2(reference)) * math.log2(1 + doubling)
    exponent = min(max(exponent, -_LOG2_LIMIT), _LOG2_LIMIT)
    return min(max(math.exp2(exponent), cadence.min_stretch), cadence.max_stretch)


def known(value: float) -> float | None:
    """A Prospect's deal value or cycle length, with its 0 ("unknown") as None."""
    return value if value > 0 else None


def stretch_wait(wait: Wait, stretch: float) -> float:
    """The amount of ``wait`` once stretched, in the wait's own unit."""
    if wait.unit is WaitUnit.BUSINESS_DAYS:
        return float(max(math.ceil(wait.amount * stretch - ROUNDING_SLACK), 0))
    return wait.amount * stretch


@dataclass(frozen=True, slots=True)
class PlannedTouch:
    """One touch of one prospect, placed in time."""

    step_id: str
    channel: Channel
    position: int
    """Index of the step in ``sequence.steps``."""
    due_at: datetime
    """When the touch is due, UTC."""
    local_due_at: datetime
    """The same instant in the prospect's zone. Compare ``due_at``: by PEP 495, an aware
    time in a repeated hour never equals a time in another zone."""
    stretch: float
    nominal: datetime
    """The due time before it moved into the send window (UTC)."""
    moved: list[str]
    """Why it falls when it does: holidays that business days skipped, the minimum gap,
    the send window, the closed days it moved over."""
    wait: Wait
    """The wait as written in the sequence."""
    stretched_wait: float
    """The wait once stretched, in the unit of ``wait``."""


@dataclass(frozen=True, slots=True)
class _TimedStep:
    position: int
    step_id: str
    channel: Channel
    wait: Wait
    stretch: bool
    """False for a pinned wait: applied as written, whatever the deal value and cycle."""


class _CompiledSequence:
    """What the hot loop needs from a Sequence, read once per sequence object."""

    def __init__(self, sequence: Sequence) -> None:
        self.sequence = sequence
        self.steps = tuple(
            _TimedStep(position, step.id, step.channel, step.wait, step.stretch)
            for position, step in enumerate(sequence.steps)
            if step.timed
        )
        self.positions = {step.id: position for position, step in enumerate(sequence.steps)}
        self.cadence = sequence.cadence
        self.min_gap = sequence.cadence.min_gap
        self.min_gap_text = f"raised to the minimum gap of {sequence.cadence.min_gap}"
        self._calendars: dict[tuple[str, str | None, str], WorkCalendar] = {}

    def calendar(self, country: str, region: str | None, zone: str) -> WorkCalendar:
        key = (country, region, zone)
        found = self._calendars.get(key)
        if found is None:
            sequence = self.sequence
            found = work_calendar(country, sequence.holidays, sequence.send_window, zone, region)
            self._calendars[key] = found
        return found

    def steps_after(self, step_id: str | None) -> tuple[_TimedStep, ...]:
        if step_id is None:
            return self.steps
        position = self.positions.get(step_id)
        if position is None:
            raise NotFoundError(f"no step {step_id!r} in sequence {self.sequence.id!r}")
        return tuple(step for step in self.steps if step.position > position)


_COMPILED: OrderedDict[int, _CompiledSequence] = OrderedDict()
_COMPILED_LIMIT = 64


def _compiled(sequence: Sequence) -> _CompiledSequence:
    # Keyed by identity: the entry holds the sequence, so its id cannot be reused meanwhile.
    found = _COMPILED.get(id(sequence))
    if found is not None and found.sequence is sequence:
        _COMPILED.move_to_end(id(sequence))
        return found
    found = _CompiledSequence(sequence)
    _COMPILED[id(sequence)] = found
    if len(_COMPILED) > _COMPILED_LIMIT:
        _COMPILED.popitem(last=False)
    return found


def _shift(
    calendar: WorkCalendar,
    instant: datetime,
    unit: WaitUnit,
    amount: float,
    reasons: list[str] | None = None,
) -> datetime:
    if amount <= 0:
        return instant
    if unit is WaitUnit.MINUTES:
        return instant + timedelta(minutes=amount)
    if unit is WaitUnit.HOURS:
        return instant + timedelta(hours=amount)
    if unit is WaitUnit.DAYS:
        return calendar.add_days(instant, amount)
    return calendar.add_business_days(instant, int(amount), reasons)


_SECONDS = {WaitUnit.MINUTES: 60, WaitUnit.HOURS: 3600}


def _covers_min_gap(unit: WaitUnit, amount: float, gap: Wait) -> bool:
    """True when a wait of ``amount`` ``unit`` can never be shorter than ``gap``."""
    if gap.amount <= 0:
        return True
    if unit in _SECONDS and gap.unit in _SECONDS:
        return amount * _SECONDS[unit] >= gap.amount * _SECONDS[gap.unit]
    if unit is gap.unit or (unit is WaitUnit.BUSINESS_DAYS and gap.unit is WaitUnit.DAYS):
        return amount >= gap.amount
    return False


PLANNABLE = (date(1900, 1, 1), date(2199, 12, 31))
"""The days a sequence may start on: far enough from the ends of the calendar that its
waits, the search for an open day and the holiday tables all stay within range."""


def check_plannable(start: datetime, what: str = "start") -> None:
    """InputError unless ``start`` falls within ``PLANNABLE`` (its own date, zone or not)."""
    low, high = PLANNABLE
    if not low <= start.date() <= high:
        raise InputError(
            f"{what}: expected a time between {low} and {high}, got {start.isoformat()}"
        )


def prospect_calendar(
    compiled: _CompiledSequence, sequence: Sequence, prospect: Prospect
) -> WorkCalendar:
    """The calendar of ``prospect``: its country and region (a region only with the country
    it belongs to), its zone, else the sequence's."""
    country = prospect.country or sequence.country
    region = prospect.region if prospect.country else None
    return compiled.calendar(country, region, prospect.timezone or sequence.timezone)


def calendar_for(sequence: Sequence, prospect: Prospect) -> WorkCalendar:
    """The ``WorkCalendar`` ``plan_touchpoints`` uses for ``prospect`` in ``sequence``."""
    return prospect_calendar(_compiled(sequence), sequence, prospect)


def plan_touchpoints(
    sequence: Sequence, prospect: Prospect, start: datetime, *, after_step: str | None = None
) -> list[PlannedTouch]:
    """Due times of the steps on the clock, the first measured from ``start``.

    ``after_step`` plans only the steps after that one (resume): the first of them is
    measured from ``start`` and, being the first planned, is not held to ``min_gap``.
    ``start`` must be timezone-aware. Raises NotFoundError for an unknown ``after_step``.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware start, got {start.isoformat()}")
    check_plannable(start)
    compiled = _compiled(sequence)
    calendar = prospect_calendar(compiled, sequence, prospect)
    zone = calendar.zone
    stretch = stretch_factor(
        compiled.cadence, known(prospect.deal_value), known(prospect.cycle_days)
    )
    gap = compiled.min_gap
    cursor = start.astimezone(UTC)
    first = True
    touches: list[PlannedTouch] = []
    for step in compiled.steps_after(after_step):
        wait = step.wait
        amount = stretch_wait(wait, stretch if step.stretch else 1.0)
        moved: list[str] = []
        try:
            nominal = _shift(calendar, cursor, wait.unit, amount, moved)
            if not first and not _covers_min_gap(wait.unit, amount, gap):
                gap_reasons = [compiled.min_gap_text]
                floor = _shift(calendar, cursor, gap.unit, gap.amount, gap_reasons)
                if floor > nominal:
                    nominal, moved = floor, gap_reasons
            due = calendar.snap(nominal, moved)
        except OverflowError:
            raise InputError(
                f"step {step.step_id}: its wait of {wait} goes past the end of the calendar"
            ) from None
        touches.append(
            PlannedTouch(
                step_id=step.step_id,
                channel=step.channel,
                position=step.position,
                due_at=due,
                local_due_at=due.astimezone(zone),
                stretch=stretch,
                nominal=nominal,
                moved=moved,
                wait=wait,
                stretched_wait=amount,
            )
        )
        cursor = due
        first = False
    return touches
