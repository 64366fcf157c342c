"""Concurrency, on SQLite and PostgreSQL: dispatchers running at once never send a touch twice
nor leave one behind, and a reply committed before a touch is claimed stops that touch."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from store_support import (
    T0,
    RecordingSender,
    WorkerReport,
    count_rows,
    dispatch_worker,
    dispatcher_for,
    people,
    step,
    tick,
    touch_rows,
    wipe,
    write_project,
)

import relance.dispatcher
from relance.claims import ClaimReport, claim
from relance.engine import Signal
from relance.enrollments import EnrollResult, enroll
from relance.errors import StateError
from relance.signals import book, record_signal
from relance.store import Store
from relance.tables import enrollments, prospects, touchpoints

TOUCHES = 2_000
WORKERS = 2
THREADS_PER_WORKER = 2


def run_dispatchers(
    store: Store, tmp_path: Path, *, touches: int, processes: int, loops: int
) -> list[WorkerReport]:
    """``processes`` dispatcher processes (``loops`` dispatch loops each) work ``touches``
    due e-mails together; asserts that every touch is sent exactly once."""
    project = write_project(tmp_path, [step("hello", "email")])
    enroll(store, project.sequence, people(touches), start=T0, now=T0)
    expected = sorted(r.id for r in touch_rows(store))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    reports = [tmp_path / f"worker-{n}.json" for n in range(processes)]
    workers = [
        context.Process(
            target=dispatch_worker,
            args=(
                store.url,
                str(project.root),
                project.sequence.model_dump_json(),
                T0.isoformat(),
                str(path),
                barrier,
                loops,
                0.0002,
            ),
        )
        for path in reports
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=900)
    assert [worker.exitcode for worker in workers] == [0] * processes

    done = [WorkerReport.load(path) for path in reports]
    sends = [tid for report in done for tid in report.sent]
    duplicates = {tid: n for tid, n in Counter(sends).items() if n > 1}
    print(
        f"\n[{store.dialect}] {touches} due touches, {processes} processes x "
        f"{loops} dispatch loops: sends per process "
        f"{[len(report.sent) for report in done]}, duplicates {len(duplicates)}, "
        f"left behind {len(set(expected) - set(sends))}"
    )
    assert duplicates == {}
    assert sorted(sends) == expected
    assert all(report.sent for report in done), "every process took part"
    assert {r.status for r in touch_rows(store)} == {"sent"}
    assert count_rows(store, "deliveries") == touches
    return done


def test_concurrent_dispatchers_send_every_touch_exactly_once(store: Store, tmp_path: Path) -> None:
    """Two dispatcher processes (two dispatch loops each) work the same 2,000 due e-mails."""
    run_dispatchers(store, tmp_path, touches=TOUCHES, processes=WORKERS, loops=THREADS_PER_WORKER)


@pytest.mark.postgres
def test_four_dispatchers_share_20k_touches_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    """Four dispatcher processes on PostgreSQL (SKIP LOCKED) over 20,000 due e-mails."""
    store = Store(postgres_url)
    wipe(store)
    try:
        run_dispatchers(store, tmp_path, touches=20_000, processes=4, loops=1)
    finally:
        wipe(store)
        store.dispose()


def test_a_reply_committed_before_the_claim_stops_the_touch(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies for a random half of the prospects land while a tick sends.

    Claims and replies are ordered by one global counter: a claim's number before it begins,
    a reply's number once it has committed. No claim that began after a prospect's reply had
    committed may take that prospect's touch. (A claim that committed before the reply is
    allowed to send: the reply came too late for it.)
    """
    count = 600
    project = write_project(tmp_path, [step("hello", "email"), step("again", "email", "2d")])
    enroll(store, project.sequence, people(count), start=T0, now=T0)
    emails = [person.email for person in people(count)]
    replied = random.Random(20260302).sample(emails, count // 2)

    order = itertools.count()
    order_lock = threading.Lock()

    def next_number() -> int:
        with order_lock:
            return next(order)

    claims: list[tuple[int, list[int]]] = []
    first_claim = threading.Event()

    def ordered_claim(target: Store, **arguments: Any) -> ClaimReport:
        began = next_number()
        report = claim(target, **arguments)
        claims.append((began, [c.touchpoint_id for c in report.claimed]))
        first_claim.set()
        return report

    monkeypatch.setattr(relance.dispatcher, "claim", ordered_claim)
    sender = RecordingSender(delay=0.002)
    dispatcher = dispatcher_for(store, project, sender, claim_chunk=16)
    replies_store = Store(store.url)
    committed: dict[str, int] = {}
    errors: list[BaseException] = []

    def reply() -> None:
        try:
            first_claim.wait(timeout=60)
            for address in replied:
                record_signal(replies_store, address, Signal.REPLIED, now=T0, source="inbound")
                committed[address] = next_number()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    replies = threading.Thread(target=reply)
    replies.start()
    tick(store, dispatcher, T0)
    replies.join(timeout=300)
    replies_store.dispose()
    assert errors == []
    assert len(committed) == len(replied)

    owner = _owners(store)
    late = [
        (owner[touch], began, committed[owner[touch]])
        for began, touches in claims
        for touch in touches
        if owner[touch] in committed and began > committed[owner[touch]]
    ]
    assert late == [], "claims that began after the prospect's reply had committed"
    first_sends = Counter(owner[tid] for tid in sender.sent_ids())
    sent_anyway = sum(1 for address in replied if first_sends[address])
    held = len(replied) - sent_anyway
    print(
        f"\n[{store.dialect}] {count} prospects, {len(replied)} replies during the tick: "
        f"{held} touches stopped by the reply, {sent_anyway} claimed before it, late claims 0"
    )
    assert held > 0, "no reply landed while the tick was sending: the test proved nothing"

    before = Counter(owner[tid] for tid in sender.sent_ids())
    tick(store, dispatcher, T0 + timedelta(days=3))
    after = Counter(owner[tid] for tid in sender.sent_ids())
    assert sender.duplicates() == {}
    for address in replied:
        assert after[address] == before[address], f"{address} replied, then got more"
    for address in set(emails) - set(replied):
        assert after[address] == 2, f"{address} did not get both steps exactly once"
    with store.reading() as connection:
        statuses = connection.execute(
            select(enrollments.c.status, prospects.c.email).join(
                prospects, prospects.c.id == enrollments.c.prospect_id
            )
        ).all()
    assert {status for status, address in statuses if address in committed} == {"paused"}


def _owners(store: Store) -> dict[int, str]:
    """touchpoint id -> prospect e-mail address."""
    with store.reading() as connection:
        rows = connection.execute(
            select(touchpoints.c.id, prospects.c.email)
            .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
            .join(prospects, prospects.c.id == enrollments.c.prospect_id)
        )
        return {row.id: row.email for row in rows}


def test_concurrent_enrollments_of_the_same_prospects_enroll_each_once(
    store: Store, tmp_path: Path
) -> None:
    """Two SDRs import the same list at the same moment."""
    project = write_project(tmp_path, [step("hello", "email")])
    batch = people(200)
    start = threading.Barrier(2)
    results: list[EnrollResult] = []
    errors: list[BaseException] = []

    def import_list() -> None:
        own = Store(store.url)
        try:
            start.wait(timeout=30)
            results.append(enroll(own, project.sequence, batch, start=T0, now=T0))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            own.dispose()

    threads = [threading.Thread(target=import_list) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    enrolled = sorted(email for result in results for email, _ in result.enrolled)
    already = sorted(email for result in results for email in result.already_active)
    assert enrolled == already == sorted(p.email for p in batch)
    assert count_rows(store, "prospects") == count_rows(store, "enrollments") == 200
    assert count_rows(store, "touchpoints") == 200


@pytest.mark.postgres
def test_two_signals_at_once_for_one_enrollment_see_each_other(
    postgres_url: str, tmp_path: Path
) -> None:
    """A stop and a resume arrive together for a paused enrollment: whichever runs second
    must see the first one's result, not the state both read before either wrote."""
    store = Store(postgres_url)
    wipe(store)
    project = write_project(tmp_path, [step("hello", "email"), step("again", "email", "2d")])
    enroll(store, project.sequence, people(1), start=T0, now=T0)
    address = people(1)[0].email
    record_signal(store, address, Signal.PAUSED, now=T0)
    outcomes: dict[str, object] = {}

    def send(name: str, signal: Signal) -> None:
        own = Store(postgres_url)
        try:
            outcomes[name] = record_signal(own, address, signal, now=T0)
        except StateError as error:
            outcomes[name] = error
        finally:
            own.dispose()

    with store.engine.connect() as blocker:
        holding = blocker.begin()
        blocker.execute(select(enrollments.c.id).with_for_update())
        threads = []
        for name, signal in (("stop", Signal.STOPPED), ("resume", Signal.RESUMED)):
            thread = threading.Thread(target=send, args=(name, signal))
            thread.start()
            threads.append(thread)
            _wait_for_lock_waiters(store, len(threads))
        holding.rollback()
    for thread in threads:
        thread.join(timeout=60)
    store_status = count_rows(store, "enrollments"), _statuses(store)
    store.dispose()

    assert isinstance(outcomes["resume"], StateError), outcomes
    assert store_status == (1, ["stopped"])


def _wait_for_lock_waiters(store: Store, count: int) -> None:
    """Block until ``count`` sessions of this database wait on a lock (a sync, not a timing)."""
    for _ in range(2_000):
        with store.reading() as connection:
            waiting = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar_one()
        if waiting >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"{count} sessions never waited on the lock")


def _statuses(store: Store) -> list[str]:
    with store.reading() as connection:
        return list(connection.execute(select(enrollments.c.status)).scalars())


def test_a_webhook_delivered_twice_at_once_is_recorded_once(store: Store, tmp_path: Path) -> None:
    """Providers retry: the same replies (exit rule: stop) and bookings arrive on two
    connections at the same moment; each is applied once and the copies are no-ops."""
    project = write_project(
        tmp_path,
        [step("hello", "email"), step("confirm", "meeting_confirmation")],
        exit={"reply": "stop"},
    )
    count = 60
    enroll(store, project.sequence, people(count), start=T0, now=T0)
    emails = [person.email for person in people(count)]
    start = threading.Barrier(2)
    duplicates: list[int] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        own = Store(store.url)
        seen = 0
        try:
            start.wait(timeout=30)
            for index, address in enumerate(emails):
                if index % 2:
                    outcome = record_signal(
                        own, address, Signal.REPLIED, now=T0, external_id=f"<reply-{index}>"
                    )
                else:
                    outcome = book(
                        own,
                        address,
                        starts_at=T0 + timedelta(days=2),
                        duration=timedelta(minutes=30),
                        now=T0,
                        external_id=f"booking-{index}",
                    )
                seen += outcome.duplicate
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            duplicates.append(seen)
            own.dispose()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sum(duplicates) == count
    assert count_rows(store, "events") == count
    assert count_rows(store, "meetings") == count // 2
    assert sorted(_statuses(store)) == ["booked"] * (count // 2) + ["stopped"] * (count // 2)


def test_two_providers_suppressing_one_address_at_once_both_succeed(
    store: Store, tmp_path: Path
) -> None:
    """A bounce and a spam report (different events) for the same addresses, at once."""
    addresses = [f"gone{index}@example.com" for index in range(60)]
    enroll(
        store,
        write_project(tmp_path, [step("hello", "email")]).sequence,
        people(1),
        start=T0,
        now=T0,
    )
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def report(signal: Signal) -> None:
        own = Store(store.url)
        try:
            start.wait(timeout=30)
            for address in [*addresses, "p0000@example.com"]:
                record_signal(own, address, signal, now=T0, external_id=f"{signal}-{address}")
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            own.dispose()

    threads = [
        threading.Thread(target=report, args=(signal,))
        for signal in (Signal.BOUNCED, Signal.SPAM_REPORT)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert count_rows(store, "suppressions") == len(addresses) + 1
    assert count_rows(store, "events") == 2 * (len(addresses) + 1)
    assert _statuses(store) == ["stopped"]
