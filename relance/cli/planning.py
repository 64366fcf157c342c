"""``relance plan``: when each touch of a sequence would fall for one prospect, and why."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from relance.cadence import PlannedTouch, known, plan_touchpoints, stretch_factor
from relance.catalog import resolve_sequence
from relance.claims import queued_sends, sequence_caps
from relance.cli.app import command, stderr
from relance.errors import InputError
from relance.localenames import country_code
from relance.prospect import Prospect
from relance.settings import Settings
from relance.spec import Cadence, Channel, Sequence, WaitUnit
from relance.store import Store
from relance.throttle import Caps, next_allowed, recipient_domain
from relance.workdays import WEEKDAY_NAMES, known_country, resolve_local, work_calendar

PLACEHOLDER_EMAIL = "prospect@example.com"
"""``plan`` needs no real address: the plan depends on value, cycle, zone and country."""

_UNIT_SUFFIX = {WaitUnit.MINUTES: "m", WaitUnit.HOURS: "h", WaitUnit.DAYS: "d"}


@command("plan")
def plan(
    sequence: Annotated[
        str,
        typer.Argument(help="Sequence id (sequences/<id>.yaml) or path to a YAML file."),
    ],
    deal_value: Annotated[
        float,
        typer.Option("--deal-value", min=0, help="Expected deal value; 0: unknown (as written)."),
    ] = 0,
    cycle_days: Annotated[
        float,
        typer.Option("--cycle-days", min=0, help="Expected sales cycle in days; 0: unknown."),
    ] = 0,
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help="Enrollment time, ISO 8601 (2026-03-02T09:00); without an offset, in the "
            "prospect's zone. Default: now.",
            show_default=False,
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="Prospect's IANA zone. Default: the sequence's."),
    ] = None,
    country: Annotated[
        str | None,
        typer.Option("--country", help="Prospect's country (FR, US...). Default: the sequence's."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show when each touch falls for one prospect: waits stretched, days skipped.

    Example: [bold]relance plan outbound-2w --deal-value 25000 --cycle-days 90
    --start 2026-12-24T18:00 --timezone Europe/Paris --country FR[/bold]
    """
    for option, value in (("--deal-value", deal_value), ("--cycle-days", cycle_days)):
        if not math.isfinite(value):
            raise InputError(f"{option}: expected a number, got {value}")
    spec = resolve_sequence(sequence, Settings())
    prospect = Prospect(
        email=PLACEHOLDER_EMAIL,
        deal_value=deal_value,
        cycle_days=cycle_days,
        timezone=check_zone(timezone),
        country=check_country(country),
    )
    zone = ZoneInfo(prospect.timezone or spec.timezone)
    region = prospect.country or spec.country
    if spec.holidays.country and not known_country(region):
        stderr.print(f"warning: no public holidays known for {region}", markup=False)
    began = read_start(start, zone)
    settings = Settings()
    touches = forecast_caps(spec, prospect, plan_touchpoints(spec, prospect, began), settings)
    if as_json:
        typer.echo(json.dumps([touch_json(touch) for touch in touches], indent=2))
        return
    print_plan(Console(highlight=False, soft_wrap=False), spec, prospect, began, touches)


def forecast_caps(
    sequence: Sequence, prospect: Prospect, touches: list[PlannedTouch], settings: Settings
) -> list[PlannedTouch]:
    """Move the emails a sender cap would hold back, given the emails already queued.

    Only when caps are set (settings or the sequence's throttle) and a store exists: the
    forecast joins the touches planned or sent in the store, as the dispatcher will.
    """
    caps = sequence_caps(
        sequence,
        Caps(
            hourly_cap=settings.sender_hourly_cap,
            daily_cap=settings.sender_daily_cap,
            min_spacing=timedelta(seconds=settings.sender_min_spacing_seconds),
            domain_daily_cap=settings.domain_daily_cap,
        ),
    )
    emails = [touch for touch in touches if touch.channel is Channel.EMAIL]
    sqlite_file = settings.data_dir / "relance.db"
    if not caps.active or not emails or (not settings.database_url and not sqlite_file.exists()):
        return touches
    log = queued_sends(
        Store(settings.store_url),
        emails[0].due_at - timedelta(days=1),
        emails[-1].due_at + timedelta(days=7),
    )
    calendar = work_calendar(
        prospect.country or sequence.country,
        sequence.holidays,
        sequence.send_window,
        prospect.timezone or sequence.timezone,
    )
    # ``plan`` has no real address: no recipient-domain cap applies to its placeholder.
    domain = "" if prospect.email == PLACEHOLDER_EMAIL else recipient_domain(prospect.email)
    forecast: list[PlannedTouch] = []
    for touch in touches:
        if touch.channel is Channel.EMAIL:
            due = touch.due_at
            allowed, cap = next_allowed(caps, log, domain, due)
            while allowed > due:
                due = calendar.next_slot(allowed)
                allowed, cap_again = next_allowed(caps, log, domain, due)
                cap = cap_again or cap
            if due != touch.due_at:
                reason = (
                    f"{cap} reached by the emails already queued: moved to {due:%Y-%m-%d %H:%M} UTC"
                )
                touch = replace(
                    touch,
                    due_at=due,
                    local_due_at=due.astimezone(ZoneInfo(prospect.timezone or sequence.timezone)),
                    moved=[*touch.moved, reason],
                )
            log.note(touch.due_at, domain)
        forecast.append(touch)
    return forecast


