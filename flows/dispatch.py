"""The scheduled dispatch flow: one tick claims and performs every due touch.

Deployed by prefect.yaml on an interval (every minute) to a work pool; ``relance
dispatch`` runs one tick on the same code; the demo runs ticks at simulated times.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger

from flows.sequences import compile_sequence
from relance.claims import due_groups
from relance.recovery import recover
from relance.runtime import runtime_for
from relance.settings import Settings


@flow(name="dispatch", flow_run_name="dispatch", persist_result=False)
def dispatch(now: datetime | None = None) -> dict[str, Any]:
    """Perform every touch due at ``now`` (default: the current time)."""
    runtime = runtime_for(Settings())
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Claims of dead dispatchers, then emails whose outcome is unknown (relance/recovery.py).
    recovered = recover(
        runtime.store, moment, lease=timedelta(minutes=runtime.settings.sending_lease_minutes)
    )
    by_sequence: dict[str, list[tuple[str, str]]] = {}
    for group in due_groups(runtime.store, moment):
        by_sequence.setdefault(group.sequence_id, []).append((group.step_id, group.channel))
    summary: dict[str, Any] = {"now": moment.isoformat(), "recovered": recovered, "sequences": {}}
    started = time.monotonic()
    budget = runtime.settings.tick_budget_seconds
    for index, (sequence_id, steps) in enumerate(by_sequence.items()):
        # The most overdue sequence comes first (due_groups' order); each gets a fair share
        # of the budget left, so that one huge sequence cannot starve the others.
        share = (budget - (time.monotonic() - started)) / (len(by_sequence) - index)
        summary["sequences"][sequence_id] = compile_sequence(sequence_id, runtime)(
            now=moment, steps=steps, budget_seconds=max(share, 0.0)
        )
    get_run_logger().info(
        "tick at %s: %d sequence(s) with due touches", moment.isoformat(), len(by_sequence)
    )
    return summary
