"""Checking sequence files the way ``relance validate`` does: load, validate, check templates.

Loading finds what is wrong in the YAML itself; the template check finds templates that do
not exist and variables that a template uses but no prospect provides. Both come back as
located problems, so an author sees everything in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relance.diagnostics import Finding, Problem, format_loc
from relance.errors import NotFoundError
from relance.loader import SourceMap, load_sequence_file
from relance.rendering import check_templates
from relance.routing import Routing, known_sequence_ids, load_routing_file
from relance.settings import Settings
from relance.spec import Sequence

SEQUENCE_SUFFIXES = (".yaml", ".yml")
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"


def find_sequence_files(paths: list[Path]) -> list[Path]:
    """Files as given, and the ``*.yaml``/``*.yml`` files of directories, sorted by name."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SEQUENCE_SUFFIXES)
            if not found:
                raise NotFoundError(f"no sequence files (*.yaml) in {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise NotFoundError(f"no such file or directory: {path}")
    return files


def validate_paths(paths: list[Path], settings: Settings) -> list[Problem]:
    """Every problem in the sequence files under ``paths``, sorted by file and line."""
    problems: list[Problem] = []
    for file in find_sequence_files(paths):
        result = load_sequence_file(file)
        problems += result.problems
        if result.sequence is not None:
            problems += check_sequence_templates(
                result.sequence, result.source_map, str(file), settings
            )
    return sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path, p.message))


def check_sequence_templates(
    sequence: Sequence, source_map: SourceMap, file: str, settings: Settings
) -> list[Problem]:
    """The template findings for a loaded sequence, located in its file."""
    findings = check_templates(sequence, settings.templates_path)
    return [locate_finding(finding, source_map, file) for finding in findings]


def locate_finding(finding: Finding, source_map: SourceMap, file: str) -> Problem:
    at = source_map.locate(finding.loc)
    return Problem(file, at.line, at.column, format_loc(finding.loc), finding.message, finding.hint)


def sequence_schema() -> dict[str, Any]:
    """The JSON Schema of a sequence file, for editors (yaml-language-server) and tools."""
    schema = Sequence.model_json_schema()
    schema.pop("title", None)
    return {
        "$schema": SCHEMA_URL,
        "title": "Relance sequence",
        **schema,
    }


def validate_routing(path: Path, settings: Settings) -> list[Problem]:
    """Every problem of a routing file, the sequences it names checked against the
    sequences directory of ``settings``."""
    return load_routing_file(path, known_sequence_ids(settings)).problems


def routing_schema() -> dict[str, Any]:
    """The JSON Schema of routing.yaml, for editors (yaml-language-server) and tools."""
    schema = Routing.model_json_schema()
    schema.pop("title", None)
    return {"$schema": SCHEMA_URL, "title": "Relance routing", **schema}
