"""Pure decisions: what happens next for a touchpoint, and what a signal does to an enrollment.

Nothing here reads the clock or the store: the dispatcher loads the state, asks
``next_action`` inside the claiming transaction, and performs the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from relance.errors import StateError
from relance.spec import Channel


class Status(StrEnum):
    """Enrollment status."""

    ACTIVE = "active"
    PAUSED = "paused"
    BOOKED = "booked"
    STOPPED = "stopped"
    COMPLETED = "completed"


LIVE = (Status.ACTIVE, Status.PAUSED)


class Signal(StrEnum):
    """Something that happened to a prospect, from a person or a provider."""

    REPLIED = "replied"
    BOOKED = "booked"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    SPAM_REPORT = "spam_report"
    PAUSED = "paused"
    RESUMED = "resumed"
    STOPPED = "stopped"
    SNOOZED = "snoozed"


SUPPRESSING = (Signal.BOUNCED, Signal.UNSUBSCRIBED, Signal.SPAM_REPORT)
"""Signals after which the address is never emailed again, by any sequence."""


@dataclass(frozen=True)
class Send:
    """Perform the touch now."""


@dataclass(frozen=True)
class Wait:
    """Not now: the touch becomes due again at ``until``."""

    until: datetime
    reason: str


@dataclass(frozen=True)
class Hold:
    """Leave the touch planned; it moves only when the enrollment is resumed."""

    reason: str


@dataclass(frozen=True)
class Skip:
    """Never perform this touch."""

    reason: str


Action = Send | Wait | Hold | Skip


@dataclass(frozen=True)
class TouchState:
    channel: Channel
    due_at: datetime
    booking: bool
    """True for touches created by a booking (meeting confirmation and its reminder)."""
    withdrawal: bool = False
    """True for the notice withdrawing a cancelled meeting's invitation: it goes out whatever
    became of the enrollment, so that no dead invitation stays in the prospect's calendar."""


@dataclass(frozen=True)
class EnrollmentState:
    status: Status
    reason: str | None
    snoozed_until: datetime | None
    suppressed_reason: str | None
    """Why the prospect's address is on the suppression list, or None."""


def next_action(
    touch: TouchState,
    enrollment: EnrollmentState,
    now: datetime,
    next_slot: Callable[[datetime], datetime],
) -> Action:
    """Decide one touch. ``next_slot(t)`` is the first instant >= t inside the send window."""
    if enrollment.suppressed_reason and touch.channel in (
        Channel.EMAIL,
        Channel.MEETING_CONFIRMATION,
    ):
        return Skip(f"suppressed: {enrollment.suppressed_reason}")
    if touch.withdrawal:
        return Send() if touch.due_at <= now else Wait(touch.due_at, "not due yet")
    if enrollment.status is Status.BOOKED:
        if touch.booking:
            return Send() if touch.due_at <= now else Wait(touch.due_at, "not due yet")
        return Skip("booked")
    if touch.booking:
        # A booking touch outlives nothing but its booking: cancelled or stopped means no mail.
        return Skip(f"meeting no longer booked ({enrollment.status.value})")
    if enrollment.status is Status.PAUSED:
        return Hold(f"paused: {enrollment.reason or 'paused'}")
    if enrollment.status in (Status.STOPPED, Status.COMPLETED):
        return Skip(f"{enrollment.status.value}: {enrollment.reason or enrollment.status.value}")
    if touch.due_at > now:
        return Wait(touch.due_at, "not due yet")
    if enrollment.snoozed_until is not None and enrollment.snoozed_until > now:
        return Wait(next_slot(enrollment.snoozed_until), "snoozed")
    slot = next_slot(now)
    if slot > now:
        return Wait(slot, "outside the send window")
    return Send()


@dataclass(frozen=True)
class Transition:
    """What a signal does: the new status, and what becomes of the planned touches."""

    status: Status
    touches: str
    """'keep' (stay planned), 'hold' (held until resume), 'skip' (never sent), 'replan'."""
    suppress: bool = False


_VERBS = {
    Signal.REPLIED: "pause",
    Signal.PAUSED: "pause",
    Signal.RESUMED: "resume",
    Signal.STOPPED: "stop",
    Signal.SNOOZED: "snooze",
}


def apply_signal(status: Status, signal: Signal, reply_action: str = "pause") -> Transition:
    """The transition a signal causes from ``status``; StateError if it makes no sense."""
    if signal in SUPPRESSING:
        return Transition(Status.STOPPED, "skip", suppress=True)
    if signal is Signal.BOOKED:
        if status is Status.BOOKED:
            return Transition(Status.BOOKED, "skip")
        return Transition(Status.BOOKED, "skip")
    if signal is Signal.REPLIED and status is Status.COMPLETED:
        # Nothing left to hold: the enrollment stays completed, its reason says it replied
        # (relance.reenrollment never enrolls it again).
        return Transition(Status.COMPLETED, "keep")
    if status in (Status.STOPPED, Status.COMPLETED, Status.BOOKED):
        verb = _VERBS.get(signal, signal.value)
        raise StateError(f"the enrollment is {status.value}: nothing left to {verb}")
    if signal is Signal.REPLIED:
        if reply_action == "stop":
            return Transition(Status.STOPPED, "skip")
        return Transition(Status.PAUSED, "hold")
    if signal is Signal.PAUSED:
        if status is Status.PAUSED:
            raise StateError("the enrollment is already paused")
        return Transition(Status.PAUSED, "hold")
    if signal is Signal.RESUMED:
        if status is not Status.PAUSED:
            raise StateError(f"the enrollment is {status.value}, not paused: nothing to resume")
        return Transition(Status.ACTIVE, "replan")
    if signal is Signal.STOPPED:
        return Transition(Status.STOPPED, "skip")
    if signal is Signal.SNOOZED:
        return Transition(status, "keep")
    raise StateError(f"unknown signal {signal}")  # pragma: no cover - exhaustive above
