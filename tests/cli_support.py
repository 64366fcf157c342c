"""Test support for the store commands of the CLI: a small project in a temporary
directory (one sequence, its templates), the environment pointing at it, and a runner.

The sequence ``outreach`` is in Paris time, sends on business days 09:00-17:30, ignores
public holidays, and declares the custom field ``industry`` that imports must provide:

    call-intro            call                  at enrollment
    email-guide           email                 1 business day later
    reminder-slots        reminder              2 business days later
    meeting-confirmation  meeting_confirmation  on booking, reminder 1 day before
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_support import BUSINESS_HOURS, T0, Project, RecordingSender, step, write_project
from typer.testing import CliRunner, Result

import relance.cli  # noqa: F401 - registers every command
from relance.cli.app import app
from relance.dispatcher import Dispatcher, StepReport
from relance.store import Store
from relance.tables import metadata

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
NOW = "2026-03-02T08:00:00Z"
"""Monday 2 March 2026, 09:00 in Paris (``store_support.T0``)."""

STEPS = [
    step("call-intro", "call"),
    step("email-guide", "email", "1 business day"),
    step("reminder-slots", "reminder", "2 business days"),
    step("meeting-confirmation", "meeting_confirmation", remind_before="1d"),
]


@dataclass
class Cli:
    """The CLI on a fresh project and store, with the Prefect events it emitted."""

    project: Project
    data_dir: Path
    emitted: list[tuple[str, int | None, list[int], dict[str, Any]]] = field(default_factory=list)
    runner: CliRunner = field(default_factory=CliRunner)

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args))

    def ok(self, *args: str) -> str:
        """Run a command that must succeed; its standard output."""
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def fails(self, *args: str) -> str:
        """Run a command that must fail cleanly; its standard error."""
        result = self.run(*args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return result.stderr

    @property
    def store(self) -> Store:
        return Store(f"sqlite:///{(self.data_dir / 'relance.db').as_posix()}")

    def count(self, table: str) -> int:
        with self.store.reading() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(metadata.tables[table])
                ).scalar_one()
            )

    def dispatch(self, step_id: str, now: datetime = T0) -> StepReport:
        """Perform the due touches of one step, as the flow does (tasks for calls)."""
        settings = self.project.settings(data_dir=self.data_dir)
        dispatcher = Dispatcher(self.store, settings, RecordingSender(), self.project.env)
        return dispatcher.run_step("outreach", step_id, now=now, limit=100)


def make_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    project = write_project(
        tmp_path / "project",
        STEPS,
        sequence_id="outreach",
        timezone="Europe/Paris",
        send_window=BUSINESS_HOURS,
        prospect_fields=["industry"],
        cadence={"min_gap": "1h"},
    )
    sequences = project.root / "sequences"
    sequences.mkdir()
    (sequences / "outreach.yaml").write_text(
        project.sequence.model_dump_json(exclude_defaults=True), encoding="utf-8"
    )
    data_dir = tmp_path / "data"
    for name in ("RELANCE_DATABASE_URL", "SENDGRID_API_KEY", "RELANCE_SENDGRID_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(project.root))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    cli = Cli(project, data_dir)

    def record(signal: str, prospect_id: int | None, ids: list[int], payload: Any = None) -> bool:
        cli.emitted.append((signal, prospect_id, ids, payload or {}))
        return True

    for module in ("relance.cli.work", "relance.cli.tasks"):
        monkeypatch.setattr(f"{module}.emit_prospect_event", record)
    return cli


def enroll_claire(cli: Cli, *extra: str) -> str:
    """Enroll the prospect most tests follow; the command's output."""
    return cli.ok(
        "enroll", "outreach", "--email", "claire.martin@example.com",
        "--first-name", "Claire", "--last-name", "Martin", "--company", "Acme Industrie",
        "--phone", "+33 1 23 45 67 89", "--timezone", "Europe/Paris", "--country", "FR",
        "--owner", "sdr@example.com", "--field", "industry=automotive", "--now", NOW, *extra,
    )  # fmt: skip
