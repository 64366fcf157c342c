"""Finding sequences: by id in the sequences directory, or by path to a YAML file."""

from __future__ import annotations

from pathlib import Path

from relance.errors import NotFoundError, SequenceError
from relance.loader import load_sequence_file
from relance.settings import Settings
from relance.spec import Sequence


def sequence_path(ref: str, settings: Settings) -> Path:
    """The YAML file a sequence reference names (an id or a path)."""
    candidate = Path(ref)
    if candidate.is_file():
        return candidate
    if candidate.suffix in (".yaml", ".yml") or "/" in ref:
        raise NotFoundError(f"no sequence file at {ref}")
    for suffix in (".yaml", ".yml"):
        path = settings.sequences_path / f"{ref}{suffix}"
        if path.is_file():
            return path
    known = ", ".join(sorted(p.stem for p in settings.sequences_path.glob("*.y*ml"))) or "none"
    raise NotFoundError(f"no sequence {ref!r} in {settings.sequences_path}/ (known: {known})")


def resolve_sequence(ref: str, settings: Settings) -> Sequence:
    """Load and validate the sequence ``ref`` names; SequenceError lists every problem."""
    result = load_sequence_file(sequence_path(ref, settings))
    if result.sequence is None or result.problems:
        raise SequenceError(result.problems)
    return result.sequence


def list_sequence_files(settings: Settings) -> list[Path]:
    return sorted([*settings.sequences_path.glob("*.yaml"), *settings.sequences_path.glob("*.yml")])
