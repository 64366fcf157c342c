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
from typing import Any

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
