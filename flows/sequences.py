"""Each sequence compiles to a Prefect flow named after its id, with one task per step.

A task run performs one batch of one step's due touches; the flow runs a step's batches
until none is due, or the step has used its share of the tick's time budget, or its
``max_batches_per_tick``: whatever is left is due again at the next tick, first in line.
The Prefect UI reads like the YAML: flow ``outbound-2w``, task runs ``call-intro batch``...
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from prefect import Flow, Task, flow, task
from prefect.cache_policies import NO_CACHE

from relance.runtime import Runtime

_compiled: dict[tuple[int, str], Flow[..., dict[str, Any]]] = {}


StepTask = Task[[datetime, int], dict[str, Any]]


def step_task(runtime: Runtime, sequence_id: str, step_id: str, channel: str) -> StepTask:
    """The task that performs one batch of a step's due touches."""

    def perform_batch(now: datetime, limit: int) -> dict[str, Any]:
        report = runtime.dispatcher.run_step(sequence_id, step_id, now=now, limit=limit)
        return {**asdict(report), "handled": report.handled}

    decorate = task(
        name=step_id,
        task_run_name=f"{step_id} batch",
        tags=[f"sequence:{sequence_id}", f"channel:{channel}"],
        cache_policy=NO_CACHE,
        persist_result=False,
    )
    return decorate(perform_batch)


def compile_sequence(sequence_id: str, runtime: Runtime) -> Flow[..., dict[str, Any]]:
    """The Prefect flow of a sequence; steps get their task the first time they are due."""
    key = (id(runtime), sequence_id)
    if key in _compiled:
        return _compiled[key]
    tasks: dict[str, StepTask] = {}
    settings = runtime.settings

    def run_sequence(
        now: datetime, steps: list[tuple[str, str]], budget_seconds: float
    ) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        started = time.monotonic()
        for index, (step_id, channel) in enumerate(steps):
            if step_id not in tasks:
                tasks[step_id] = step_task(runtime, sequence_id, step_id, channel)
            totals: dict[str, Any] = {}
            # Each step gets its share of what is left, so one step cannot starve the next.
            remaining = budget_seconds - (time.monotonic() - started)
            step_deadline = time.monotonic() + remaining / (len(steps) - index)
            for batch in range(settings.max_batches_per_tick):
                if batch and time.monotonic() >= step_deadline:
                    break
                report = tasks[step_id](now, settings.batch_size)
                for name, value in report.items():
                    if isinstance(value, int):
                        totals[name] = totals.get(name, 0) + value
                    elif isinstance(value, list):
                        totals.setdefault(name, []).extend(value)
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
    compiled: Flow[..., dict[str, Any]] = decorate(run_sequence)
    _compiled[key] = compiled
    return compiled
