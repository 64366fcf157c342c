"""Settling touches whose outcome a crash or a lost answer left unknown.

An email touch becomes ``unknown`` when its dispatcher died after claiming it (the
claim's lease expired: ``claims.recover_stale``) or when the provider never answered a
request that went out (a timeout: ``UnconfirmedChannelError``). The provider may or may
not have the message, so it is never resent blindly. It is settled from the provider's
own word, the events it posts for every message (the touchpoint id travels in
``custom_args``):

    an event names the touch (delivered, open, click, bounce...)   ->  sent
    ... and one of them says the provider dropped it               ->  failed
    no event for ``grace`` (default 96 h), while the provider      ->  planned again
      reported deliveries of messages claimed at the same time          (due now)
      or later
    no event, and no proof that deliveries are reported            ->  stays unknown:
                                                                        ``relance review``

The grace covers SendGrid's own delays: it retries a deferred delivery for 72 hours, and
a failed Event Webhook post for 24 hours; its first event (``processed``) follows an
accepted request within seconds. Events that arrive while the touch is ``unknown`` settle
it at once (``relance.engagement``); events that came earlier, while it was still
``sending``, are found here in the ``events`` table. A touch is planned again only when
the feed is known to report deliveries for its time (a webhook that posts only bounces and
unsubscribes proves nothing about a delivered message): otherwise an unknown touch waits
for a person (``relance review --sent`` / ``--resend``), because a message the provider
took and never reported would go out twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, select, update

from relance.claims import recover_stale
from relance.engagement import MailEventKind
from relance.errors import InputError
from relance.store import Store
from relance.tables import enrollments, events, prospects, touchpoints

DEFAULT_GRACE = timedelta(hours=96)
"""How long the provider's events may take to tell about a message (72 h + 24 h)."""

CHUNK = 500

CONFIRMED = "confirmed by the provider's events"
DROPPED = "dropped by the provider"


@dataclass
class Resolution:
    """What one pass over the ``unknown`` touches did."""

    confirmed: int = 0
    """Settled ``sent``: an event names them."""
    dropped: int = 0
    """Settled ``failed``: the provider dropped them."""
    replanned: int = 0
    """Planned again: no event in the grace while the feed worked."""
    left: int = 0
    """Still ``unknown``: for review."""


@dataclass(frozen=True)
class UnknownTouch:
    """A touch waiting for review, as ``relance review`` shows it."""

    touchpoint_id: int
    enrollment_id: int
    sequence_id: str
    step_id: str
    prospect_id: int
    claimed_at: datetime | None
    reason: str | None


def recover(
    store: Store, now: datetime, *, lease: timedelta, grace: timedelta = DEFAULT_GRACE
) -> dict[str, int]:
    """The recovery a tick runs first: stale claims, then the unknown touches.

    ``stale_replanned`` / ``stale_unknown`` count the claims of dead dispatchers (SDR tasks
    planned again, emails flagged); the rest is ``resolve_unknown``'s ``Resolution``.
    """
    stale = recover_stale(store, now, lease)
    return {
        "stale_replanned": stale.get("replanned", 0),
        "stale_unknown": stale.get("unknown", 0),
        **asdict(resolve_unknown(store, now, grace=grace)),
    }


def resolve_unknown(store: Store, now: datetime, *, grace: timedelta = DEFAULT_GRACE) -> Resolution:
    """Settle every ``unknown`` touch that the provider's events (or their silence) decide."""
    resolution = Resolution()
    with store.transaction() as connection:
        unknown = dict(
            connection.execute(
                select(touchpoints.c.id, touchpoints.c.claimed_at).where(
                    touchpoints.c.status == "unknown"
                )
            )
            .tuples()
            .all()
        )
        if not unknown:
            return resolution
        verdicts = _verdicts(connection, sorted(unknown))
        resolution.confirmed, resolution.dropped = _settle(connection, verdicts)
        silent = {tid: at for tid, at in unknown.items() if tid not in verdicts}
        resolution.replanned = _replan(connection, silent, now, grace)
        resolution.left = len(silent) - resolution.replanned
    return resolution


