"""The SDR page, ``/sdr``: today's tasks with one-click outcomes, and a prospect's timeline
with pause, resume and snooze.

    GET  /sdr                              today's calls, reminders and replies to triage
                                           (?owner=ADDRESS, or ?owner=all; default: the
                                           address given at login, else everyone's)
    POST /sdr/tasks/{id}/outcome           connected | no_answer | voicemail | booked |
                                           not_interested (booked: meeting_at, duration)
    GET  /sdr/prospects/{id}               the prospect's timeline
    POST /sdr/prospects/{id}/{action}      pause | resume | snooze (until: a date)

Plain HTML forms that post and redirect back (no script). Every page needs a session or the
bearer token, and every post a CSRF token (relance/web/auth.py). Times are shown in the
prospect's zone. Logs name tasks and prospects by id only.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from relance.cli.timeline import timeline
from relance.engine import Signal
from relance.enrollments import prospect_zone
from relance.errors import InputError, NotFoundError, RelanceError, StateError
from relance.notify import emit_prospect_event
from relance.settings import Settings
from relance.signals import find_prospect, record_signal
from relance.store import Store
from relance.tables import MAX_ROW_ID, prospects
from relance.web import auth
from relance.web.agenda import open_tasks, owners, task_person, task_zone
from relance.web.app import RowId, now_of, settings_of, store_of
from relance.web.auth import Session, csrf_token, form_session, session_of
from relance.web.pages import local_time, message, render, zone_of
from relance.worklog import LoggedOutcome, TaskOutcome, log_task_outcome

logger = logging.getLogger(__name__)

router = APIRouter(route_class=auth.GuardedRoute)
router.include_router(auth.router)

SOURCE = "sdr_page"
SECTIONS = (("call", "Calls"), ("reminder", "Reminders"), ("reply", "Replies to triage"))
OUTCOMES = {
    TaskOutcome.CONNECTED: "Connected",
    TaskOutcome.NO_ANSWER: "No answer",
    TaskOutcome.VOICEMAIL: "Voicemail",
    TaskOutcome.BOOKED: "Booked",
    TaskOutcome.NOT_INTERESTED: "Not interested",
}
FOLLOW_UP = {
    TaskOutcome.CONNECTED: "the sequence goes on",
    TaskOutcome.NO_ANSWER: "the sequence goes on",
    TaskOutcome.VOICEMAIL: "the sequence goes on",
    TaskOutcome.BOOKED: "the chase stopped and the meeting is recorded",
    TaskOutcome.NOT_INTERESTED: "its sequence stopped",
}
DURATIONS = (15, 30, 45, 60, 90)


class Action(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    SNOOZE = "snooze"


SIGNALS = {
    Action.PAUSE: Signal.PAUSED,
    Action.RESUME: Signal.RESUMED,
    Action.SNOOZE: Signal.SNOOZED,
}
STATUS = {NotFoundError: 404, StateError: 409, InputError: 400}  # subclasses first


def _status(error: RelanceError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)


# --- today's tasks -------------------------------------------------------------------


def _owner_filter(session: Session, owner: str | None) -> str | None:
    """The owner whose tasks are shown: the one asked for, else the session's; None: all."""
    chosen = session.owner if owner is None else owner.strip().lower()
    return None if chosen in ("", "all") else chosen


def _today(
    store: Store,
    settings: Settings,
    session: Session,
    now: datetime,
    owner: str | None,
    *,
    status: int = 200,
    error: str = "",
    done: int | None = None,
) -> Response:
    shown = _owner_filter(session, owner)
    with store.reading() as connection:
        cards = open_tasks(connection, now, shown)
        people = owners(connection)
        logged = task_person(connection, done) if done is not None else None
    notice = ""
    if logged is not None and logged[1] in {outcome.value for outcome in TaskOutcome}:
        outcome = TaskOutcome(logged[1])
        notice = f"{OUTCOMES[outcome]} logged for {logged[0]}: {FOLLOW_UP[outcome]}."
    sections = [(kind, title, [c for c in cards if c.kind == kind]) for kind, title in SECTIONS]
    others = [c for c in cards if c.kind not in {kind for kind, _ in SECTIONS}]
    if others:
        sections.append(("other", "Other tasks", others))
    return render(
        "today.html.j2",
        status,
        sections=sections,
        count=len(cards),
        owner=shown or "",
        owners=sorted({*people, *([shown] if shown else [])}),
        session=session,
        csrf=csrf_token(str(settings.sdr_token), session.nonce),
        outcomes=OUTCOMES,
        durations=DURATIONS,
        notice=notice,
        error=error,
        now=now,
    )


