"""Sender throttles: how many emails one sender may send, and how close together.

Pure: the claim loads the sender's recent sends into a ``SendLog`` and asks
``next_allowed`` for each email it would send; a touch over a cap waits for the first
instant the cap allows, moved into the prospect's send window by the caller.

    hourly_cap          at most N emails in any rolling hour
    daily_cap           at most N emails in any rolling 24 hours
    min_spacing         at least this long between two emails of the sender
    domain_daily_cap    at most N emails to one recipient domain in any rolling 24 hours

Meeting confirmations are transactional (the prospect asked for them): never throttled.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Caps:
    hourly_cap: int | None = None
    daily_cap: int | None = None
    min_spacing: timedelta = timedelta(0)
    domain_daily_cap: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.hourly_cap or self.daily_cap or self.min_spacing or self.domain_daily_cap)


@dataclass
class SendLog:
    """The sender's sends of the last 24 hours, in time order, overall and per domain."""

    times: list[datetime] = field(default_factory=list)
    by_domain: dict[str, list[datetime]] = field(default_factory=lambda: defaultdict(list))

    def note(self, at: datetime, domain: str) -> None:
        bisect.insort(self.times, at)
        bisect.insort(self.by_domain[domain], at)


def recipient_domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower()


def _free_at(times: list[datetime], cap: int, window: timedelta, now: datetime) -> datetime:
    """When a send becomes possible under ``cap`` sends per rolling ``window``."""
    recent = times[bisect.bisect_right(times, now - window) : bisect.bisect_right(times, now)]
    if len(recent) < cap:
        return now
    # The oldest send among the last ``cap`` must leave the window first.
    return recent[len(recent) - cap] + window


def next_allowed(caps: Caps, log: SendLog, domain: str, now: datetime) -> tuple[datetime, str]:
    """The first instant >= now at which one more email to ``domain`` respects every cap,
    and the cap that decided it ("" when the email may go now)."""
    limits: list[tuple[datetime, str]] = [(now, "")]
    if caps.hourly_cap:
        limits.append(
            (_free_at(log.times, caps.hourly_cap, HOUR, now), f"hourly cap of {caps.hourly_cap}")
        )
    if caps.daily_cap:
        limits.append(
            (_free_at(log.times, caps.daily_cap, DAY, now), f"daily cap of {caps.daily_cap}")
        )
    if caps.min_spacing and log.times:
        spacing_end = max(log.times) + caps.min_spacing
        limits.append((spacing_end, f"{int(caps.min_spacing.total_seconds())} s spacing"))
    if caps.domain_daily_cap:
        limits.append(
            (
                _free_at(log.by_domain.get(domain, []), caps.domain_daily_cap, DAY, now),
                f"daily cap of {caps.domain_daily_cap} for {domain}",
            )
        )
    return max(limits, key=lambda limit: limit[0])
