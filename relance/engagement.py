"""What the email provider says became of the messages Relance sent.

A provider's integration (``integrations/sendgrid_events.py``) translates its events into
``MailEvent``s; ``apply_mail_events`` records each of them once, whatever the number of
times the provider delivers it (deduplicated by ``external_id``, e.g. ``sendgrid:<id>``):

    kind           signal                      effect
    accepted       -                           an ``events`` row with the touchpoint
    delivered      -                           (per-step analytics, and the proof that the
    opened         -                           provider has the message); events that
    clicked        -                           belong to no touchpoint of this store are
    blocked        -                           ignored. blocked is a soft bounce: the
                                               sequence goes on
    deferred       -                           nothing recorded (the provider retries)
    bounced        BOUNCED                     every enrollment of the address stops and the
    dropped        BOUNCED, UNSUBSCRIBED or    address is suppressed, even when no prospect
                   SPAM_REPORT                 has it (``signals.record_signal``)
    spam_report    SPAM_REPORT
    unsubscribed   UNSUBSCRIBED

Any of them also settles a touchpoint left ``unknown`` by a dispatcher that died during
the send: the provider has the message, so it was ``sent`` (``failed`` if dropped). When
the events come first (they arrive within seconds; a touch is flagged ``unknown`` only
when its lease ends), their rows are the proof: ``settle_unknown`` reads them, and the
recovery of stale claims calls it after flagging.

An event names its touchpoint; it is believed only when the event's address is the
prospect's (two stores sharing one provider account number their touchpoints alike).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Insert, bindparam, insert, select, update

from relance.engine import Signal
from relance.errors import NotFoundError
from relance.signals import SignalOutcome, record_signal
from relance.store import Store
from relance.tables import enrollments, events, prospects, touchpoints

CHUNK = 500
PROVIDERS = ("sendgrid",)
"""Sources of provider events (``MailEvent.source``)."""


class MailEventKind(StrEnum):
    """What happened to one message, in Relance's words."""

    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    BLOCKED = "blocked"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    SPAM_REPORT = "spam_report"
    UNSUBSCRIBED = "unsubscribed"


RECORDED = frozenset(
    {
        MailEventKind.ACCEPTED,
        MailEventKind.DELIVERED,
        MailEventKind.OPENED,
        MailEventKind.CLICKED,
        MailEventKind.BLOCKED,
    }
)
"""Kinds kept as ``events`` rows for the analytics (the signals keep their own rows)."""


@dataclass(frozen=True)
class MailEvent:
    """One provider event about one message, translated."""

    external_id: str
    """The provider's id for this event, prefixed by the provider: the deduplication key."""
    kind: MailEventKind
    source: str
    email: str | None = None
    occurred_at: datetime | None = None
    touchpoint_id: int | None = None
    signal: Signal | None = None
    """What the event says about the prospect, if anything (bounced, unsubscribed...)."""
    reason: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class EngagementTally:
    """What applying a batch did."""

    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    settled: int = 0
    """Touchpoints taken out of ``unknown``."""
    signals: list[SignalOutcome] = field(default_factory=list)
    """Outcomes of the signals recorded now (not the replayed ones)."""


@dataclass(frozen=True)
class _Owner:
    touchpoint_id: int
    status: str
    enrollment_id: int
    prospect_id: int
    email: str


def apply_mail_events(
    store: Store, batch: Sequence[MailEvent], *, now: datetime
) -> EngagementTally:
    """Record a batch of provider events; a replayed event counts as a duplicate."""
    tally = EngagementTally()
    unique: dict[str, MailEvent] = {}
    for mail_event in batch:
        if mail_event.external_id in unique:
            tally.duplicates += 1
        else:
            unique[mail_event.external_id] = mail_event
    signalling: list[tuple[MailEvent, _Owner | None]] = []
    with store.transaction() as connection:
        seen = _recorded(connection, list(unique))
        fresh = [e for key, e in unique.items() if key not in seen]
        tally.duplicates += len(unique) - len(fresh)
        owners = _owners(connection, {e.touchpoint_id for e in fresh if e.touchpoint_id})
        rows: list[dict[str, Any]] = []
        verdicts: dict[int, tuple[str, datetime]] = {}
        for mail_event in fresh:
            owner = _owner_of(mail_event, owners)
            settles = owner is not None and owner.status == "unknown"
            if owner is not None and settles:
                at = mail_event.occurred_at or now
                if mail_event.kind is MailEventKind.DROPPED:
                    verdicts[owner.touchpoint_id] = ("failed", at)  # dropped wins
                else:
                    verdicts.setdefault(owner.touchpoint_id, ("sent", at))
            if mail_event.signal is not None:
                signalling.append((mail_event, owner))
            elif mail_event.kind in RECORDED and owner is not None:
                rows.append(_row(mail_event, owner, now))
            elif settles:
                tally.accepted += 1
            else:
                tally.ignored += 1
        if rows:
            connection.execute(_insert_new_events(connection), rows)
            tally.accepted += len(rows)
        tally.settled = _settle(connection, verdicts)
    attach: list[dict[str, Any]] = []
    for mail_event, owner in signalling:
        outcome = _signal(store, mail_event, owner, now)
        if outcome is None:
            tally.ignored += 1
        elif outcome.duplicate:
            tally.duplicates += 1
        else:
            tally.accepted += 1
            tally.signals.append(outcome)
            if owner is not None:
                attach.append(
                    {"b_external_id": mail_event.external_id, "b_tp": owner.touchpoint_id}
                )
    if attach:
        with store.transaction() as connection:
            connection.execute(
                update(events)
                .where(
                    events.c.external_id == bindparam("b_external_id"),
                    events.c.touchpoint_id.is_(None),
                )
                .values(touchpoint_id=bindparam("b_tp")),
                attach,
            )
    return tally