# Reading the options -----------------------------------------------------------------


def check_zone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f'--timezone: expected an IANA time zone such as "Europe/Paris", got {name!r}'
        ) from None
    return name


def check_country(code: str | None) -> str | None:
    if code is None:
        return None
    value = country_code(code)
    if value is None:
        raise InputError(
            f'--country: expected a country such as "FR", "France" or "Frankreich", got {code!r}'
        )
    return value


def read_start(text: str | None, zone: ZoneInfo) -> datetime:
    """``--start`` as aware UTC: with an offset as given, without one in ``zone``; else now."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--start: expected an ISO 8601 time such as 2026-03-02T09:00 "
            f"or 2026-03-02T09:00+01:00, got {text!r}"
        ) from None
    if value.tzinfo is None:
        return resolve_local(value, zone)
    return value.astimezone(UTC)


# Writing the plan --------------------------------------------------------------------


def format_amount(amount: float) -> str:
    return f"{amount:.2f}".rstrip("0").rstrip(".")


def format_stretched(touch: PlannedTouch) -> str:
    """The stretched wait, written like a wait: "4.31d", "3 business days"."""
    amount = touch.stretched_wait
    if touch.wait.unit is WaitUnit.BUSINESS_DAYS:
        return f"{amount:.0f} business day{'' if amount == 1 else 's'}"
    return f"{format_amount(amount)}{_UNIT_SUFFIX[touch.wait.unit]}"


def format_local(instant: datetime) -> str:
    """ "Mon 2026-12-28 09:00 CET": the weekday whatever the process locale."""
    return f"{WEEKDAY_NAMES[instant.weekday()]} {instant:%Y-%m-%d %H:%M %Z}"


def touch_json(touch: PlannedTouch) -> dict[str, Any]:
    return {
        "step_id": touch.step_id,
        "channel": touch.channel.value,
        "position": touch.position,
        "wait": str(touch.wait),
        "stretched_wait": format_stretched(touch),
        "stretch": round(touch.stretch, 6),
        "nominal_at": touch.nominal.isoformat(),
        "due_at": touch.due_at.isoformat(),
        "local_due_at": touch.local_due_at.isoformat(),
        "moved": touch.moved,
    }


def describe_stretch(cadence: Cadence, deal_value: float, cycle_days: float) -> str:
    """ "stretch x1.23: deal 25,000 vs reference 10,000 (+15%/doubling), cycle ..." """
    deal, cycle = known(deal_value), known(cycle_days)
    stretch = stretch_factor(cadence, deal, cycle)
    unbounded = cadence.model_copy(update={"min_stretch": 1e-300, "max_stretch": 1e300})
    free = stretch_factor(unbounded, deal, cycle)
    parts = [
        f"deal {deal:,.0f} vs reference {cadence.reference_deal_value:,.0f} "
        f"(+{cadence.deal_value_doubling:.0%}/doubling)"
        if deal is not None
        else "deal value unknown",
        f"cycle {cycle:g} d vs {cadence.reference_cycle_days:g} d "
        f"(+{cadence.cycle_doubling:.0%}/doubling)"
        if cycle is not None
        else "cycle unknown",
    ]
    text = f"stretch x{stretch:.2f}: {', '.join(parts)}"
    if free != stretch:
        text += f" (x{free:.2f}, clamped to [{cadence.min_stretch:g}, {cadence.max_stretch:g}])"
    return text


def print_plan(
    out: Console,
    sequence: Sequence,
    prospect: Prospect,
    start: datetime,
    touches: list[PlannedTouch],
) -> None:
    zone = ZoneInfo(prospect.timezone or sequence.timezone)
    region = prospect.country or sequence.country
    count = f"{len(touches)} touch{'es' if len(touches) != 1 else ''}"
    out.print(
        f"{sequence.id}: {count} for a prospect in {zone.key} ({region}), "
        f"enrolled {format_local(start.astimezone(zone))}",
        markup=False,
    )
    out.print(
        describe_stretch(sequence.cadence, prospect.deal_value, prospect.cycle_days), markup=False
    )
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    for header in ("step", "channel", "wait", f"due ({zone.key})", "UTC", "why"):
        table.add_column(header, overflow="fold")
    for touch in touches:
        written, stretched = str(touch.wait), format_stretched(touch)
        cells = (
            touch.step_id,
            touch.channel.value,
            written if stretched == written else f"{written} → {stretched}",
            format_local(touch.local_due_at),
            f"{touch.due_at:%Y-%m-%d %H:%M}",
            "; ".join(touch.moved),
        )
        table.add_row(*(Text(cell) for cell in cells))
    out.print(table)
    on_booking = [step for step in sequence.steps if not step.timed]
    if on_booking:
        names = ", ".join(f"{step.id} ({step.channel.value})" for step in on_booking)
        out.print(f"On booking, not on the clock: {names}", markup=False)
