"""``relance schema`` and the committed schema/sequence.schema.json that editors use.

After a change to relance/spec.py, regenerate the committed copy from the repository root:

    .venv/bin/relance schema > schema/sequence.schema.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app

SCHEMA_LINE = "# yaml-language-server: $schema=../schema/sequence.schema.json"

runner = CliRunner()


@pytest.fixture
def schema(root: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (root / "schema" / "sequence.schema.json").read_text(encoding="utf-8")
    )
    return document


def test_the_committed_schema_is_what_the_command_prints(root: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    committed = (root / "schema" / "sequence.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, (
        "schema/sequence.schema.json is stale: run "
        "`.venv/bin/relance schema > schema/sequence.schema.json`"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Relance sequence"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_accepts_a_sequence_and_rejects_a_typo(schema: dict[str, Any]) -> None:
    sequence = {
        "id": "demo",
        "name": "Demo",
        "send_window": {"start": "09:00", "end": "17:30"},
        "steps": [
            {
                "id": "first-call",
                "channel": "call",
                "wait": "2 business days",
                "objective": "Catch attention",
                "templates": {"script": "demo/first-call.script.j2"},
            }
        ],
    }
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(sequence)) == []
    sequence["steps"][0]["chanel"] = sequence["steps"][0].pop("channel")  # type: ignore[index]
    assert {error.validator for error in validator.iter_errors(sequence)} >= {
        "additionalProperties",
        "required",
    }


def test_every_sequence_file_names_the_schema(root: Path) -> None:
    files = sorted((root / "sequences").glob("*.y*ml"))
    assert files, "sequences/ should hold the example sequences"
    for path in files:
        first_line = path.read_text(encoding="utf-8").splitlines()[0]
        assert first_line == SCHEMA_LINE, f"{path.name} should begin with: {SCHEMA_LINE}"