def _recorded(connection: Connection, external_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(external_ids), CHUNK):
        chunk = external_ids[start : start + CHUNK]
        found.update(
            connection.execute(
                select(events.c.external_id).where(events.c.external_id.in_(chunk))
            ).scalars()
        )
    return found


def _owners(connection: Connection, touchpoint_ids: set[int]) -> dict[int, _Owner]:
    """The touchpoints of this store among ``touchpoint_ids``, with their prospect."""
    wanted = sorted(touchpoint_ids)
    owners: dict[int, _Owner] = {}
    for start in range(0, len(wanted), CHUNK):
        query = (
            select(
                touchpoints.c.id,
                touchpoints.c.status,
                touchpoints.c.enrollment_id,
                enrollments.c.prospect_id,
                prospects.c.email,
            )
            .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
            .join(prospects, prospects.c.id == enrollments.c.prospect_id)
            .where(touchpoints.c.id.in_(wanted[start : start + CHUNK]))
        )
        for row in connection.execute(query):
            owners[row.id] = _Owner(
                row.id, row.status, row.enrollment_id, row.prospect_id, row.email.lower()
            )
    return owners


def _owner_of(mail_event: MailEvent, owners: dict[int, _Owner]) -> _Owner | None:
    if mail_event.touchpoint_id is None:
        return None
    owner = owners.get(mail_event.touchpoint_id)
    if owner is None or (mail_event.email is not None and mail_event.email != owner.email):
        return None
    return owner


def _row(mail_event: MailEvent, owner: _Owner, now: datetime) -> dict[str, Any]:
    return {
        "prospect_id": owner.prospect_id,
        "enrollment_id": owner.enrollment_id,
        "touchpoint_id": owner.touchpoint_id,
        "kind": mail_event.kind.value,
        "source": mail_event.source,
        "external_id": mail_event.external_id,
        "occurred_at": mail_event.occurred_at or now,
        "recorded_at": now,
        "data": dict(mail_event.data),
    }


def _insert_new_events(connection: Connection) -> Insert:
    """INSERT into events that skips an external id recorded meanwhile by another request."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(events).on_conflict_do_nothing(index_elements=["external_id"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(events).on_conflict_do_nothing(index_elements=["external_id"])
    return insert(events)  # pragma: no cover - Relance runs on SQLite or PostgreSQL


def _settle(connection: Connection, verdicts: dict[int, tuple[str, datetime]]) -> int:
    """Touchpoints flagged ``unknown`` that the provider's events show it received."""
    if not verdicts:
        return 0
    reasons = {"sent": "confirmed by the provider's events", "failed": "dropped by the provider"}
    result = connection.execute(
        update(touchpoints)
        .where(touchpoints.c.id == bindparam("b_id"), touchpoints.c.status == "unknown")
        .values(status=bindparam("b_status"), sent_at=bindparam("b_at"), reason=bindparam("b_why")),
        [
            {
                "b_id": touchpoint_id,
                "b_status": status,
                "b_at": at if status == "sent" else None,
                "b_why": reasons[status],
            }
            for touchpoint_id, (status, at) in verdicts.items()
        ],
    )
    return max(result.rowcount, 0)


def settle_unknown(store: Store) -> int:
    """Settle the ``unknown`` touchpoints that provider events already recorded.

    ``sent`` when the provider reported anything about the message, ``failed`` when it
    dropped it. Returns how many touchpoints were settled.
    """
    with store.transaction() as connection:
        found = connection.execute(
            select(touchpoints.c.id, events.c.occurred_at, events.c.data)
            .join(events, events.c.touchpoint_id == touchpoints.c.id)
            .where(touchpoints.c.status == "unknown", events.c.source.in_(PROVIDERS))
            .order_by(events.c.occurred_at)
        ).all()
        verdicts: dict[int, tuple[str, datetime]] = {}
        for touchpoint_id, occurred_at, data in found:
            if (data or {}).get("event") == MailEventKind.DROPPED.value:
                verdicts[touchpoint_id] = ("failed", occurred_at)  # dropped wins
            else:
                verdicts.setdefault(touchpoint_id, ("sent", occurred_at))
        return _settle(connection, verdicts)


def _signal(
    store: Store, mail_event: MailEvent, owner: _Owner | None, now: datetime
) -> SignalOutcome | None:
    """Record what the event says about the prospect; None when it names nobody."""
    assert mail_event.signal is not None
    ref = mail_event.email or (str(owner.prospect_id) if owner is not None else None)
    if ref is None:
        return None
    data: dict[str, Any] = {"event": mail_event.kind.value, **mail_event.data}
    if owner is not None:
        data["touchpoint_id"] = owner.touchpoint_id
    if mail_event.reason:
        data["reason"] = mail_event.reason
    try:
        return record_signal(
            store,
            ref,
            mail_event.signal,
            now=now,
            source=mail_event.source,
            external_id=mail_event.external_id,
            occurred_at=mail_event.occurred_at,
            data=data,
        )
    except NotFoundError:  # the prospect was deleted between the lookup and now
        return None
