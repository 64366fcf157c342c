"""``relance dispatch`` and ``relance demo`` end to end, on the session's Prefect API."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.catalog import resolve_sequence
from relance.cli.app import app
from relance.enrollments import enroll
from relance.prospect import Prospect
from relance.settings import Settings
from relance.store import Store

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.prefect


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RELANCE_HOME", str(ROOT))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "120")
    return Settings()


def test_dispatch_runs_one_tick_and_prints_what_it_did(
    prefect_api_url: str, settings: Settings
) -> None:
    monday = datetime(2026, 3, 2, 8, tzinfo=UTC)
    enroll(
        Store(settings.store_url),
        resolve_sequence("outbound-2w", settings),
        [Prospect(email="ana@client.example", fields={"industry": "retail"})],
        start=monday,
        now=monday,
    )
    runner = CliRunner()
    early = runner.invoke(app, ["dispatch", "--now", "2026-03-01T10:00:00+01:00"])
    assert (early.exit_code, early.stdout) == (0, "Nothing due at 2026-03-01T09:00:00+00:00.\n")

    result = runner.invoke(app, ["dispatch", "--now", "2026-03-02T10:00:00+01:00"])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == [
        "sequence",
        "step",
        "sent",
        "tasks",
        "skipped",
        "deferred",
        "retried",
        "failed",
    ]
    assert lines[1] == ["outbound-2w", "call-intro", "0", "1", "0", "0", "0", "0"]

    again = runner.invoke(app, ["dispatch", "--now", "2026-03-02T10:00:00+01:00", "--json"])
    assert json.loads(again.stdout)["sequences"] == {}


def test_dispatch_refuses_a_time_without_offset(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["dispatch", "--now", "2026-03-02T10:00"])
    assert result.exit_code == 1
    assert "--now: expected a time with its UTC offset" in result.output
    assert "Traceback" not in result.output


def test_a_short_demo_keeps_its_promises(
    prefect_api_url: str, settings: Settings, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["demo", "--days", "5", "--data-dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "1. validated the sequences" in result.output
    enrolled = "enrolled 50 sample prospects: 10 in nurture-cold-12m, 10 in nurture-warm, "
    assert enrolled + "30 in outbound-2w" in result.output
    replied = re.search(
        r"Check: (\d+) prospects replied; touches sent to them after their reply "
        r"\(before any resume\): (\d+)",
        result.output,
    )
    booked = re.search(
        r"Check: (\d+) prospects booked; confirmations with a valid \.ics invite: (\d+)",
        result.output,
    )
    assert replied and booked, result.output
    assert int(replied[1]) >= 2 and replied[2] == "0"
    assert int(booked[1]) >= 1 and booked[1] == booked[2]
    assert len(list((tmp_path / "demo" / "outbox").glob("*.eml"))) > 0


def test_dispatch_on_a_temporary_api_prints_no_link_to_it(tmp_path: Path) -> None:
    """Without PREFECT_API_URL, the tick runs on a local API that stops with the command:
    Prefect's "View at http://127.0.0.1:PORT/runs/..." would send the user nowhere."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RELANCE_"))}
    env.update(
        RELANCE_HOME=str(ROOT),
        RELANCE_DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    done = subprocess.run(
        [sys.executable, "-m", "relance", "dispatch", "--now", "2026-03-02T10:00:00+01:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Beginning flow run" in done.stdout + done.stderr  # INFO logs are on
    assert "View at" not in done.stdout + done.stderr
