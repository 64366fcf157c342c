"""Editing a shipped sequence mid-run does not change the schedule of prospects already
enrolled; ``relance migrate --to-latest`` then moves them, never sending a step twice.

A copy of the shipped sequences and templates in a temporary directory is the project;
emails go to a recording sender, a tick runs every due step as the dispatch flow does.
Times are in Paris (UTC+1 in March 2026); Monday 2 March 09:00 is ``T0``.

    version 1 (shipped)                 version 2 (edited at Monday 11:00)
    call-intro        at enrollment     call-intro        at enrollment
    email-benchmark   1 business day    email-benchmark   1 business day, new title subject
    call-followup     2 business days   call-followup     3 business days
    email-case-study  2 business days   email-case-study  2 business days
    reminder-meeting  1 business day    call-case-study   1 business day (new)
    email-last        3 business days   email-last        2 business days
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from store_support import RecordingSender, tick, touch_rows
from typer.testing import CliRunner

import relance.cli  # noqa: F401 - registers every command
from relance.cadence import plan_touchpoints
from relance.catalog import resolve_sequence
from relance.claims import next_due
from relance.cli.app import app
from relance.dispatcher import Dispatcher
from relance.enrollments import enroll
from relance.prospect import Prospect
from relance.rendering import template_environment
from relance.settings import Settings
from relance.spec import Sequence
from relance.store import Store
from relance.tables import enrollments, sequence_versions, tasks
from relance.variants import assign_variant

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
EDITED_AT = T0 + timedelta(hours=2)
MIGRATED_AT = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
"""Friday 6 March, 13:00 in Paris: the early prospects have had three touches."""

V1_TITLE = "Benchmark 2025 : les délais de livraison dans l'industrie"
V2_TITLE = "Vos délais de livraison face à 140 usines"
QUESTION = "87 % de livraisons à l'heure : où se situe {company} ?"


@dataclass
class LiveProject:
    """The shipped project copied to ``root``, a store and a dispatcher over it."""

    root: Path
    settings: Settings
    store: Store
    sender: RecordingSender
    dispatcher: Dispatcher
    enrolled: dict[str, int] = field(default_factory=dict)
    """email -> enrollment id of everyone enrolled so far."""

    @property
    def yaml(self) -> Path:
        return self.root / "sequences" / "outbound-2w.yaml"

    def sequence(self) -> Sequence:
        return resolve_sequence("outbound-2w", self.settings)

    def enroll(self, people: list[Prospect], now: datetime) -> dict[str, int]:
        result = enroll(self.store, self.sequence(), people, start=now, now=now)
        self.enrolled.update(result.enrolled)
        return dict(result.enrolled)

    def replace(self, old: str, new: str) -> None:
        text = self.yaml.read_text(encoding="utf-8")
        assert text.count(old) == 1, old
        self.yaml.write_text(text.replace(old, new), encoding="utf-8")

    def run_until(self, end: datetime, check: Any = None) -> None:
        """Tick at each due time up to ``end``; ``check()`` after every tick."""
        while (due := next_due(self.store)) is not None and due <= end:
            tick(self.store, self.dispatcher, due)
            if check is not None:
                check()

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveProject]:
    root = tmp_path / "project"
    for folder in ("sequences", "templates"):
        shutil.copytree(ROOT / folder, root / folder)
    for name in list(os.environ):
        if name.startswith("RELANCE_") or name in ("SENDGRID_API_KEY", "DATABASE_URL"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RELANCE_HOME", str(root))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    settings = Settings()
    store = Store(settings.store_url)
    sender = RecordingSender()
    env = template_environment(settings.templates_path)
    project = LiveProject(root, settings, store, sender, Dispatcher(store, settings, sender, env))
    yield project
    store.dispose()


def person(name: str) -> Prospect:
    return Prospect(
        email=f"{name}@example.com",
        first_name=name.title(),
        company=f"{name.title()} SA",
        fields={"industry": "automotive"},
    )


def edit_mid_run(live: LiveProject) -> None:
    """The marketer's edit: a wait, a new step, a removed step, a new subject."""
    live.replace(
        '  - id: call-followup\n    channel: call\n    wait: "2 business days"',
        '  - id: call-followup\n    channel: call\n    wait: "3 business days"',
    )
    live.replace(
        "      subject: outbound-2w/{locale}/email-benchmark.subject.j2",
        "      subject: outbound-2w/{locale}/email-benchmark.v2.subject.j2",
    )
    start = live.yaml.read_text(encoding="utf-8").index("  - id: reminder-meeting")
    end = live.yaml.read_text(encoding="utf-8").index("  - id: email-last")
    removed = live.yaml.read_text(encoding="utf-8")[start:end]
    live.replace(
        removed,
        "  - id: call-case-study\n"
        "    channel: call\n"
        '    wait: "1 business day"\n'
        "    objective: Check the case study rings true, and propose two time slots.\n"
        "    templates:\n"
        "      script: outbound-2w/{locale}/call-followup.script.j2\n\n",
    )
    live.replace(
        '  - id: email-last\n    channel: email\n    wait: "3 business days"',
        '  - id: email-last\n    channel: email\n    wait: "2 business days"',
    )
    for locale, subject in (("fr", V2_TITLE), ("en", "Your on-time delivery against 140 plants")):
        path = live.root / "templates" / "outbound-2w" / locale / "email-benchmark.v2.subject.j2"
        path.write_text(subject + "\n", encoding="utf-8")


