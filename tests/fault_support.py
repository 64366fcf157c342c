"""Fault injection for the dispatcher: kill it at random points, restart it, and count what
the provider received against what the store says.

One run (``run_once``):

1. a fresh store (a SQLite file, or the wiped PostgreSQL database) with due emails;
2. a dispatcher process (tests/fault_worker.py) sends them through the official SendGrid
   client to a ``ProviderLog``, the fake SendGrid in this process: the ground truth of what
   was sent. It fails at a random point (SIGKILL before a request, while it is with the
   provider, after its answer, inside the record or claim transaction before COMMIT; or
   the store fails at a record's COMMIT). Some runs also get 503/429 answers and one
   answer held past the sender's timeout (the provider has it, the sender never learns);
3. SendGrid's events for what it accepted (``processed`` and ``delivered``) go through the
   Event Webhook's own parsing and recording, before the restart (the touches are still
   ``sending``) or after it, or never (a run without an event feed);
4. the dispatcher restarts after the lease (``recovery.recover`` flags what the dead one
   left and settles it from the events), and again after the grace, when what the provider
   never had is planned again and sent;
5. ``check``: no touch accepted twice; each ends sent (and the provider has it), failed or
   skipped with a reason, or unknown when no event feed exists (flagged for review).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fault_worker import (
    CHUNK,
    FAULT_ENV,
    IN_FLIGHT_DELAY,
    LEASE,
    POINTS,
    SENDER_TIMEOUT,
    Fault,
    work,
)
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from store_support import (
    PG_ADMIN_URL,
    T0,
    fresh_sqlite,
    people,
    postgres_database,
    step,
    wipe,
    write_project,
)

from integrations.sendgrid_events import read_mail_events
from integrations.sendgrid_mail import SendGridSender
from relance.dispatcher import Dispatcher
from relance.engagement import apply_mail_events
from relance.enrollments import enroll
from relance.recovery import DEFAULT_GRACE
from relance.rendering import template_environment
from relance.settings import Settings
from relance.store import Store
from relance.tables import touchpoints
from tests.fakes.sendgrid_server import SCHEMA_ENV, FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "fault_worker.py"
HELD_ANSWER = 2.5
"""Seconds the provider holds one answer in a timeout run: longer than the sender's timeout."""


# --- the provider --------------------------------------------------------------------------


class ProviderLog(FakeSendGrid):
    """The fake SendGrid, which can also hold the answer to its n-th accepted request."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.hold_at: int | None = None
        self.evented = 0
        """How many accepted requests SendGrid already posted events for."""

    def __enter__(self) -> ProviderLog:
        self.start()
        return self

    def reset(self) -> None:
        """Forget every request, scripted failure and held answer: ready for the next run."""
        with self._lock:
            self.requests.clear()
            self.message_ids.clear()
            self.rejected.clear()
            self._failures.clear()
        self.hold_at = None
        self.delay = 0.0
        self.evented = 0

    def answer(
        self, path: str, authorization: str | None, raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = super().answer(path, authorization, raw)
        if self.hold_at is not None and headers.get("X-Message-Id") == f"fake-{self.hold_at:08d}":
            time.sleep(HELD_ANSWER)  # the provider has it; the sender times out waiting
        return status, headers, body

    def accepted_ids(self) -> list[int]:
        with self._lock:
            return [_touchpoint_of(body) for body in self.requests]

    def post_events(self, store: Store, now: datetime) -> int:
        """What SendGrid's Event Webhook posts for the requests accepted since the last call:
        ``processed`` and ``delivered``, through the webhook's own parsing and recording."""
        with self._lock:
            fresh = list(
                zip(self.requests[self.evented :], self.message_ids[self.evented :], strict=True)
            )
            self.evented += len(fresh)
        if not fresh:
            return 0
        posted = []
        for body, message_id in fresh:
            personalization = body["personalizations"][0]
            for name in ("processed", "delivered"):
                posted.append(
                    {
                        "email": personalization["to"][0]["email"],
                        "timestamp": int(now.timestamp()),
                        "event": name,
                        "sg_event_id": f"{message_id}-{name}",
                        "sg_message_id": f"{message_id}.filter0001",
                        **personalization["custom_args"],
                    }
                )
        mail_events, _ = read_mail_events(json.dumps(posted).encode())
        apply_mail_events(store, mail_events, now=now)
        return len(fresh)


