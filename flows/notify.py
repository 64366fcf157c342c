"""The ``notify-owner`` flow: an automation runs it when a prospect replies.

``relance up`` deploys it with a deployment trigger on ``relance.prospect.replied``
(``flows/deployments.py``): Prefect's automations service starts a run for every such event,
with the prospect's resource id and the event's id as parameters. The run records an
``owner_notified`` event on the prospect's timeline, once per Prefect event, and logs it; put
the owner's chat or e-mail notification here (a Prefect block, a webhook) to reach them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from relance.notify import record_owner_notice
from relance.runtime import runtime_for
from relance.settings import Settings


@flow(name="notify-owner", flow_run_name="notify owner: {signal}", persist_result=False)
def notify_owner(prospect: str, signal: str = "replied", event_id: str = "") -> dict[str, Any]:
    """Tell the owner of ``prospect`` (``relance.prospect.<id>``) what happened."""
    runtime = runtime_for(Settings())
    notice = record_owner_notice(runtime.store, prospect, signal=signal, event_id=event_id)
    logger = get_run_logger()
    if notice is None:
        logger.warning("no prospect %s: nobody to notify", prospect)
        return {"notified": False}
    logger.info(
        "prospect %d %s: owner %s notified%s",
        notice.prospect_id,
        signal,
        notice.owner or "(none set)",
        "" if notice.new else " already",
    )
    return {"notified": notice.new, "prospect_id": notice.prospect_id}
