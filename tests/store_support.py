"""Test support for the store and the dispatcher: stores on SQLite and PostgreSQL, a small
project (sequence + templates) written in a temporary directory, a fixed clock, fake
e-mail senders and one dispatch tick as the flow runs it.

The ``store`` fixture runs a test on a fresh SQLite file and on PostgreSQL. PostgreSQL
gets one database per test session (``relance_test_<pid>_<random>``, dropped at the end)
whose tables are emptied before each test. When the server cannot be reached the
PostgreSQL tests are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
from sqlalchemy import Row, create_engine, delete, select, text
from sqlalchemy.engine import make_url

from relance.claims import due_groups, next_due, recover_stale
from relance.dispatcher import Dispatcher, StepReport
from relance.engine import Status
from relance.errors import ChannelError, PermanentChannelError, TransientChannelError
from relance.outbound import OutboundEmail, Sender, SendResult, send_concurrently
from relance.outbox import OutboxSender
from relance.prospect import Prospect
from relance.rendering import template_environment
from relance.settings import Settings
from relance.spec import Sequence as SequenceSpec
from relance.store import Store
from relance.tables import enrollments, metadata, touchpoints

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Monday 2 March 2026, 09:00 in Paris: the fixed "now" most tests start from."""

PG_ADMIN_URL = os.environ.get(
    "RELANCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
"""A database on the test server from which per-session databases are created."""

ALWAYS_OPEN = {
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    "start": "00:00",
    "end": "23:59",
}
"""A send window that never defers the whole-hour times tests use."""

BUSINESS_HOURS = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:30"}


# --- clock ----------------------------------------------------------------------------


@dataclass
class Clock:
    """A clock that moves only when told to."""

    now: datetime = T0

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


# --- project: a sequence and its templates ---------------------------------------------


def step(step_id: str, channel: str, wait: str = "0d", **extra: Any) -> dict[str, Any]:
    """One step as a YAML author writes it, with template paths under the sequence's id."""
    parts = {
        "email": ("subject", "html", "text"),
        "meeting_confirmation": ("subject", "html", "text"),
        "call": ("script",),
        "reminder": ("reminder",),
    }[channel]
    return {
        "id": step_id,
        "channel": channel,
        "wait": wait,
        "objective": f"objective of {step_id}",
        "templates": {part: f"{{seq}}/{step_id}.{part}.j2" for part in parts},
        **extra,
    }


TEMPLATE_TEXT = {
    "subject": "{{ step.id }} for {{ prospect.first_name or prospect.email }}",
    "html": "<p>{{ step.objective }} {{ prospect.company }}</p>"
    '<a href="{{ unsubscribe_url }}">unsubscribe</a>',
    "text": "{{ step.objective }}\n{% if meeting %}{{ meeting.starts_at }}{% endif %}\n"
    "{{ unsubscribe_url }}",
    "script": "Call {{ prospect.email }}: {{ step.objective }}",
    "reminder": "Remember {{ prospect.email }}: {{ step.objective }}",
}


@dataclass(frozen=True)
class Project:
    """A sequence and its templates, written under ``root``."""

    root: Path
    sequence: SequenceSpec

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def env(self) -> jinja2.Environment:
        return template_environment(self.templates_dir)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "home": self.root,
            "data_dir": self.root / "var",
            "claim_chunk": 16,
        }
        values.update(overrides)
        return Settings(**values)

    def timed_step_ids(self) -> list[str]:
        return [s.id for s in self.sequence.timed_steps]


def write_project(
    root: Path, steps: Sequence[dict[str, Any]], *, sequence_id: str = "demo", **fields: Any
) -> Project:
    """Write the templates of ``steps`` under ``root/templates`` and return the project.

    By default the sequence is in UTC, ignores public holidays, sends at any hour of any
    day and keeps a one-hour minimum gap; ``fields`` override any of that.
    """
    spec: dict[str, Any] = {
        "id": sequence_id,
        "name": f"Sequence {sequence_id}",
        "locale": "en",
        "timezone": "UTC",
        "country": "FR",
        "send_window": ALWAYS_OPEN,
        "holidays": {"country": False},
        "cadence": {"min_gap": "1h"},
        "steps": [
            {**s, "templates": {k: v.format(seq=sequence_id) for k, v in s["templates"].items()}}
            for s in steps
        ],
    }
    spec.update(fields)
    sequence = SequenceSpec.model_validate(spec)
    for item in sequence.steps:
        for part, name in item.templates.parts().items():
            path = root / "templates" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(TEMPLATE_TEXT[part], encoding="utf-8")
    return Project(root, sequence)


