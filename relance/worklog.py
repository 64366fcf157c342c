"""What an SDR logs on a call or reminder task, and what follows from it.

    connected, no_answer, voicemail   the task is done; the sequence goes on
    booked                            a meeting: every live sequence stops, the confirmation goes
    not_interested                    the task's sequence stops

The task is closed in the store with a ``task_outcome`` event, after the booking or the
stop it causes, so that a refused booking leaves the task open to be logged again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update

from relance.engine import Signal
from relance.errors import InputError, NotFoundError, StateError
from relance.signals import SignalOutcome, book, record_signal
from relance.store import Store
from relance.tables import enrollments, events, tasks


class TaskOutcome(StrEnum):
    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    BOOKED = "booked"
    NOT_INTERESTED = "not_interested"


@dataclass(frozen=True)
class LoggedOutcome:
    """What logging an outcome did."""

    task_id: int
    prospect_id: int
    enrollment_id: int | None
    booking: SignalOutcome | None = None
    stop: SignalOutcome | None = None
    stop_refused: str | None = None
    """Why nothing was stopped for not_interested (the sequence had already ended)."""


def open_task(store: Store, task_id: int) -> tuple[Any, str | None]:
    """An open task and the id of its sequence; NotFoundError or StateError otherwise."""
    with store.reading() as connection:
        task = connection.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if task is None:
            raise NotFoundError(f"no task {task_id} (relance tasks --due all lists the open ones)")
        if task.status != "open":
            raise StateError(closed_message(task))
        sequence_id = connection.execute(
            select(enrollments.c.sequence_id).where(enrollments.c.id == task.enrollment_id)
        ).scalar()
    return task, sequence_id


def closed_message(task: Any) -> str:
    outcome = f" ({task.outcome})" if task.outcome else ""
    return f"task {task.id} is already {task.status}{outcome}"


def close_task(store: Store, task_id: int, outcome: str, note: str | None, now: datetime) -> None:
    """Mark an open task done and record its outcome as a ``task_outcome`` event."""
    with store.transaction() as connection:
        task = connection.execute(select(tasks).where(tasks.c.id == task_id)).first()
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        done = connection.execute(
            update(tasks)
            .where(tasks.c.id == task_id, tasks.c.status == "open")
            .values(status="done", outcome=outcome, note=note, done_at=now)
        ).rowcount
        if not done:
            raise StateError(closed_message(task))
        connection.execute(
            insert(events),
            {
                "prospect_id": task.prospect_id,
                "enrollment_id": task.enrollment_id,
                "touchpoint_id": task.touchpoint_id,
                "kind": "task_outcome",
                "source": "task",
                "occurred_at": now,
                "recorded_at": now,
                "data": {
                    "task_id": task_id,
                    "outcome": outcome,
                    **({"note": note} if note else {}),
                },
            },
        )


def log_task_outcome(
    store: Store,
    task_id: int,
    outcome: TaskOutcome,
    *,
    now: datetime,
    note: str | None = None,
    meeting_at: datetime | None = None,
    duration: timedelta = timedelta(minutes=30),
) -> LoggedOutcome:
    """Log what a call gave; ``meeting_at`` goes with ``booked`` and only with it."""
    if (outcome is TaskOutcome.BOOKED) != (meeting_at is not None):
        raise InputError(
            "a booked outcome needs the meeting start (--at, ISO 8601 with offset)"
            if meeting_at is None
            else "a meeting start goes with the booked outcome only"
        )
    task, sequence_id = open_task(store, task_id)
    ref = str(task.prospect_id)
    booking = stop = None
    refused = None
    if meeting_at is not None:
        # A meeting stops every live sequence of the prospect, not only the task's.
        booking = book(store, ref, starts_at=meeting_at, duration=duration, now=now, source="task")
    elif outcome is TaskOutcome.NOT_INTERESTED:
        try:
            stop = record_signal(
                store,
                ref,
                Signal.STOPPED,
                now=now,
                sequence_id=sequence_id,
                source="task",
                reason="not interested",
                data={"task_id": task_id, "reason": "not interested"},
            )
        except StateError as error:
            refused = str(error)
    close_task(store, task_id, outcome.value, note, now)
    return LoggedOutcome(task_id, task.prospect_id, task.enrollment_id, booking, stop, refused)