def due_times(live: LiveProject, enrollment_id: int) -> dict[str, datetime]:
    return {row.step_id: row.due_at for row in touch_rows(live.store, enrollment_id)}


def versions_of(live: LiveProject) -> dict[int, int]:
    query = select(enrollments.c.id, sequence_versions.c.version).join(
        sequence_versions, sequence_versions.c.id == enrollments.c.sequence_version_id
    )
    with live.store.reading() as connection:
        return {row.id: row.version for row in connection.execute(query)}


def sent(live: LiveProject) -> Counter[tuple[str, str]]:
    """(email, step id) of every email sent and every SDR task created."""
    with live.store.reading() as connection:
        rows = connection.execute(select(tasks.c.touchpoint_id))
        task_ids = {row.touchpoint_id for row in rows}
    steps = {row.id: (row.enrollment_id, row.step_id) for row in touch_rows(live.store)}
    emails = {eid: email for email, eid in live.enrolled.items()}
    counted: Counter[tuple[str, str]] = Counter(
        (message.to_email, message.step_id) for message in live.sender.sent
    )
    for touch_id in task_ids:
        enrollment_id, step_id = steps[touch_id]
        counted[(emails[enrollment_id], step_id)] += 1
    return counted


@dataclass
class MidRun:
    """Two prospects enrolled on version 1, the edit, two on version 2, a week of ticks."""

    v1: Sequence
    v2: Sequence
    early: dict[str, int]
    late: dict[str, int]
    planned_v1: dict[int, dict[str, datetime]]


def run_with_an_edit(live: LiveProject) -> MidRun:
    """Up to Friday 13:00: every due tick ran, and the early schedule held at each one."""
    v1 = live.sequence()
    early = live.enroll([person("ana"), person("chloe")], T0)
    planned_v1 = {
        eid: {t.step_id: t.due_at for t in plan_touchpoints(v1, person(email.split("@")[0]), T0)}
        for email, eid in early.items()
    }
    live.run_until(T0)  # the intro calls of the early prospects
    edit_mid_run(live)
    assert live.cli("validate").startswith("3 sequences ok")
    late = live.enroll([person("emma"), person("david")], EDITED_AT)
    run = MidRun(v1, live.sequence(), early, late, planned_v1)

    def early_schedule_holds() -> None:
        for eid in early.values():
            assert due_times(live, eid) == planned_v1[eid]

    early_schedule_holds()
    live.run_until(MIGRATED_AT, early_schedule_holds)
    return run


def test_prospects_enrolled_before_an_edit_keep_their_version_and_schedule(
    live: LiveProject,
) -> None:
    run = run_with_an_edit(live)
    versions = versions_of(live)
    assert [versions[eid] for eid in run.early.values()] == [1, 1]
    for eid in run.early.values():  # reminder-meeting still there, no call-case-study
        assert due_times(live, eid) == run.planned_v1[eid]
    subjects = {m.to_email: m.subject for m in live.sender.sent if m.step_id == "email-benchmark"}
    variants = [assign_variant("outbound-2w", run.v1.step("email-benchmark"), e) for e in subjects]
    assert variants == ["question", "title", "title", "question"]
    assert subjects == {
        "ana@example.com": QUESTION.format(company="Ana SA"),
        "chloe@example.com": V1_TITLE,  # enrolled on version 1: its subject
        "emma@example.com": V2_TITLE,  # enrolled on version 2
        "david@example.com": QUESTION.format(company="David SA"),
    }