@router.get("/sdr")
def today_page(
    session: Annotated[Session, Depends(session_of)],
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
    owner: Annotated[str | None, Query(max_length=320)] = None,
    done: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    """Today's open tasks (overdue included), grouped by kind, oldest due first."""
    return _today(store, settings, session, now, owner, done=done)


def _meeting_start(text: str, zone: str, now: datetime) -> datetime:
    """A datetime-local value ("2026-03-05T10:00"), in the prospect's zone, as aware UTC."""
    try:
        local = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"booked: expected the meeting start such as 2026-03-05T10:00, got {text!r}"
        ) from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone_of(zone))
    if local <= now:
        raise InputError("booked: the meeting start is in the past")
    return local


@router.post("/sdr/tasks/{task_id}/outcome")
def log_outcome(
    task_id: RowId,
    session: Annotated[Session, Depends(form_session)],
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
    outcome: Annotated[TaskOutcome, Form()],
    note: Annotated[str, Form(max_length=2000)] = "",
    meeting_at: Annotated[str, Form(max_length=40)] = "",
    duration: Annotated[int, Form(ge=5, le=480)] = 30,
    owner: Annotated[str | None, Form(max_length=320)] = None,
) -> Response:
    """Close a task with its outcome, then back to the list (the task is gone from it)."""
    try:
        meeting = None
        if outcome is TaskOutcome.BOOKED:
            if not meeting_at.strip():
                raise InputError("booked: give the meeting start (date and time) first")
            with store.reading() as connection:
                meeting = _meeting_start(meeting_at, task_zone(connection, task_id), now)
        logged = log_task_outcome(
            store,
            task_id,
            outcome,
            now=now,
            note=note.strip() or None,
            meeting_at=meeting,
            duration=timedelta(minutes=duration),
        )
    except RelanceError as failure:
        logger.info("task %s: outcome %s refused from the SDR page", task_id, outcome.value)
        return _today(
            store, settings, session, now, owner, status=_status(failure), error=str(failure)
        )
    _announce(logged, outcome)
    logger.info("task %s closed from the SDR page: %s", task_id, outcome.value)
    query = {"done": task_id, **({"owner": owner} if owner is not None else {})}
    return RedirectResponse(f"/sdr?{urlencode(query)}", 303)


def _announce(logged: LoggedOutcome, outcome: TaskOutcome) -> None:
    """The Prefect events ``relance task done`` emits, for automations."""
    if logged.booking is not None:
        changed = [eid for eid, _, _ in logged.booking.changed]
        emit_prospect_event("booked", logged.prospect_id, changed, {"source": SOURCE})
    elif logged.stop is not None:
        changed = [eid for eid, _, _ in logged.stop.changed]
        emit_prospect_event("stopped", logged.prospect_id, changed, {"source": SOURCE})
    emit_prospect_event(
        "task_outcome",
        logged.prospect_id,
        [logged.enrollment_id] if logged.enrollment_id else [],
        {"task_id": logged.task_id, "outcome": outcome.value},
    )


# --- a prospect ----------------------------------------------------------------------


