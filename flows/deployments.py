"""The work pool and the deployments ``relance up`` creates, or updates, on its Prefect API.

- work pool ``relance`` (type process): its workers run the flow runs as processes of the
  installed package, so ``RELANCE_HOME`` need only hold ``sequences/`` and ``templates/``;
- ``dispatch/dispatch``: the tick, on an interval schedule (every 60 s by default), one run at
  a time on SQLite (the next one waits: ENQUEUE), a few at once on PostgreSQL (claims skip
  what another run locked);
- ``notify-owner/notify-owner``: run by its deployment trigger on each
  ``relance.prospect.replied`` event (Prefect's automations).

The entrypoints are module paths (``flows.dispatch.dispatch``), not files: a worker imports
them from the installed package, whatever its working directory. Applying is idempotent: the
same names update the same pool, deployments and automation.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.exceptions import ObjectAlreadyExists
from prefect.types.entrypoint import EntrypointType
from prefect.workers.process import ProcessWorker

from flows.dispatch import dispatch
from flows.notify import notify_owner

POOL = "relance"
DISPATCH = "dispatch/dispatch"
NOTIFY = "notify-owner/notify-owner"


def deployments(interval_seconds: float, *, concurrent_ticks: int = 1) -> list[RunnerDeployment]:
    """The deployments of Relance, for a tick every ``interval_seconds``."""
    tick = RunnerDeployment.from_flow(
        dispatch,
        name="dispatch",
        interval=interval_seconds,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=concurrent_ticks, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        description="One tick of Relance: performs every touch that is due.",
        tags=["relance"],
        work_pool_name=POOL,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    on_reply = DeploymentEventTrigger(
        name="relance: notify the owner of a reply",
        expect={"relance.prospect.replied"},
        match={"prefect.resource.id": "relance.prospect.*"},
        parameters={
            "prospect": "{{ event.resource.id }}",
            "signal": "replied",
            "event_id": "{{ event.id | string }}",
        },
    )
    notify = RunnerDeployment.from_flow(
        notify_owner,
        name="notify-owner",
        triggers=[on_reply],
        description="Tells a prospect's owner that the prospect replied.",
        tags=["relance"],
        work_pool_name=POOL,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return [tick, notify]


async def apply_deployments(interval_seconds: float, *, concurrent_ticks: int = 1) -> list[str]:
    """Create the work pool when missing, then create or update the deployments."""
    async with get_client() as client:
        template: dict[str, Any] = ProcessWorker.get_default_base_job_template()
        with suppress(ObjectAlreadyExists):
            await client.create_work_pool(
                WorkPoolCreate(name=POOL, type="process", base_job_template=template)
            )
    names: list[str] = []
    for deployment in deployments(interval_seconds, concurrent_ticks=concurrent_ticks):
        await deployment.aapply()
        names.append(f"{deployment.flow_name}/{deployment.name}")
    return names
