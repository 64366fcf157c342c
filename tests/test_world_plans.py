"""Golden ``relance plan`` outputs around the world: each country's own weekend, regional
holidays, the days every region observes, and a zone inferred from the region.

Each case prints the plan of tests/fixtures/world/world.yaml for one place and compares
it with tests/fixtures/world/<case>.txt (``UPDATE_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app

WORLD = Path(__file__).parent / "fixtures" / "world"

CASES = {
    # Sunday is a working day, Friday and Saturday are the weekend.
    "il": ["--country=IL", "--start=2027-04-15T10:00"],
    "sa": ["--country=SA", "--start=2027-04-15T10:00"],
    # Iran rests on Friday only: Saturday is a working day.
    "ir": ["--country=IR", "--start=2027-04-15T10:00"],
    # Epiphany is a public holiday in Bavaria, not in the rest of Germany.
    "de-by": ["--country=DE-BY", "--start=2027-01-05T10:00"],
    "de": ["--country=DE", "--start=2027-01-05T10:00"],
    # Good Friday and 26 December in Alsace-Moselle.
    "fr-57": ["--country=FR", "--region=FR-57", "--start=2027-03-25T10:00"],
    # Christmas Day (observed) on Monday 27 December 2027: every state's, not national.
    "au-nsw": ["--country=AU", "--region=AU-NSW", "--start=2027-12-23T10:00"],
    "au": ["--country=AU", "--timezone=Australia/Sydney", "--start=2027-12-23T10:00"],
    # Cesar Chavez Day, and the zone inferred from the region.
    "us-ca": ["--region=US-CA", "--deal-value=50000", "--start=2027-03-30T10:00"],
    # No region: the zone comes from the phone number's area code.
    "us-phone": ["--country=US", "--phone=+1 415 555 0100", "--start=2027-03-30T10:00"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_plan_is_the_golden_text(case: str) -> None:
    result = CliRunner().invoke(
        app, ["plan", str(WORLD / "world.yaml"), *CASES[case]], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    text = "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"
    golden = WORLD / f"{case}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_every_golden_file_has_its_case() -> None:
    assert {path.stem for path in WORLD.glob("*.txt")} == set(CASES)
