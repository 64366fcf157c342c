"""A dispatcher process that fails on purpose: the worker side of the fault harness
(tests/fault_support.py), kept lean because every run starts it several times.

    RELANCE_FAULT=<point>:<n>[:<seed>] python tests/fault_worker.py --url ... --now ...

runs what a dispatch tick does (``recovery.recover``, then every due step until nothing is
due) with the official SendGrid client, and fails at the n-th occurrence of the point:

    before_send     SIGKILL in the sender, before the n-th request goes out
    in_flight       SIGKILL while the n-th request is with the provider (it may have it)
    after_send      SIGKILL after the n-th answer came back, before it is recorded
    before_commit   SIGKILL inside the n-th ``record`` transaction, before COMMIT
    claim_commit    SIGKILL inside the n-th ``claim`` transaction, before COMMIT
    store_error     the n-th ``record`` COMMIT fails: the tick fails half-way (exit 1)

The environment variable is read here, in ``main``, and nowhere in the core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from integrations.sendgrid_mail import SendGridSender
from relance.claims import due_groups
from relance.dispatcher import Dispatcher, StepReport
from relance.errors import ChannelError, StoreError
from relance.outbound import OutboundEmail, SendResult, send_concurrently
from relance.recovery import DEFAULT_GRACE, recover
from relance.rendering import template_environment
from relance.settings import Settings
from relance.store import Store

FAULT_ENV = "RELANCE_FAULT"
KILL_POINTS = ("before_send", "in_flight", "after_send", "before_commit", "claim_commit")
POINTS = (*KILL_POINTS, "store_error")
LEASE = timedelta(minutes=10)
CHUNK = 16
SENDER_TIMEOUT = 1.0
IN_FLIGHT_DELAY = 0.05
"""Seconds the provider takes to answer in in_flight runs, so that a kill can land inside."""


# --- the fault, as the worker reads it ------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Where to fail: the ``at``-th occurrence (from 1) of ``point``."""

    point: str
    at: int
    seed: int = 0

    def __str__(self) -> str:
        return f"{self.point}:{self.at}:{self.seed}"

    @classmethod
    def parse(cls, text: str) -> Fault:
        point, at, *rest = text.split(":")
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}; expected one of {POINTS}")
        return cls(point, int(at), int(rest[0]) if rest else 0)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Occurrences:
    """Counts the occurrences of a point (thread-safe) and says which one is the chosen."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self._lock = threading.Lock()

    def reached(self) -> bool:
        with self._lock:
            self.count += 1
            return self.count == self.at


class FaultySender:
    """Wraps a Sender and dies at the fault's point in its n-th ``send``."""

    def __init__(self, inner: SendGridSender, fault: Fault | None) -> None:
        self.inner = inner
        self.provider = "sendgrid"
        self.fault = (
            fault if fault and fault.point in ("before_send", "in_flight", "after_send") else None
        )
        self._calls = Occurrences(self.fault.at if self.fault else 0)
        self._random = random.Random(fault.seed if fault else 0)

    def send(self, message: OutboundEmail) -> SendResult:
        chosen = self.fault is not None and self._calls.reached()
        point = self.fault.point if chosen and self.fault else None
        if point == "before_send":
            die()
        if point == "in_flight":
            threading.Timer(self._random.uniform(0, 2 * IN_FLIGHT_DELAY), die).start()
        try:
            return self.inner.send(message)
        finally:  # whatever the answer said
            if point == "after_send":
                die()

    def send_many(self, messages: Sequence[OutboundEmail]) -> list[SendResult | ChannelError]:
        return send_concurrently(self.send, messages, CHUNK)


def install_commit_fault(engine: Engine, fault: Fault | None) -> None:
    """Fail the n-th claim or record transaction at its COMMIT (SIGKILL, or a store error)."""
    if fault is None or fault.point not in ("before_commit", "claim_commit", "store_error"):
        return
    kind = "claim" if fault.point == "claim_commit" else "record"
    counter = Occurrences(fault.at)

    @event.listens_for(engine, "before_cursor_execute")
    def _mark(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO deliveries"):
            conn.info["fault_kind"] = "record"
        elif statement.startswith("UPDATE touchpoints SET status") and "claimed_at" in statement:
            conn.info["fault_kind"] = "claim"

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        if conn.info.pop("fault_kind", None) == kind and counter.reached():
            if fault.point == "store_error":
                raise StoreError("fault injection: the store failed at commit")
            die()

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        conn.info.pop("fault_kind", None)


# --- the worker process ---------------------------------------------------------------------


def work(
    store: Store, dispatcher: Dispatcher, now: datetime, *, grace: timedelta
) -> dict[str, Any]:
    """What a dispatch tick does at ``now``, repeated until nothing is due."""
    recovered = recover(store, now, lease=LEASE, grace=grace)
    total = StepReport("*", "*")
    for _ in range(100):
        groups = due_groups(store, now)
        if not groups:
            break
        for group in groups:
            total.add(dispatcher.run_step(group.sequence_id, group.step_id, now=now, limit=500))
    return {"recovered": recovered, "sent": total.sent, "unknown": total.unknown}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="fault_worker.py")
    parser.add_argument("--url", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--sendgrid", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--grace-hours", type=float, default=DEFAULT_GRACE.total_seconds() / 3600)
    parser.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    fault = Fault.parse(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None
    root = Path(args.project)
    store = Store(args.url, migrate=False)  # the harness migrated it
    install_commit_fault(store.engine, fault)
    settings = Settings(home=root, data_dir=root / "var", claim_chunk=CHUNK)
    inner = SendGridSender(
        args.api_key, host=args.sendgrid, timeout=SENDER_TIMEOUT, max_workers=CHUNK
    )
    dispatcher = Dispatcher(
        store, settings, FaultySender(inner, fault), template_environment(root / "templates")
    )
    report = work(
        store, dispatcher, datetime.fromisoformat(args.now), grace=timedelta(hours=args.grace_hours)
    )
    Path(args.report).write_text(json.dumps(report), encoding="utf-8")
    store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