def people(count: int, *, prefix: str = "p", **fields: Any) -> list[Prospect]:
    """``count`` prospects p0000@example.com, p0001@example.com..."""
    return [
        Prospect(email=f"{prefix}{index:04d}@example.com", first_name=f"P{index}", **fields)
        for index in range(count)
    ]


# --- fake e-mail channel ---------------------------------------------------------------


class RecordingSender:
    """An e-mail channel that remembers every message it is asked to send (thread-safe).

    Touchpoint ids in ``transient`` / ``permanent`` fail with the matching channel error;
    ``delay`` seconds pass in every send; ``outbox`` also writes the message as an .eml file.
    """

    provider = "fake"

    def __init__(
        self,
        *,
        transient: Sequence[int] = (),
        permanent: Sequence[int] = (),
        retry_after: float | None = None,
        delay: float = 0.0,
        outbox: OutboxSender | None = None,
    ) -> None:
        self.transient = set(transient)
        self.permanent = set(permanent)
        self.retry_after = retry_after
        self.delay = delay
        self.outbox = outbox
        self.calls: list[int] = []
        self.sent: list[OutboundEmail] = []
        self._lock = threading.Lock()

    def send(self, message: OutboundEmail) -> SendResult:
        touchpoint_id = int(message.touchpoint_id)
        with self._lock:
            self.calls.append(touchpoint_id)
        if touchpoint_id in self.permanent:
            raise PermanentChannelError(f"touchpoint {touchpoint_id}: address refused")
        if touchpoint_id in self.transient:
            raise TransientChannelError(
                f"touchpoint {touchpoint_id}: try later", retry_after=self.retry_after
            )
        if self.delay:
            time.sleep(self.delay)
        result = SendResult(self.provider, f"fake-{touchpoint_id}")
        if self.outbox is not None:
            result = self.outbox.send(message)
        with self._lock:
            self.sent.append(message)
        return result

    def send_many(self, messages: Sequence[OutboundEmail]) -> list[SendResult | ChannelError]:
        return send_concurrently(self.send, messages, 1)

    def sent_ids(self) -> list[int]:
        with self._lock:
            return [int(message.touchpoint_id) for message in self.sent]

    def duplicates(self) -> dict[int, int]:
        """Touchpoint ids sent more than once, with their count."""
        return {tid: n for tid, n in Counter(self.sent_ids()).items() if n > 1}


def dispatcher_for(store: Store, project: Project, sender: Sender, **settings: Any) -> Dispatcher:
    return Dispatcher(store, project.settings(**settings), sender, project.env)


# --- one tick, as flows/dispatch.py runs it ----------------------------------------------


def tick(
    store: Store,
    dispatcher: Dispatcher,
    now: datetime,
    *,
    lease: timedelta = timedelta(minutes=10),
    limit: int = 10_000,
) -> StepReport:
    """Recover stale claims, then perform every due touch of every step at ``now``."""
    recover_stale(store, now, lease)
    total = StepReport("*", "*")
    for group in due_groups(store, now):
        total.add(dispatcher.run_step(group.sequence_id, group.step_id, now=now, limit=limit))
    return total


def run_until_idle(
    store: Store, dispatcher: Dispatcher, clock: Clock, *, max_ticks: int = 100
) -> int:
    """Tick at each next due time until nothing is due; returns the number of ticks."""
    for count in range(max_ticks):
        due = next_due(store)
        if due is None:
            return count
        clock.now = max(clock.now, due)
        tick(store, dispatcher, clock.now)
    raise AssertionError(f"still touches due after {max_ticks} ticks")


