"""The scheduled dispatch flow: one tick claims and performs every due touch.

Deployed by ``relance up`` (and prefect.yaml) on an interval, every minute, to the
``relance`` work pool; ``relance dispatch`` runs one tick on the same code (``run_tick``);
the demo runs ticks at simulated times.

A tick runs the sequences with due touches in turn, most overdue first, each in its
own Prefect flow run (``flows/sequences.py``). It ends by publishing a table artifact,
``relance-tick``, so that Prefect's Artifacts page keeps the history of what each tick did.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.artifacts import acreate_table_artifact

from flows.sequences import compile_sequence
from relance.claims import due_groups
from relance.recovery import recover
from relance.runtime import Runtime, runtime_for
from relance.settings import Settings

ARTIFACT_KEY = "relance-tick"
COUNTS = ("sent", "tasks", "skipped", "deferred", "retried", "failed", "unknown")


@flow(name="dispatch", flow_run_name="dispatch", persist_result=False)
async def dispatch(now: datetime | None = None) -> dict[str, Any]:
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
    started = time.monotonic()
    reports = await run_sequences(runtime, moment, by_sequence, started)
    summary: dict[str, Any] = {"now": moment.isoformat(), "recovered": recovered}
    summary["sequences"] = dict(zip(by_sequence, reports, strict=True))
    await publish_tick(summary)
    totals = {name: sum(step.get(name, 0) for step in steps_of(summary)) for name in COUNTS}
    get_run_logger().info(
        "tick at %s: %d sequence(s) due, %s in %.1f s",
        moment.isoformat(),
        len(by_sequence),
        ", ".join(f"{totals[name]} {name}" for name in COUNTS if totals[name]) or "nothing done",
        time.monotonic() - started,
    )
    return summary


async def run_sequences(
    runtime: Runtime,
    moment: datetime,
    by_sequence: dict[str, list[tuple[str, str]]],
    started: float,
) -> list[dict[str, Any]]:
    """Run each sequence's flow in turn, most overdue first (``due_groups``' order).

    Each gets a fair share of the tick's budget that is left, so that one huge sequence
    cannot starve the others. (Side by side, they were slower: on SQLite, the Prefect
    server's writers then meet each other's locks; see relance/prefect_server.py.)
    """
    budget = runtime.settings.tick_budget_seconds
    reports: list[dict[str, Any]] = []
    for index, (sequence_id, steps) in enumerate(by_sequence.items()):
        share = (budget - (time.monotonic() - started)) / (len(by_sequence) - index)
        with tags("relance", f"sequence:{sequence_id}"):
            report: dict[str, Any] = await compile_sequence(sequence_id, runtime)(
                now=moment, steps=steps, budget_seconds=max(share, 0.0)
            )
        reports.append(report)
    return reports


def steps_of(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [report for steps in summary["sequences"].values() for report in steps.values()]


def tick_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per sequence and step of a tick's summary, for the tick artifact."""
    return [
        {"sequence": sequence_id, "step": step_id}
        | {name: int(report.get(name, 0)) for name in COUNTS}
        for sequence_id, steps in summary["sequences"].items()
        for step_id, report in steps.items()
    ]


async def publish_tick(summary: dict[str, Any]) -> None:
    """The ``relance-tick`` table artifact: what this tick did, per sequence and step."""
    rows = tick_rows(summary)
    await acreate_table_artifact(
        key=ARTIFACT_KEY,
        table=rows or [{"sequence": "-", "step": "-"} | dict.fromkeys(COUNTS, 0)],
        description=f"Relance tick at {summary['now']}: "
        + (f"{len(summary['sequences'])} sequence(s) with due touches" if rows else "nothing due")
        + f"; {sum(summary['recovered'].values())} stale or unknown touch(es) recovered.",
    )


def run_tick(now: datetime | None = None) -> dict[str, Any]:
    """One tick, from synchronous code (the CLI, the demo): runs the ``dispatch`` flow."""
    result: dict[str, Any] = asyncio.run(dispatch(now=now))
    return result
