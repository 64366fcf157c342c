"""Problems found in what a user wrote, located and worded so the author can act on them.

Every problem prints as ``file:line:col path: expected ..., got ...`` with an optional
hint on the next line, for instance::

    sequences/outbound.yaml:12:5 steps[1].chanel: unknown key
      hint: did you mean 'channel'?
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Loc = tuple[str | int, ...]
"""A path into a YAML document: ("steps", 1, "templates", "subject")."""


def format_loc(loc: Loc) -> str:
    """("steps", 1, "wait") -> "steps[1].wait"; () -> "(top)"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top)"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in one file, at one place."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = None

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.column} {self.path}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def format_problems(problems: Iterable[Problem]) -> str:
    """All problems sorted by file and line, then a count."""
    ordered = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.path, p.message))
    lines = [problem.format() for problem in ordered]
    count = len(ordered)
    lines.append(
        f"{count} problem{'s' if count != 1 else ''} found" if count else "no problems found"
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class Finding:
    """A problem found in a loaded sequence, located by its path in the YAML document.

    The validator turns it into a ``Problem`` with the line and column of that path.
    """

    loc: Loc
    message: str
    hint: str | None = None