# --- reading the store -------------------------------------------------------------------


def touch_rows(store: Store, enrollment_id: int | None = None) -> list[Row[Any]]:
    query = select(touchpoints).order_by(touchpoints.c.enrollment_id, touchpoints.c.position)
    if enrollment_id is not None:
        query = query.where(touchpoints.c.enrollment_id == enrollment_id)
    with store.reading() as connection:
        return list(connection.execute(query))


def enrollment_row(store: Store, enrollment_id: int) -> Row[Any]:
    with store.reading() as connection:
        return connection.execute(
            select(enrollments).where(enrollments.c.id == enrollment_id)
        ).one()


def enrollment_status(store: Store, enrollment_id: int) -> Status:
    return Status(enrollment_row(store, enrollment_id).status)


def count_rows(store: Store, table_name: str) -> int:
    with store.reading() as connection:
        return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table_name}").scalar_one())


def wipe(store: Store) -> None:
    """Empty every table (the schema and its revision stay).

    PostgreSQL keeps counting ids: a process may cache rows by id (sequence versions), and
    an id must never name two different rows while it runs.
    """
    with store.transaction() as connection:
        if store.dialect == "postgresql":
            names = ", ".join(table.name for table in metadata.sorted_tables)
            connection.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(metadata.sorted_tables):
                connection.execute(delete(table))


# --- PostgreSQL ----------------------------------------------------------------------------


def postgres_unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true where PostgreSQL must be there."""
    message = f"PostgreSQL is not reachable ({PG_ADMIN_URL}): {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
    pytest.skip(message)


@contextmanager
def postgres_database(prefix: str = "relance_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration of the block; yields its URL."""
    admin_url = make_url(PG_ADMIN_URL)
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as error:  # the server is down or refuses us
        admin.dispose()
        postgres_unavailable(str(error).splitlines()[0])
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """This session's PostgreSQL database, migrated to the latest schema."""
    with postgres_database() as url:
        Store(url).dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file that tests copy (migrating takes longer than copying)."""
    path = tmp_path_factory.mktemp("template") / "relance.db"
    Store(f"sqlite:///{path}").dispose()
    return path


def fresh_sqlite(template: Path, directory: Path) -> Store:
    """A new SQLite store in ``directory``, a copy of the migrated ``template``."""
    path = directory / f"relance-{secrets.token_hex(4)}.db"
    shutil.copyfile(template, path)
    return Store(f"sqlite:///{path}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store on SQLite (a temporary file) and on PostgreSQL."""
    if request.param == "sqlite":
        opened = fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        opened = Store(request.getfixturevalue("postgres_url"))
        wipe(opened)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- a dispatch worker in its own process (multiprocessing "spawn") --------------------------


@dataclass
class WorkerReport:
    """What one worker process sent, in the order it sent them."""

    sent: list[int] = field(default_factory=list)
    ticks: int = 0

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({"sent": self.sent, "ticks": self.ticks}), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> WorkerReport:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(sent=list(data["sent"]), ticks=int(data["ticks"]))


def dispatch_worker(
    url: str,
    root: str,
    sequence_spec: str,
    now: str,
    report_path: str,
    start: Any,
    threads: int,
    delay: float,
) -> None:
    """A dispatcher process: ``threads`` dispatch loops tick at ``now`` until nothing is due.

    ``start`` is a multiprocessing barrier shared with the other workers, so that they all
    begin claiming together. Every message the fake channel is asked to send is logged.
    """
    project = Project(Path(root), SequenceSpec.model_validate_json(sequence_spec))
    store = Store(url)
    sender = RecordingSender(delay=delay)
    dispatcher = dispatcher_for(store, project, sender, claim_chunk=25)
    moment = datetime.fromisoformat(now)
    ticks = Counter[int]()

    def loop(number: int) -> None:
        while due_groups(store, moment):
            tick(store, dispatcher, moment)
            ticks[number] += 1

    start.wait(timeout=120)
    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    WorkerReport(sent=sender.sent_ids(), ticks=sum(ticks.values())).dump(Path(report_path))
    store.dispose()