def _touchpoint_of(body: dict[str, Any]) -> int:
    return int(body["personalizations"][0]["custom_args"]["touchpoint_id"])


# --- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    """The figures of one run."""

    number: int
    backend: str
    fault: str
    extras: list[str]
    exit_code: int
    touches: int
    accepted: int
    duplicates: int
    losses: int
    unknown: int
    unknown_resolved: int
    unknown_left: int
    truncated: int
    """Requests cut by the kill, that the provider refused (invalid JSON)."""
    problems: list[str] = field(default_factory=list)

    @property
    def killed(self) -> bool:
        return self.exit_code == -signal.SIGKILL

    def line(self) -> str:
        extras = f" +{'+'.join(self.extras)}" if self.extras else ""
        return (
            f"run {self.number:3d} {self.backend:10s} {self.fault:18s}{extras:28s} "
            f"exit {self.exit_code:3d}  accepted {self.accepted:3d}/{self.touches}  "
            f"unknown {self.unknown:2d} (resolved {self.unknown_resolved:2d}, "
            f"left {self.unknown_left:2d})  duplicates {self.duplicates}  losses {self.losses}"
        )


@dataclass(frozen=True)
class Scenario:
    """Everything random about one run, drawn from its seed."""

    fault: Fault
    transient: int
    """Requests answered 503/429 (with a short Retry-After or none)."""
    hold_at: int | None
    """The accepted request whose answer is held past the sender's timeout."""
    early_events: bool
    """Events posted before the restart (the touch is still ``sending``)."""
    feed: bool
    """False: no event ever arrives (no webhook): unknown touches must wait for review."""

    @classmethod
    def draw(cls, rng: random.Random, emails: int, point: str | None = None) -> Scenario:
        """A random scenario (at ``point`` if given) over ``emails`` due emails."""
        point = point or rng.choice(POINTS)
        commits = -(-emails // CHUNK)
        at = rng.randint(
            1, commits if point in ("before_commit", "claim_commit", "store_error") else emails
        )
        return cls(
            fault=Fault(point, at, rng.randrange(2**31)),
            transient=rng.choice([0, 0, 2, 5]),
            hold_at=rng.randint(1, emails) if rng.random() < 0.25 else None,
            early_events=rng.random() < 0.5,
            feed=rng.random() >= 0.1,
        )

    def extras(self) -> list[str]:
        found = []
        if self.transient:
            found.append(f"{self.transient}x5xx")
        if self.hold_at:
            found.append("timeout")
        if not self.feed:
            found.append("nofeed")
        elif self.early_events:
            found.append("early")
        return found


class Harness:
    """The provider and the project shared by the runs; starts the dispatchers.

    The dispatcher that fails is always a process of its own. The restarts are processes
    too, or (``restart_in_process``, quicker) a fresh dispatcher in this process.
    """

    def __init__(
        self, workdir: Path, provider: ProviderLog, project_root: Path, *, restart_in_process: bool
    ) -> None:
        self.workdir = workdir
        self.provider = provider
        self.project_root = project_root
        self.restart_in_process = restart_in_process

    def run_worker(self, url: str, now: datetime, fault: Fault | None) -> int:
        """Start a dispatcher process at ``now``; its exit code (-9 when killed)."""
        # Nothing from this shell's RELANCE_* settings (caps...) reaches the worker.
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("RELANCE_") or name == SCHEMA_ENV
        }
        environment["PYTHONPATH"] = str(ROOT)
        if fault is not None:
            environment[FAULT_ENV] = str(fault)
        command = [
            *(sys.executable, str(WORKER), "--url", url, "--project", str(self.project_root)),
            *("--now", now.isoformat(), "--sendgrid", self.provider.url),
            *("--api-key", self.provider.api_key, "--report", str(self.workdir / "report.json")),
        ]
        done = subprocess.run(
            command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
        )
        if done.returncode not in (0, -signal.SIGKILL) and "fault injection" not in done.stderr:
            raise RuntimeError(f"the worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.returncode

    def restart(self, store: Store, now: datetime) -> None:
        """A dispatcher without faults, at ``now``."""
        if not self.restart_in_process:
            self.run_worker(store.url, now, None)
            return
        sender = SendGridSender(
            self.provider.api_key, host=self.provider.url, timeout=SENDER_TIMEOUT
        )
        settings = Settings(
            home=self.project_root, data_dir=self.project_root / "var", claim_chunk=CHUNK
        )
        environment = template_environment(self.project_root / "templates")
        work(store, Dispatcher(store, settings, sender, environment), now, grace=DEFAULT_GRACE)


def run_once(
    harness: Harness, store: Store, number: int, scenario: Scenario, start: datetime
) -> RunResult:
    """One run on an enrolled ``store`` whose touches are all due at ``start``."""
    provider = harness.provider
    provider.reset()
    touches = _count_touches(store)

    # 1. The dispatcher that fails.
    provider.hold_at = scenario.hold_at
    if scenario.transient:
        provider.fail_next(
            scenario.transient, 503 if number % 2 else 429, retry_after=0.05 if number % 3 else None
        )
    if scenario.fault.point == "in_flight":
        provider.delay = IN_FLIGHT_DELAY
    exit_code = harness.run_worker(store.url, start, scenario.fault)
    provider.delay = 0.0
    provider.hold_at = None
    left_open = _ids_with_status(store, ("sending", "unknown"))

    # 2. SendGrid's events, early (while the claims are still 'sending'), then the restart.
    if scenario.feed and scenario.early_events:
        provider.post_events(store, start + timedelta(minutes=1))
    restart = start + LEASE + timedelta(minutes=1)
    harness.restart(store, restart)
    if scenario.feed:
        provider.post_events(store, restart + timedelta(minutes=1))

    # 3. After the grace, what the provider never had is planned again and sent.
    later = start + DEFAULT_GRACE + timedelta(hours=1)
    harness.restart(store, later)
    if scenario.feed:
        provider.post_events(store, later + timedelta(minutes=1))

    return check(
        store,
        provider.accepted_ids(),
        number=number,
        fault=scenario.fault,
        extras=scenario.extras(),
        exit_code=exit_code,
        touches=touches,
        left_open=left_open,
        feed=scenario.feed,
        rejected=[reason for _, reason in provider.rejected],
    )


def check(
    store: Store,
    accepted: list[int],
    *,
    number: int,
    fault: Fault,
    extras: list[str],
    exit_code: int,
    touches: int,
    left_open: set[int],
    feed: bool,
    rejected: Sequence[str],
) -> RunResult:
    """Compare the provider's log (the truth) with the store."""
    counts = Counter(accepted)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    problems = [f"touchpoint {tid} accepted {n} times" for tid, n in counts.items() if n > 1]
    # A dispatcher killed while it wrote a request leaves a truncated body, which the
    # provider refuses as SendGrid would; any other refusal is a defect.
    problems += [
        f"the provider refused a request: {r}" for r in rejected if "invalid JSON" not in r
    ]
    with store.reading() as connection:
        rows = connection.execute(
            select(touchpoints.c.id, touchpoints.c.status, touchpoints.c.reason)
        ).all()
    lost: set[int] = set()
    for tid, status, reason in rows:
        if status == "unknown" and feed:
            problems.append(f"touchpoint {tid}: unknown although the provider's events came")
            continue
        if status == "sent" and tid not in counts:
            problems.append(f"touchpoint {tid}: the store says sent, the provider never had it")
        elif status in ("failed", "skipped") and not reason:
            problems.append(f"touchpoint {tid}: {status} without a reason")
        elif status in ("failed", "skipped") and tid in counts:
            problems.append(f"touchpoint {tid}: {status}, but the provider has it")
        elif status in ("planned", "sending"):
            problems.append(f"touchpoint {tid}: still {status} at the end")
        elif status not in ("sent", "failed", "skipped", "unknown"):
            problems.append(f"touchpoint {tid}: status {status}")
        else:
            continue
        lost.add(tid)
    status_of = {tid: status for tid, status, _ in rows}
    left = {tid for tid in left_open if status_of.get(tid) == "unknown"}
    return RunResult(
        number=number,
        backend=store.dialect,
        fault=f"{fault.point}@{fault.at}",
        extras=extras,
        exit_code=exit_code,
        touches=touches,
        accepted=len(counts),
        duplicates=duplicates,
        losses=len(lost),
        unknown=len(left_open),
        unknown_resolved=len(left_open) - len(left),
        unknown_left=len(left),
        truncated=sum("invalid JSON" in r for r in rejected),
        problems=problems,
    )


def _ids_with_status(store: Store, statuses: Sequence[str]) -> set[int]:
    with store.reading() as connection:
        return set(
            connection.execute(
                select(touchpoints.c.id).where(touchpoints.c.status.in_(statuses))
            ).scalars()
        )


def _count_touches(store: Store) -> int:
    with store.reading() as connection:
        return len(connection.execute(select(touchpoints.c.id)).all())


def summary(results: Sequence[RunResult]) -> dict[str, Any]:
    """The totals over all runs, as the bench prints them in its last line."""
    return {
        "bench": "faults",
        "runs": len(results),
        "kills": sum(r.killed for r in results),
        "store_errors": sum(r.exit_code not in (0, -signal.SIGKILL) for r in results),
        "faults_not_reached": sum(r.exit_code == 0 for r in results),
        "backends": dict(Counter(r.backend for r in results)),
        "touches": sum(r.touches for r in results),
        "accepted": sum(r.accepted for r in results),
        "duplicates": sum(r.duplicates for r in results),
        "losses": sum(r.losses for r in results),
        "unknown": sum(r.unknown for r in results),
        "unknown_resolved": sum(r.unknown_resolved for r in results),
        "unknown_left_for_review": sum(r.unknown_left for r in results),
        "truncated_requests": sum(r.truncated for r in results),
    }


# --- many runs ---------------------------------------------------------------------------


def postgres_reachable() -> bool:
    """Whether the test PostgreSQL server answers (the bench's runs on it are skipped if not)."""
    engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            return True
    except Exception:  # down, refused, wrong credentials: no PostgreSQL runs
        return False
    finally:
        engine.dispose()


@contextmanager
def fault_runs(
    workdir: Path, *, emails: int, postgres: bool, restart_in_process: bool = False
) -> Iterator[Callable[[int, Scenario, str], RunResult]]:
    """``run(number, scenario, backend)`` for ``backend`` "sqlite" or "postgresql".

    The provider, the project and an empty migrated SQLite file are made once; each run gets
    a copy of that file, or the (one) PostgreSQL database wiped.
    """
    project = write_project(workdir / "project", [step("hello", "email")])
    template = workdir / "template.db"
    Store(f"sqlite:///{template}").dispose()
    with ExitStack() as stack:
        provider = stack.enter_context(ProviderLog())
        harness = Harness(workdir, provider, project.root, restart_in_process=restart_in_process)
        shared: Store | None = None
        if postgres:
            shared = Store(stack.enter_context(postgres_database("relance_faults")))
            stack.callback(shared.dispose)

        def run(number: int, scenario: Scenario, backend: str) -> RunResult:
            if backend == "postgresql":
                assert shared is not None, "PostgreSQL runs need postgres=True"
                store = shared
                wipe(store)
            else:
                store = fresh_sqlite(template, workdir)
            try:
                enroll(store, project.sequence, people(emails), start=T0, now=T0)
                return run_once(harness, store, number, scenario, T0)
            finally:
                if store is not shared:
                    store.dispose()
                    Path(make_url(store.url).database or "").unlink(missing_ok=True)

        yield run
