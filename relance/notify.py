"""Prefect events for what happens to prospects, so that automations can react.

Events are named ``relance.prospect.<signal>`` (replied, booked, bounced, unsubscribed,
paused, resumed, stopped, snoozed...) with the prospect as resource and the enrollments
as related resources. Ids only: never an address or a message body.

They are emitted only when a Prefect API is configured (``PREFECT_API_URL``, as in a
deployment, the demo or the test harness): with none, Prefect would start a temporary
server just to receive them, which a one-line CLI command must not do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from relance.signals import _record_event as record_event
from relance.store import Store
from relance.tables import prospects

logger = logging.getLogger(__name__)


def prefect_api_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def emit_prospect_event(
    signal: str,
    prospect_id: int | None,
    enrollment_ids: list[int],
    payload: dict[str, Any] | None = None,
) -> bool:
    """Emit ``relance.prospect.<signal>``; False when no Prefect API is configured."""
    if not prefect_api_configured():
        return False
    from prefect.events import emit_event

    resource_id = f"relance.prospect.{prospect_id}" if prospect_id else "relance.prospect.unknown"
    try:
        emit_event(
            event=f"relance.prospect.{signal}",
            resource={"prefect.resource.id": resource_id},
            related=[
                {
                    "prefect.resource.id": f"relance.enrollment.{eid}",
                    "prefect.resource.role": "enrollment",
                }
                for eid in enrollment_ids
            ],
            payload=payload or {},
        )
    except Exception:  # a notification must never undo what the store recorded
        logger.warning("could not emit relance.prospect.%s", signal, exc_info=True)
        return False
    return True


@dataclass(frozen=True)
class OwnerNotice:
    prospect_id: int
    owner: str
    new: bool
    """False when this Prefect event had already been noted (an automation ran twice)."""


def record_owner_notice(
    store: Store, resource_id: str, *, signal: str, event_id: str, now: datetime | None = None
) -> OwnerNotice | None:
    """Note on the prospect's timeline that its owner was told of ``signal``; None when
    ``resource_id`` (``relance.prospect.<id>``) names no prospect."""
    number = resource_id.rsplit(".", 1)[-1]
    if not number.isdigit() or len(number) > 18:
        return None
    with store.transaction() as connection:
        row = connection.execute(
            select(prospects.c.id, prospects.c.owner).where(prospects.c.id == int(number))
        ).first()
        if row is None:
            return None
        external_id = f"prefect-event:{event_id}:owner_notified" if event_id else None
        new = record_event(
            connection,
            kind="owner_notified",
            source="prefect-automation",
            now=now or datetime.now(UTC),
            prospect_id=row.id,
            external_id=external_id,
            data={"signal": signal, "owner": row.owner},
        )
    return OwnerNotice(row.id, row.owner, new)