def test_prospects_enrolled_after_an_edit_get_the_new_version_and_schedule(
    live: LiveProject,
) -> None:
    run = run_with_an_edit(live)
    versions = versions_of(live)
    assert [versions[eid] for eid in run.late.values()] == [2, 2]
    for email, eid in run.late.items():
        plan = plan_touchpoints(run.v2, person(email.split("@")[0]), EDITED_AT)
        assert due_times(live, eid) == {t.step_id: t.due_at for t in plan}
    followups = {
        email: due_times(live, eid)["call-followup"] for email, eid in live.enrolled.items()
    }
    assert followups == {  # two business days after the email in version 1, three in version 2
        "ana@example.com": datetime(2026, 3, 5, 8, 0, tzinfo=UTC),
        "chloe@example.com": datetime(2026, 3, 5, 8, 0, tzinfo=UTC),
        "emma@example.com": datetime(2026, 3, 6, 10, 0, tzinfo=UTC),
        "david@example.com": datetime(2026, 3, 6, 10, 0, tzinfo=UTC),
    }
    assert {email for email, step in sent(live) if step == "call-followup"} == set(live.enrolled)


def test_migrate_moves_them_without_sending_a_step_twice(live: LiveProject) -> None:
    run = run_with_an_edit(live)
    late_before = {eid: touch_rows(live.store, eid) for eid in run.late.values()}
    friday = "2026-03-06T12:00:00Z"  # MIGRATED_AT
    dry = live.cli("migrate", "outbound-2w", "--to-latest", "--dry-run", "--now", friday)
    assert [versions_of(live)[eid] for eid in run.early.values()] == [1, 1]
    moved = live.cli("migrate", "outbound-2w", "--to-latest", "--now", friday)
    changes = (
        "  step              status   change\n"
        "  call-intro        sent     kept\n"
        "  email-benchmark   sent     kept\n"
        "  call-followup     sent     kept\n"
        "  reminder-meeting  planned  skipped: removed in version 2\n"
        "  email-case-study  planned  unchanged: Mon 2026-03-09 09:00\n"
        "  call-case-study   new      added: Tue 2026-03-10 09:00\n"
        "  email-last        planned  Fri 2026-03-13 09:00 -> Thu 2026-03-12 09:00\n"
    )
    ana, chloe = run.early["ana@example.com"], run.early["chloe@example.com"]
    assert moved == (
        f"ana@example.com (enrollment {ana}, times in Europe/Paris): version 1 -> 2\n{changes}"
        f"chloe@example.com (enrollment {chloe}, times in Europe/Paris): version 1 -> 2\n"
        f"{changes}"
        "moved 2 enrollments of outbound-2w to version 2 (2 re-planned, 2 unchanged, 2 added, "
        "2 skipped, 6 done and kept)\n"
    )
    assert dry == moved.replace(
        "moved 2 enrollments of outbound-2w to version 2",
        "dry run, nothing changed: 2 enrollments of outbound-2w would move to version 2",
    )
    assert set(versions_of(live).values()) == {2}
    assert {eid: touch_rows(live.store, eid) for eid in run.late.values()} == late_before
    assert live.cli("versions", "outbound-2w") == (
        "version   stored (UTC)      steps  live  enrollments  changes\n"
        "1         2026-03-02 08:00  7      0     0\n"
        "2 (file)  2026-03-02 10:00  7      4     4            "
        "+call-case-study, -reminder-meeting, ~email-benchmark, ~call-followup, ~email-last\n"
    )

    live.run_until(datetime(2026, 3, 31, tzinfo=UTC))

    counted = sent(live)
    assert max(counted.values()) == 1 and live.sender.duplicates() == {}
    every_step = [*(s.id for s in run.v1.timed_steps), "call-case-study"]
    for email in run.early:  # version 1's steps up to Friday, then version 2's
        assert [step for step in every_step if (email, step) in counted] == [
            "call-intro", "email-benchmark", "call-followup", "email-case-study", "email-last",
            "call-case-study",
        ]  # fmt: skip
    for email in run.late:
        steps_v2 = [s.id for s in run.v2.timed_steps]
        assert [step for step in every_step if (email, step) in counted] == [
            step for step in every_step if step in steps_v2
        ]
    rows = {row.step_id: row for row in touch_rows(live.store, ana)}
    assert (rows["reminder-meeting"].status, rows["reminder-meeting"].reason) == (
        "skipped", "removed in version 2"
    )  # fmt: skip
    assert rows["call-case-study"].due_at == datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    assert rows["email-last"].due_at == datetime(2026, 3, 12, 8, 0, tzinfo=UTC)
    follow_ups = {m.to_email: m.subject for m in live.sender.sent if m.step_id == "email-last"}
    assert follow_ups["chloe@example.com"] == f"Re: {V1_TITLE}"  # the thread it started
    assert follow_ups["emma@example.com"] == f"Re: {V2_TITLE}"
