"""Who may be enrolled (again): the rules a re-import must never break, as a pure decision.

``refusal(sequence, past, now)`` returns why a prospect must not be enrolled in
``sequence`` now, or None. In the order checked:

=============================  ======================================================
suppressed                     the address is on the suppression list
client                         the prospect's stage is client
booked                         a meeting was booked in any sequence
replied                        a reply paused, stopped or ended an enrollment, not resumed
stopped                        an enrollment was stopped (by hand, by a task...)
already active                 active or paused in this very sequence
active elsewhere               active or paused in another sequence, unless this one
                               has ``allow_concurrent: true``
completed                      completed this sequence, and ``reenroll`` is ``never``
                               or its cool-down (``reenroll: {after: 90d}``) is not over
=============================  ======================================================

A prospect who completed *another* sequence may enter this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from relance.engine import LIVE, Status
from relance.spec import REENROLL_NEVER, Sequence

REPLIED_REASONS = ("replied",)
"""Enrollment reasons that mean the prospect answered (relance.signals keeps the signal)."""


@dataclass(frozen=True)
class Refusal:
    """Why a prospect is kept out: ``kind`` to count by, ``detail`` to show."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return self.detail if self.detail == self.kind else f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class PastEnrollment:
    """One enrollment of the prospect, in any sequence."""

    sequence_id: str
    status: Status
    reason: str | None
    ended_at: datetime | None
    """When it completed (or last changed, for older rows)."""


@dataclass
class History:
    """What the store knows of a prospect that decides whether it may be enrolled."""

    stage: str | None = None
    suppressed: str | None = None
    """The suppression reason, or None."""
    enrollments: list[PastEnrollment] = field(default_factory=list)


def refusal(sequence: Sequence, past: History, now: datetime) -> Refusal | None:
    """Why the prospect must not be enrolled in ``sequence`` at ``now``; None if it may."""
    if past.suppressed:
        return Refusal("suppressed", past.suppressed)
    if past.stage == "client":
        return Refusal("client", "client")
    runs = past.enrollments
    for run in runs:
        if run.status is Status.BOOKED:
            return Refusal("booked", f"a meeting in {run.sequence_id}")
    for run in runs:
        replied = run.reason in REPLIED_REASONS
        if replied and run.status in (Status.PAUSED, Status.STOPPED, Status.COMPLETED):
            return Refusal("replied", f"in {run.sequence_id}, not resumed")
    for run in runs:
        if run.status is Status.STOPPED:
            why = f" ({run.reason})" if run.reason and run.reason != "stopped" else ""
            return Refusal("stopped", f"in {run.sequence_id}{why}")
    for run in runs:
        if run.status in LIVE and run.sequence_id == sequence.id:
            return Refusal("already active", "already active")
    if not sequence.allow_concurrent:
        for run in runs:
            if run.status in LIVE:
                return Refusal("active elsewhere", f"in {run.sequence_id}")
    completed = [
        run.ended_at
        for run in runs
        if run.status is Status.COMPLETED and run.sequence_id == sequence.id
    ]
    if not completed:
        return None
    reenroll = sequence.reenroll
    if isinstance(reenroll, str):
        return Refusal("completed", f"reenroll: {REENROLL_NEVER}")
    latest = max((moment for moment in completed if moment is not None), default=None)
    if latest is None:  # pragma: no cover - completion always records its time
        return None
    until = latest + reenroll.after.as_timedelta()
    if until > now:
        return Refusal(
            "completed",
            f"on {latest.date().isoformat()}, reenroll after {reenroll.after}: "
            f"from {until.date().isoformat()}",
        )
    return None
