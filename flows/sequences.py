"""Each sequence compiles to a Prefect flow named after its id, with one task per step.

A task run performs one batch of one step's due touches; the flow runs a step's batches
until none is due, or the step has used its share of the sequence's time budget, or its
``max_batches_per_tick``: whatever is left is due again at the next tick, first in line.
The Prefect UI reads like the YAML: flow ``outbound-2w``, task runs ``call-intro batch``...

What a tick costs does not grow with the number of sequences:

- the flows and tasks are ``async`` shells: Prefect's sync engine joins each flow run's
  heartbeat thread at exit, which sleeps in one-second steps (about 1 s per sequence), while
  the async engine does not wait for it;
- Prefect's server (on SQLite) answers a write that meets a lock with a 503, which its client
  waits 2 s to retry: ``relance up`` runs it behind a replay (``relance/prefect_server.py``);
- step task runs carry no tags: Prefect asks its API for a concurrency slot for every tag of
  every task run, and starts a client service per distinct tag set. The sequence's tags are
  on its flow run instead (``relance``, ``sequence:<id>``).
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import Flow, Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TagsContext

from relance.runtime import Runtime

StepTask = Task[[datetime, int], Any]
SequenceFlow = Flow[..., Coroutine[Any, Any, dict[str, Any]]]

_compiled: dict[tuple[int, str], SequenceFlow] = {}


def step_task(runtime: Runtime, sequence_id: str, step_id: str) -> StepTask:
    """The task that performs one batch of a step's due touches."""

    async def perform_batch(now: datetime, limit: int) -> dict[str, Any]:
        # Blocking work in an async task: the flow runs one batch at a time anyway, and an
        # async task shares its flow's API client (a sync one would open its own per run).
        report = runtime.dispatcher.run_step(sequence_id, step_id, now=now, limit=limit)
        return {**asdict(report), "handled": report.handled}

    decorate = task(
        name=step_id,
        task_run_name=f"{step_id} batch",
        cache_policy=NO_CACHE,
        persist_result=False,
    )
    return decorate(perform_batch)


def add_report(totals: dict[str, Any], report: dict[str, Any]) -> None:
    """Add one batch's report to a step's totals (counts add up, lists join)."""
    for name, value in report.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            totals[name] = totals.get(name, 0) + value
        elif isinstance(value, list):
            totals.setdefault(name, []).extend(value)


def compile_sequence(sequence_id: str, runtime: Runtime) -> SequenceFlow:
    """The Prefect flow of a sequence; steps get their task the first time they are due."""
    key = (id(runtime), sequence_id)
    if key in _compiled:
        return _compiled[key]
    tasks: dict[str, StepTask] = {}
    settings = runtime.settings

    async def run_sequence(
        now: datetime, steps: list[tuple[str, str]], budget_seconds: float
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        started = time.monotonic()
        # The flow run carries the sequence's tags; its task runs none (see the docstring).
        with TagsContext(current_tags=set()):
            for index, (step_id, _channel) in enumerate(steps):
                if step_id not in tasks:
                    tasks[step_id] = step_task(runtime, sequence_id, step_id)
                totals: dict[str, Any] = {}
                # Each step gets its share of what is left, so one step cannot starve the next.
                remaining = budget_seconds - (time.monotonic() - started)
                step_deadline = time.monotonic() + remaining / (len(steps) - index)
                for batch in range(settings.max_batches_per_tick):
                    if batch and time.monotonic() >= step_deadline:
                        break
                    report = await tasks[step_id](now, settings.batch_size)
                    add_report(totals, report)
                    if report["handled"] < settings.batch_size:
                        break
                summary[step_id] = totals
        return summary

    decorate = flow(
        name=sequence_id,
        flow_run_name=f"{sequence_id} tick",
        persist_result=False,
        validate_parameters=False,
    )
    compiled: SequenceFlow = decorate(run_sequence)
    _compiled[key] = compiled
    return compiled
