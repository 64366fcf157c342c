"""``relance report``: the table in the terminal (exact), JSON, the HTML page, bad input."""
# ruff: noqa: E501 - the expected tables are as wide as the terminal output they check

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from report_support import build_history
from rich.console import Console
from typer.testing import CliRunner, Result

import relance.cli  # noqa: F401 - registers every command
from relance.cli.app import app
from relance.cli.reporting import show_report
from relance.store import Store

NOW = "2026-03-08T08:00:00Z"


class Reporting:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, ["report", *args])

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def fails(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return result.stderr


@pytest.fixture
def reporting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Reporting:
    data_dir = tmp_path / "data"
    store = Store(f"sqlite:///{(data_dir / 'relance.db').as_posix()}")
    build_history(store, tmp_path / "project")
    store.dispose()
    monkeypatch.delenv("RELANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path / "project"))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    return Reporting(data_dir)


FUNNEL = """\
rates: opened and clicked of delivered; every other rate of sent

funnel: prospects that reached each stage or went beyond it
stage     prospects                                  to next
Suspect          13  ██████████████████████████████    → 92%
Lead             12  ████████████████████████████      → 42%
Prospect          5  ████████████                     → 100%
MQL               5  ████████████                      → 60%
SQL               3  ███████                           → 67%
Meeting           2  █████                             → 50%
Client            1  ██
"""


def test_the_report_of_every_sequence(reporting: Reporting) -> None:
    assert reporting.ok("--now", NOW) == (
        """\
Relance report · all sequences · Sun 2026-03-08 08:00 UTC

sequence nurture
step     sent  delivered    opened  clicked  replied  booked  bounced  unsub.  tasks
welcome     2    1 (50%)  1 (100%)   0 (0%)   0 (0%)  0 (0%)   0 (0%)  0 (0%)      0
total       2    1 (50%)  1 (100%)   0 (0%)   0 (0%)  0 (0%)   0 (0%)  0 (0%)      0

sequence outreach
step                    sent  delivered   opened  clicked  replied    booked   bounced   unsub.  tasks
call-intro (call)          0          0        0        0        1         0         0        0     10
email-1                    9    8 (89%)  4 (50%)  2 (25%)  1 (11%)   1 (11%)   1 (11%)  1 (11%)      0
  variant A                5    4 (80%)  2 (50%)   0 (0%)  1 (20%)    0 (0%)   1 (20%)  1 (20%)      0
  variant B                4   4 (100%)  2 (50%)  2 (50%)   0 (0%)   1 (25%)    0 (0%)   0 (0%)      0
email-2                    4    2 (50%)   0 (0%)   0 (0%)  2 (50%)    0 (0%)    0 (0%)  1 (25%)      0
before the first touch     0          0        0        0        1         0         0        0      0
total                     13   10 (77%)  4 (40%)  2 (20%)  5 (38%)  1 (7.7%)  1 (7.7%)  2 (15%)     10

"""
        + FUNNEL
    )


def test_the_report_of_one_sequence(reporting: Reporting) -> None:
    output = reporting.ok("nurture", "--now", NOW)
    assert output.startswith(
        """\
Relance report · sequence nurture · Sun 2026-03-08 08:00 UTC

sequence nurture
step     sent  delivered    opened  clicked  replied  booked  bounced  unsub.  tasks
welcome     2    1 (50%)  1 (100%)   0 (0%)   0 (0%)  0 (0%)   0 (0%)  0 (0%)      0
total       2    1 (50%)  1 (100%)   0 (0%)   0 (0%)  0 (0%)   0 (0%)  0 (0%)      0

"""
    )
    assert "outreach" not in output
    assert output.endswith(  # n0000 stays a suspect, n0001 went on to mql
        """\
stage     prospects                                  to next
Suspect           2  ██████████████████████████████    → 50%
Lead              1  ███████████████                  → 100%
Prospect          1  ███████████████                  → 100%
MQL               1  ███████████████                    → 0%
SQL               0
Meeting           0
Client            0
"""
    )


def test_json_for_scripts(reporting: Reporting) -> None:
    data = json.loads(reporting.ok("outreach", "--json", "--now", NOW))
    assert data["sequence_id"] == "outreach"
    assert data["total"]["sent"] == 13
    assert data["total"]["rates"]["replied"] == 5 / 13
    assert [step["step_id"] for step in data["sequences"][0]["steps"]] == [
        "call-intro", "email-1", "email-2",
    ]  # fmt: skip
    assert [stage["prospects"] for stage in data["funnel"]] == [11, 11, 4, 4, 3, 2, 1]


def test_html_page_written_and_said(reporting: Reporting, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    output = reporting.ok("--html", str(page), "--now", NOW)
    assert output.endswith(f"Client            1  ██\nHTML report written to {page}\n")
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert '<svg id="funnel-chart"' in html
    assert "Generated Sun 08 Mar 2026, 08:00 UTC" in html
    # --json keeps standard output for the JSON only
    again = tmp_path / "again.html"
    assert json.loads(reporting.ok("--json", "--html", str(again), "--now", NOW))["total"]
    assert again.read_text(encoding="utf-8") == html


def test_bad_input_is_a_message_and_exit_1(reporting: Reporting, tmp_path: Path) -> None:
    assert reporting.fails("outbound", "--now", NOW) == (
        "error: no sequence 'outbound' in the store (known: nurture, outreach)\n"
    )
    missing = tmp_path / "no-such-dir" / "report.html"
    assert reporting.fails("--html", str(missing), "--now", NOW) == (
        f"error: cannot write the HTML report to {missing}: No such file or directory\n"
    )
    assert reporting.fails("--now", "yesterday") == (
        "error: --now: expected a time such as 2026-03-02T09:00+01:00, got 'yesterday'\n"
    )


def test_help_shows_an_example(reporting: Reporting) -> None:
    result = reporting.run("--help")
    assert result.exit_code == 0
    assert "relance report outreach-2w --html report.html" in result.stdout


def test_show_report_prints_what_the_command_prints(reporting: Reporting, tmp_path: Path) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, highlight=False)  # markup on
    store = Store(f"sqlite:///{(reporting.data_dir / 'relance.db').as_posix()}")
    page = tmp_path / "demo.html"
    try:
        report = show_report(
            console, store, now=datetime(2026, 3, 8, 8, tzinfo=UTC), sequence_id="outreach",
            html=page,
        )  # fmt: skip
    finally:
        store.dispose()
    printed = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
    assert printed == reporting.ok("outreach", "--now", NOW) + f"HTML report written to {page}\n"
    assert report.total.sent == 13
    assert '<svg id="funnel-chart"' in page.read_text(encoding="utf-8")


def test_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "empty"))
    assert Reporting(tmp_path / "empty").ok("--now", NOW) == (
        """\
Relance report · all sequences · Sun 2026-03-08 08:00 UTC
nothing enrolled yet: no sequence to report on

funnel: prospects that reached each stage or went beyond it
stage     prospects    to next
Suspect           0
Lead              0
Prospect          0
MQL               0
SQL               0
Meeting           0
Client            0
"""
    )
