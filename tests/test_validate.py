"""``relance validate``: golden files of what an author sees, and the command's contract.

Each ``tests/fixtures/bad/<name>.yaml`` has ``<name>.expected``, the exact output of
``relance validate tests/fixtures/bad/<name>.yaml`` run from the repository root with
``RELANCE_TEMPLATES_DIR=tests/fixtures/templates``. The tests compare and never write,
unless asked to: after a deliberate change of wording, regenerate the golden files with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_validate.py

and review the diff before committing it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app
from relance.settings import Settings
from relance.validation import find_sequence_files, validate_paths

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "fixtures" / "bad"
OK = ROOT / "tests" / "fixtures" / "ok"
TEMPLATES = "tests/fixtures/templates"
BAD_FILES = sorted(BAD.glob("*.yaml"))

runner = CliRunner()


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root, with the test templates, as the golden files were made."""
    monkeypatch.chdir(ROOT)
    for name in list(os.environ):
        if name.startswith("RELANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RELANCE_TEMPLATES_DIR", TEMPLATES)


def test_there_are_enough_golden_files() -> None:
    assert len(BAD_FILES) >= 12
    assert {p.stem for p in BAD_FILES} == {p.stem for p in BAD.glob("*.expected")}


@pytest.mark.parametrize("bad", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_validate_prints_the_golden_text(bad: Path, at_root: None) -> None:
    result = runner.invoke(app, ["validate", f"tests/fixtures/bad/{bad.name}"])
    golden = bad.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == golden.read_text(encoding="utf-8")
    assert result.exit_code == 1


def test_golden_text_of_a_syntax_error_shows_the_line(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "tests/fixtures/bad/syntax-error.yaml"])
    assert result.stdout == (
        "tests/fixtures/bad/syntax-error.yaml:6:20 (syntax): invalid YAML: unexpected ':'\n"
        '  hint: quote a text that contains ": " (objective: "Call: now"), '
        "or check the indentation\n"
        "    6 |     objective: Call: ask for the decision maker\n"
        "      |                    ^\n"
        "1 problem found\n"
    )


def test_several_problems_come_in_line_order(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "tests/fixtures/bad/several-problems.yaml"])
    lines = [int(line.split(":")[1]) for line in result.stdout.splitlines() if line[0] == "t"]
    assert lines == sorted(lines)
    assert len(lines) >= 5
    assert result.stdout.endswith(f"{len(lines)} problems found\n")


def test_valid_files_print_a_count(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "tests/fixtures/ok/complete.yaml"])
    assert (result.exit_code, result.stdout) == (0, "1 sequence ok\n")


def test_a_directory_means_its_yaml_files(at_root: None, tmp_path: Path) -> None:
    for name in ("complete.yaml", "complete.yml"):
        text = (OK / "complete.yaml").read_text(encoding="utf-8")
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a sequence", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert (result.exit_code, result.stdout) == (0, "2 sequences ok\n")


def test_default_path_is_the_sequences_directory(
    at_root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sequences").mkdir()
    shutil.copy(BAD / "unknown-key.yaml", tmp_path / "sequences")
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path))
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{tmp_path / 'sequences' / 'unknown-key.yaml'}:5:5 ")


def test_json_lists_problem_objects(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "--json", "tests/fixtures/bad/unknown-key.yaml"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "file": "tests/fixtures/bad/unknown-key.yaml",
            "line": 5,
            "column": 5,
            "path": "steps[0].chanel",
            "message": "unknown key",
            "hint": "did you mean 'channel'?",
        }
    ]


def test_json_of_valid_files_is_an_empty_list(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "--json", "tests/fixtures/ok"])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_problems_of_several_files_are_reported_together(at_root: None) -> None:
    result = runner.invoke(
        app,
        ["validate", "tests/fixtures/bad/wrong-enum.yaml", "tests/fixtures/bad/bad-wait.yaml"],
    )
    files = [line.split(":")[0] for line in result.stdout.splitlines()[:-1]]
    assert files == ["tests/fixtures/bad/bad-wait.yaml", "tests/fixtures/bad/wrong-enum.yaml"]
    assert result.stdout.endswith("2 problems found\n")


def test_a_missing_path_is_an_error_not_a_traceback(at_root: None) -> None:
    result = runner.invoke(app, ["validate", "nowhere/outbound.yaml"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "no such file or directory: nowhere/outbound.yaml" in result.output


@pytest.mark.parametrize("name", ["validate", "schema"])
def test_help_shows_an_example(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert f"Example: relance {name}" in result.stdout


def test_validate_paths_checks_templates(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "demo").mkdir(parents=True)
    (templates / "demo" / "first-call.script.j2").write_text(
        "Hello {{ prospect.first_name }}", encoding="utf-8"
    )
    sequence = tmp_path / "demo.yaml"
    sequence.write_text(
        "id: demo\n"
        "name: Demo\n"
        "steps:\n"
        "  - id: first-call\n"
        "    channel: call\n"
        "    objective: Catch attention\n"
        "    templates: {script: demo/first-call.script.j2}\n"
        "  - id: second-call\n"
        "    channel: call\n"
        "    wait: 2d\n"
        "    objective: Follow up\n"
        "    templates: {script: demo/second-call.script.j2}\n",
        encoding="utf-8",
    )
    problems = validate_paths([sequence], Settings(templates_dir=templates))
    assert [(p.line, p.column, p.path) for p in problems] == [(12, 25, "steps[1].templates.script")]
    assert "demo/second-call.script.j2" in problems[0].message


def test_find_sequence_files_sorts_directory_entries(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "c.txt"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert find_sequence_files([tmp_path]) == [tmp_path / "a.yml", tmp_path / "b.yaml"]


def test_every_real_sequence_validates(root: Path) -> None:
    files = sorted((root / "sequences").glob("*.yaml"))
    assert len(files) >= 3, "sequences/ should hold the example sequences"
    settings = Settings(home=root)
    assert validate_paths(files, settings) == []
