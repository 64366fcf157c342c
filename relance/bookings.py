"""What a scheduling provider says about a booking, and what applying it did.

``integrations/calendly.py`` and ``integrations/calcom.py`` read their webhooks into one
``BookingEvent``; ``relance.meetings.apply_booking_event`` applies it and answers with a
``MeetingOutcome``. An event that cannot be applied (no usable address, times without an
offset, a meeting that ends before it starts) is refused here with an InputError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from relance.errors import InputError

MAX_ID_LENGTH = 150
"""Longest provider booking id accepted (Calendly invitee URIs are about 100 characters)."""


class BookingKind(StrEnum):
    CREATED = "created"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    """Cancelled because it was rescheduled: the new booking arrives as its own event."""


@dataclass(frozen=True)
class BookingEvent:
    """What a scheduling provider says happened to one booking."""

    kind: BookingKind
    provider: str
    """calendly | calcom"""
    external_id: str
    """The provider's id of this booking, stable across retries (Calendly invitee URI,
    Cal.com booking uid). For ``rescheduled``, the id of the new booking."""
    email: str
    name: str = ""
    starts_at: datetime | None = None
    """Required for created and rescheduled."""
    ends_at: datetime | None = None
    join_url: str | None = None
    location: str | None = None
    occurred_at: datetime | None = None
    previous_external_id: str | None = None
    """rescheduled: the booking this one replaces (the same id when the provider keeps it)."""
    replaced_by: str | None = None
    """superseded: the booking that replaces this one, when the provider says."""
    reason: str | None = None
    """cancelled: the reason given, for the owner's task."""
    cancelled_by: str | None = None
    """cancelled: "host" or "invitee", when the provider says."""

    def __post_init__(self) -> None:
        for name in ("external_id", "previous_external_id", "replaced_by"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value.strip() or len(value) > MAX_ID_LENGTH:
                raise InputError(
                    f"{name}: expected a booking id of 1 to {MAX_ID_LENGTH} characters"
                )
        email = self.email.strip()
        if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
            raise InputError(f"expected the invitee's email address, got {self.email[:80]!r}")
        if self.kind in (BookingKind.CREATED, BookingKind.RESCHEDULED) and (
            self.starts_at is None or self.ends_at is None
        ):
            raise InputError(f"a {self.kind.value} booking needs its start and end times")
        for moment in (self.starts_at, self.ends_at, self.occurred_at):
            if moment is not None and not _plausible(moment):
                raise InputError(
                    f"expected a time with a UTC offset between 1970 and 2999, "
                    f"got {moment.isoformat()}"
                )
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise InputError(
                f"the meeting ends ({self.ends_at.isoformat()}) before it starts "
                f"({self.starts_at.isoformat()})"
            )


def _plausible(moment: datetime) -> bool:
    if moment.utcoffset() is None:
        return False
    try:
        return 1970 <= moment.astimezone(UTC).year <= 2999
    except OverflowError:
        return False


class BookingResult(StrEnum):
    """What applying a booking event did (the webhook's answer)."""

    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    AWAITING_NEW_TIME = "awaiting the new time"
    CANCELLED = "cancelled"
    DUPLICATE = "duplicate"
    ALREADY_RESCHEDULED = "already rescheduled"
    ALREADY_CANCELLED = "already cancelled"
    UNKNOWN_PROSPECT = "unknown prospect"
    NOT_FOLLOWED = "no live enrollment"
    UNKNOWN_BOOKING = "unknown booking"


_SIGNALS = {
    BookingResult.BOOKED: "booked",
    BookingResult.RESCHEDULED: "booking_rescheduled",
    BookingResult.CANCELLED: "booking_cancelled",
}


@dataclass(frozen=True)
class MeetingOutcome:
    result: BookingResult
    prospect_id: int | None = None
    meeting_id: int | None = None
    enrollment_ids: list[int] = field(default_factory=list)
    """The enrollments the event changed (or whose meeting it moved)."""
    task_id: int | None = None

    @property
    def signal(self) -> str | None:
        """The prospect event this is worth (``relance.prospect.<signal>``), if any."""
        return _SIGNALS.get(self.result)


def booking_key(provider: str, external_id: str) -> str:
    """The store's id of a provider booking (meetings.external_id, events.external_id)."""
    return f"{provider}:{external_id}"