def _prospect(
    store: Store,
    settings: Settings,
    session: Session,
    now: datetime,
    prospect_id: int,
    *,
    status: int = 200,
    error: str = "",
    done: str = "",
) -> Response:
    with store.reading() as connection:
        row = connection.execute(select(prospects).where(prospects.c.id == prospect_id)).first()
        if row is None:
            return message(404, "Unknown prospect", f"There is no prospect {prospect_id}.")
        data = timeline(connection, row)
    zone = data["zone"]
    person = data["prospect"]
    notice = {
        "pause": "Paused: nothing more is sent until you resume.",
        "resume": "Resumed: the remaining touches are planned again from now.",
        "snooze": "Snoozed: the remaining touches move after the date.",
    }.get(done, "")
    return render(
        "prospect.html.j2",
        status,
        person=person,
        name=" ".join(p for p in (person["first_name"], person["last_name"]) if p)
        or person["email"],
        stage=row.stage,
        warmth=row.warmth,
        zone=zone,
        enrollments=data["enrollments"],
        tasks=data["tasks"],
        events=[(event, _details(event, zone)) for event in reversed(data["events"])],
        session=session,
        csrf=csrf_token(str(settings.sdr_token), session.nonce),
        tomorrow=(now.astimezone(zone_of(zone)).date() + timedelta(days=1)).isoformat(),
        notice=notice,
        error=error,
    )


@router.get("/sdr/prospects/{prospect_id}")
def prospect_page(
    prospect_id: RowId,
    session: Annotated[Session, Depends(session_of)],
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The prospect's timeline: enrollments and their touches, tasks, events (latest first)."""
    return _prospect(store, settings, session, now, prospect_id, done=done)


@router.post("/sdr/prospects/{prospect_id}/{action}")
def act_on_prospect(
    prospect_id: RowId,
    action: Action,
    session: Annotated[Session, Depends(form_session)],
    settings: Annotated[Settings, Depends(settings_of)],
    store: Annotated[Store, Depends(store_of)],
    now: Annotated[datetime, Depends(now_of)],
    sequence: Annotated[str, Form(max_length=100)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Pause, resume or snooze (until the start of a day, prospect's time) an enrollment."""
    signal = SIGNALS[action]
    try:
        with store.reading() as connection:
            zone = prospect_zone(connection, find_prospect(connection, str(prospect_id)))
        until_at = _snooze_end(until, zone, now) if action is Action.SNOOZE else None
        outcome = record_signal(
            store,
            str(prospect_id),
            signal,
            now=now,
            sequence_id=sequence or None,
            source=SOURCE,
            until=until_at,
        )
    except RelanceError as failure:
        logger.info("prospect %s: %s refused from the SDR page", prospect_id, action.value)
        return _prospect(
            store, settings, session, now, prospect_id, status=_status(failure), error=str(failure)
        )
    changed = [eid for eid, _, _ in outcome.changed]
    emit_prospect_event(signal.value, outcome.prospect_id, changed, {"source": SOURCE})
    logger.info("prospect %s %s from the SDR page: enrollments %s", prospect_id, signal, changed)
    return RedirectResponse(f"/sdr/prospects/{prospect_id}?done={action.value}", 303)


def _snooze_end(text: str, zone: str, now: datetime) -> datetime:
    """A date ("2026-04-01"): midnight that day in the prospect's zone; after now."""
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").date()  # noqa: DTZ007 - a date
    except ValueError:
        raise InputError(f"snooze: expected a date such as 2026-04-01, got {text!r}") from None
    until = datetime.combine(day, time(0), zone_of(zone))
    if until <= now:
        raise InputError("snooze: the date must be after today")
    return until


def _details(event: dict[str, Any], zone: str) -> str:
    """A short description of an event's data, its times in ``zone``."""
    data = event["data"]
    parts: list[str] = []
    if event["kind"] == "booked" and data.get("starts_at"):
        minutes = data.get("minutes")
        parts.append(
            f"meeting {local_time(data['starts_at'], zone)}"
            + (f", {minutes:g} min" if minutes else "")
        )
    if data.get("until"):
        parts.append(f"until {local_time(data['until'], zone)}")
    if data.get("task_id"):
        outcome = data.get("outcome")
        parts.append(f"task {data['task_id']}" + (f": {outcome}" if outcome else ""))
    for key in ("reason", "note"):
        if data.get(key):
            parts.append(str(data[key]))
    return "; ".join(parts)