def _verdicts(connection: Connection, touchpoint_ids: list[int]) -> dict[int, tuple[str, datetime]]:
    """sent or failed, and when, for the touches that some recorded event names."""
    verdicts: dict[int, tuple[str, datetime]] = {}
    for start in range(0, len(touchpoint_ids), CHUNK):
        query = select(events.c.touchpoint_id, events.c.occurred_at, events.c.data).where(
            events.c.touchpoint_id.in_(touchpoint_ids[start : start + CHUNK])
        )
        for touchpoint_id, occurred_at, data in connection.execute(query):
            dropped = isinstance(data, dict) and data.get("event") == "dropped"
            status = "failed" if dropped else "sent"
            known = verdicts.get(touchpoint_id)
            if known is None or (known[0] == "sent" and (dropped or occurred_at < known[1])):
                verdicts[touchpoint_id] = (status, occurred_at)  # dropped wins, else earliest
    return verdicts


def _settle(connection: Connection, verdicts: dict[int, tuple[str, datetime]]) -> tuple[int, int]:
    settled = {"sent": 0, "failed": 0}
    for touchpoint_id, (status, at) in verdicts.items():
        settled[status] += connection.execute(
            update(touchpoints)
            .where(touchpoints.c.id == touchpoint_id, touchpoints.c.status == "unknown")
            .values(
                status=status,
                sent_at=at if status == "sent" else None,
                reason=CONFIRMED if status == "sent" else DROPPED,
            )
        ).rowcount
    return settled["sent"], settled["failed"]


def _replan(
    connection: Connection, silent: dict[int, datetime | None], now: datetime, grace: timedelta
) -> int:
    """Plan again the silent touches older than ``grace`` that a working feed would name."""
    old = {tid: at for tid, at in silent.items() if at is not None and at <= now - grace}
    if not old:
        return 0
    latest_delivered = _latest_delivered_claim(connection)
    if latest_delivered is None:
        return 0  # no delivery was ever reported: the feed may not be set up; a person decides
    due = sorted(tid for tid, claimed_at in old.items() if claimed_at <= latest_delivered)
    hours = int(grace.total_seconds() // 3600)
    replanned = 0
    for start in range(0, len(due), CHUNK):
        replanned += connection.execute(
            update(touchpoints)
            .where(
                touchpoints.c.id.in_(due[start : start + CHUNK]),
                touchpoints.c.status == "unknown",
                # An event recorded since the read above wins over the silence.
                ~exists().where(events.c.touchpoint_id == touchpoints.c.id),
            )
            .values(
                status="planned",
                due_at=now,
                claim_id=None,
                reason=f"planned again: the provider never reported it in {hours} h",
            )
        ).rowcount
    return replanned


def _latest_delivered_claim(connection: Connection) -> datetime | None:
    """The latest claim time of a message whose delivery the provider reported."""
    value: datetime | None = connection.execute(
        select(func.max(touchpoints.c.claimed_at))
        .select_from(events.join(touchpoints, touchpoints.c.id == events.c.touchpoint_id))
        .where(events.c.kind == MailEventKind.DELIVERED.value)
    ).scalar()
    return value


def unknown_touches(store: Store) -> list[UnknownTouch]:
    """The touches flagged ``unknown``, oldest claim first."""
    query = (
        select(
            touchpoints.c.id,
            touchpoints.c.enrollment_id,
            touchpoints.c.sequence_id,
            touchpoints.c.step_id,
            enrollments.c.prospect_id,
            touchpoints.c.claimed_at,
            touchpoints.c.reason,
        )
        .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
        .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        .where(touchpoints.c.status == "unknown")
        .order_by(touchpoints.c.claimed_at, touchpoints.c.id)
    )
    with store.reading() as connection:
        return [UnknownTouch(*row) for row in connection.execute(query)]


def settle_by_hand(
    store: Store, touchpoint_ids: Sequence[int], *, sent: bool, now: datetime
) -> list[int]:
    """A person's verdict on unknown touches: ``sent``, or not sent (planned again, due now).

    All or nothing: ``InputError`` names the touches that are not ``unknown``, and then
    none changes. Returns the ids changed.
    """
    wanted = sorted(set(touchpoint_ids))
    values: dict[str, Any] = (
        {"status": "sent", "sent_at": now, "reason": "marked sent in review"}
        if sent
        else {
            "status": "planned",
            "due_at": now,
            "claim_id": None,
            "reason": "marked not sent in review",
        }
    )
    with store.transaction() as connection:
        changed = sorted(
            connection.execute(
                update(touchpoints)
                .where(and_(touchpoints.c.id.in_(wanted), touchpoints.c.status == "unknown"))
                .values(**values)
                .returning(touchpoints.c.id)
            ).scalars()
        )
        others = [tid for tid in wanted if tid not in set(changed)]
        if others:
            raise InputError(f"not waiting for review (not unknown): {', '.join(map(str, others))}")
    return changed
