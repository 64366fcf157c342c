"""``relance plan``: exact JSON, the table's key lines, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app

SEQUENCE = """\
id: demo
name: Demo
timezone: Europe/Paris
country: FR
steps:
  - id: intro
    channel: email
    wait: 0d
    objective: Introduce the guide
    templates: {subject: s.j2, html: h.j2, text: t.j2}
  - id: call
    channel: call
    wait: 2 business days
    objective: Call about the guide
    templates: {script: c.j2}
  - id: confirm
    channel: meeting_confirmation
    objective: Confirm the meeting
    templates: {subject: s.j2, html: h.j2, text: t.j2}
  - id: follow-up
    channel: email
    wait: 3d
    objective: Share a case study
    templates: {subject: s.j2, html: h.j2, text: t.j2}
"""


@pytest.fixture
def sequence_file(tmp_path: Path) -> Path:
    path = tmp_path / "sequences" / "demo.yaml"
    path.parent.mkdir()
    path.write_text(SEQUENCE, encoding="utf-8")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    runner = CliRunner()
    return runner.invoke(app, ["plan", *args], env={"COLUMNS": "250", **(env or {})})


def test_the_json_plan_is_exact(sequence_file: Path) -> None:
    result = run(
        str(sequence_file),
        "--deal-value=20000",
        "--cycle-days=120",
        "--start=2026-06-01T09:00",
        "--timezone=Europe/Paris",
        "--country=FR",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {
            "step_id": "intro",
            "channel": "email",
            "position": 0,
            "wait": "0d",
            "stretched_wait": "0d",
            "stretch": 1.4375,
            "nominal_at": "2026-06-01T07:00:00+00:00",
            "due_at": "2026-06-01T07:00:00+00:00",
            "local_due_at": "2026-06-01T09:00:00+02:00",
            "moved": [],
        },
        {
            "step_id": "call",
            "channel": "call",
            "position": 1,
            "wait": "2 business days",
            "stretched_wait": "3 business days",
            "stretch": 1.4375,
            "nominal_at": "2026-06-04T07:00:00+00:00",
            "due_at": "2026-06-04T07:00:00+00:00",
            "local_due_at": "2026-06-04T09:00:00+02:00",
            "moved": [],
        },
        {
            "step_id": "follow-up",
            "channel": "email",
            "position": 3,
            "wait": "3d",
            "stretched_wait": "4.31d",
            "stretch": 1.4375,
            "nominal_at": "2026-06-08T14:30:00+00:00",
            "due_at": "2026-06-08T14:30:00+00:00",
            "local_due_at": "2026-06-08T16:30:00+02:00",
            "moved": [],
        },
    ]


def test_the_table_says_when_and_why(sequence_file: Path) -> None:
    result = run(str(sequence_file), "--start=2026-12-24T18:00")
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert lines[0] == (
        "demo: 3 touches for a prospect in Europe/Paris (FR, zone of the sequence), "
        "enrolled Thu 2026-12-24 18:00 CET"
    )
    assert lines[1] == "stretch x1.00: deal value unknown, cycle unknown"
    assert lines[2].split() == ["step", "channel", "wait", "due", "(Europe/Paris)", "UTC", "why"]
    assert lines[3].split("  ")[0] == "intro"
    assert "Mon 2026-12-28 09:00 CET  2026-12-28 08:00  after 17:30 send window end; " in lines[3]
    assert lines[3].endswith(
        "Fri 2026-12-25: public holiday (Christmas Day); Sat 2026-12-26: weekend in FR; "
        "Sun 2026-12-27: weekend in FR"
    )
    assert "Wed 2026-12-30 09:00 CET  2026-12-30 08:00" in lines[4]
    assert (
        "3d               Mon 2027-01-04 09:00 CET  2027-01-04 08:00  Sat 2027-01-02: weekend in FR"
        in lines[5]
    )
    assert lines[6] == "On booking, not on the clock: confirm (meeting_confirmation)"
    assert len(lines) == 7


def test_the_stretch_line_names_both_terms(sequence_file: Path) -> None:
    result = run(str(sequence_file), "--deal-value=25000", "--cycle-days=90", "--start=2026-06-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        "stretch x1.37: deal 25,000 vs reference 10,000 (+15%/doubling), "
        "cycle 90 d vs 60 d (+25%/doubling)"
    )
    assert "2 business days → 3 business days" in result.stdout
    assert "3d → 4.11d" in result.stdout


def test_a_clamped_stretch_says_so(sequence_file: Path) -> None:
    result = run(str(sequence_file), "--deal-value=1e9", "--cycle-days=3000", "--start=2026-06-01")
    assert result.stdout.splitlines()[1].endswith("(x35.90, clamped to [0.5, 2.5])")
    assert result.stdout.splitlines()[1].startswith("stretch x2.50: deal 1,000,000,000 vs")


def test_a_naive_start_is_read_in_the_prospect_zone(sequence_file: Path) -> None:
    def due_times(*args: str) -> list[str]:
        result = run(str(sequence_file), "--json", *args)
        assert result.exit_code == 0, result.output
        return [touch["due_at"] for touch in json.loads(result.stdout)]

    in_new_york = due_times("--start=2026-06-01T09:00", "--timezone=America/New_York")
    assert in_new_york[0] == "2026-06-01T13:00:00+00:00"
    assert in_new_york == due_times("--start=2026-06-01T13:00Z", "--timezone=America/New_York")
    assert due_times("--start=2026-06-01T09:00") == due_times("--start=2026-06-01T09:00+02:00")


def test_the_start_defaults_to_now(sequence_file: Path) -> None:
    with freeze_time("2026-06-01T07:00:00Z"):
        result = run(str(sequence_file), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["due_at"] == "2026-06-01T07:00:00+00:00"


def test_a_sequence_is_found_by_id(sequence_file: Path) -> None:
    env = {"RELANCE_SEQUENCES_DIR": str(sequence_file.parent)}
    result = run("demo", "--start=2026-06-01T09:00", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert [touch["step_id"] for touch in json.loads(result.stdout)] == [
        "intro",
        "call",
        "follow-up",
    ]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--start=next monday",
            "error: --start: expected an ISO 8601 time such as 2026-03-02T09:00 or "
            "2026-03-02T09:00+01:00, got 'next monday'",
        ),
        (
            "--timezone=Mars/Olympus",
            'error: --timezone: expected an IANA time zone such as "Europe/Paris", '
            "got 'Mars/Olympus'",
        ),
        (
            "--country=Atlantis",
            'error: --country: expected a country such as "FR", "France" or "Frankreich", '
            "got 'Atlantis' (did you mean 'AL'?)",
        ),
        (
            "--country=zz",
            'error: --country: expected a country such as "FR", "France" or "Frankreich", '
            "got 'zz'",
        ),
        (
            "--region=DE-BZ",
            "error: --region: expected a region of DE such as DE-BB, DE-BE, DE-BW, DE-BY, "
            "DE-HB, DE-HE, DE-HH, DE-MV, ..., got 'DE-BZ' (did you mean 'DE-HB' or 'DE-BY'?)",
        ),
        (
            "--country=US-Califrnia",
            "error: --region: expected a region of US such as US-AK, US-AL, US-AR, US-AS, "
            "US-AZ, US-CA, US-CO, US-CT, ..., got 'US-Califrnia' "
            "(did you mean 'US-CA' or 'US-VA'?)",
        ),
        (
            "--start=9999-12-31T23:00",
            "error: --start: expected a time between 1900-01-01 and 2199-12-31, "
            "got 9999-12-31T23:00:00",
        ),
        (
            "--start=0001-01-01T00:00+01:00",
            "error: --start: expected a time between 1900-01-01 and 2199-12-31, "
            "got 0001-01-01T00:00:00+01:00",
        ),
        (
            "--deal-value=1e-320",
            "error: --deal-value: expected 0 (unknown) or a positive number of usual size, "
            "got 1e-320 (too small to compute with)",
        ),
    ],
)
def test_bad_options_are_clear_errors(sequence_file: Path, option: str, message: str) -> None:
    result = run(str(sequence_file), option)
    assert result.exit_code == 2
    assert result.stderr == message + "\n"
    assert result.stdout == ""


def test_an_unknown_sequence_is_a_clear_error(tmp_path: Path) -> None:
    result = run("nope", env={"RELANCE_SEQUENCES_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no sequence 'nope' in ")
    assert "Traceback" not in result.output


def test_a_negative_deal_value_is_refused(sequence_file: Path) -> None:
    result = run(str(sequence_file), "--deal-value=-5")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_help_shows_an_example() -> None:
    result = run("--help")
    assert result.exit_code == 0
    assert "relance plan outbound-2w --deal-value 25000" in result.stdout
