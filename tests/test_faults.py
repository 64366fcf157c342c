"""Under faults, exactly what was promised: dispatchers killed at random points never send a
touch twice nor lose one (the short form of bench/faults.py, described in
tests/fault_support.py), and a tick that fails half-way leaves the store consistent."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from fault_support import ProviderLog, RunResult, Scenario, fault_runs, summary
from fault_worker import LEASE, POINTS, Fault, install_commit_fault, work
from store_support import T0, count_rows, dispatcher_for, people, step, touch_rows, write_project

from integrations.sendgrid_mail import SendGridSender
from relance.enrollments import enroll
from relance.errors import StoreError
from relance.recovery import DEFAULT_GRACE
from relance.store import Store

EMAILS = 100
RUNS = {"sqlite": 8, "postgresql": 3}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_killed_dispatchers_never_send_a_touch_twice_nor_lose_one(
    backend: str, tmp_path: Path
) -> None:
    """Each run kills a dispatcher process at one point (the points take turns), restarts
    it after the lease and after the grace, and compares the store with the provider."""
    rng = random.Random(f"faults-{backend}")
    offset = 0 if backend == "sqlite" else 1
    results: list[RunResult] = []
    with fault_runs(
        tmp_path, emails=EMAILS, postgres=backend == "postgresql", restart_in_process=True
    ) as run:
        for number in range(1, RUNS[backend] + 1):
            point = POINTS[(number - 1 + offset) % len(POINTS)]
            results.append(run(number, Scenario.draw(rng, EMAILS, point), backend))
    print()
    for result in results:
        print(result.line())
    totals = summary(results)
    print(json.dumps(totals))

    assert [f"run {r.number}: {p}" for r in results for p in r.problems] == []
    assert (totals["duplicates"], totals["losses"]) == (0, 0)
    assert totals["kills"] + totals["store_errors"] == len(results), "every fault struck"
    assert totals["unknown"] > 0, "no fault left an outcome unknown: the test proved nothing"
    assert totals["unknown_resolved"] + totals["unknown_left_for_review"] == totals["unknown"]


def test_a_tick_that_fails_half_way_leaves_the_store_consistent(
    store: Store, tmp_path: Path
) -> None:
    """The third ``record`` of a tick fails at COMMIT: what was recorded stays, what the
    provider took but the store did not record stays claimed, and recovery then settles
    every touch exactly once."""
    project = write_project(tmp_path, [step("hello", "email")])
    enroll(store, project.sequence, people(80), start=T0, now=T0)
    with ProviderLog() as provider:
        sender = SendGridSender(provider.api_key, host=provider.url, timeout=5.0, max_workers=16)
        dispatcher = dispatcher_for(store, project, sender, claim_chunk=16)
        install_commit_fault(store.engine, Fault("store_error", 3))

        with pytest.raises(StoreError, match="fault injection"):
            work(store, dispatcher, T0, grace=DEFAULT_GRACE)

        rows = touch_rows(store)
        accepted = provider.accepted_ids()
        sent = {row.id for row in rows if row.status == "sent"}
        claimed = {row.id for row in rows if row.status == "sending"}
        assert {row.status for row in rows} <= {"planned", "sending", "sent"}
        assert len(accepted) == len(set(accepted)), "nothing went out twice"
        assert sent <= set(accepted), "the store never says sent for what the provider lacks"
        assert count_rows(store, "deliveries") == len(sent), "a failed record wrote nothing"
        unrecorded = set(accepted) - sent
        assert unrecorded, "the failed record held sends: else the test proves nothing"
        assert unrecorded <= claimed, "what the provider took and nobody recorded stays claimed"

        # SendGrid's events, a dispatcher after the lease, another after the grace.
        provider.post_events(store, T0 + timedelta(minutes=1))
        work(store, dispatcher, T0 + LEASE + timedelta(minutes=1), grace=DEFAULT_GRACE)
        provider.post_events(store, T0 + LEASE + timedelta(minutes=2))
        work(store, dispatcher, T0 + DEFAULT_GRACE + timedelta(hours=1), grace=DEFAULT_GRACE)

        final = touch_rows(store)
        assert Counter(provider.accepted_ids()) == Counter({row.id: 1 for row in final})
        assert {row.status for row in final} == {"sent"}
        reasons = Counter(row.reason for row in final if row.id in unrecorded)
        assert reasons == {"confirmed by the provider's events": len(unrecorded)}
