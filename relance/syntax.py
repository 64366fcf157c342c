"""YAML that cannot be read at all, explained: where, what, and what to do about it.

PyYAML's scanner and parser speak of tokens ("expected <block end>, but found
'<block mapping start>'"); an author needs to hear about indentation, quotes and tabs,
and to see the line with a caret under the place::

    sequences/outbound.yaml:6:20 (syntax): invalid YAML: unexpected ':'
      hint: quote a text that contains ": " (objective: "Call: now"), or check the indentation
        6 |     objective: Call: ask for the decision maker
          |                    ^
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from relance.diagnostics import Problem

LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
"""What YAML counts as the end of a line."""


@dataclass(frozen=True)
class _SyntaxCase:
    problem: str
    context: str
    message: str
    hint: str
    at_context: bool = False


_SYNTAX_CASES = (
    _SyntaxCase("found character '\\t'", "", "a tab", "indent with spaces: YAML forbids tabs"),
    _SyntaxCase(
        "mapping values are not allowed",
        "",
        "unexpected ':'",
        'quote a text that contains ": " (objective: "Call: now"), or check the indentation',
    ),
    _SyntaxCase(
        "could not find expected ':'",
        "",
        "a line without ':' inside a mapping",
        "write key: value, or indent a long text further than its key",
        at_context=True,
    ),
    _SyntaxCase(
        "end of stream",
        "quoted",
        "this quote is never closed",
        "close the quote",
        at_context=True,
    ),
    _SyntaxCase(
        "expected <block end>",
        "",
        "this line is not indented like the lines around it",
        "the keys of one mapping, and the '-' of one list, start in the same column",
    ),
    _SyntaxCase(
        "expected ',' or '}'", "", "a '{' that is not closed", "close it with '}'", at_context=True
    ),
    _SyntaxCase(
        "expected ',' or ']'", "", "a '[' that is not closed", "close it with ']'", at_context=True
    ),
    _SyntaxCase(
        "undefined alias",
        "",
        "an alias (*name) without its anchor (&name)",
        "write the anchor &name on a value above the alias",
    ),
    _SyntaxCase(
        "duplicate anchor",
        "",
        "",
        "give each anchor (&name) its own name",
    ),
    _SyntaxCase(
        "another document",
        "",
        "a second document ('---')",
        "write one sequence per file",
    ),
)


def syntax_problem(file: str, text: str, error: yaml.MarkedYAMLError) -> Problem:
    problem = error.problem or error.context or "unreadable"
    context = error.context or ""
    if context.startswith("found duplicate anchor") and error.context_mark is not None:
        first = error.context_mark.line + 1
        problem = f"{context.split(';')[0].removeprefix('found ')} (first at line {first})"
    for case in _SYNTAX_CASES:
        if case.problem in problem and case.context in context:
            message, hint, at_context = case.message or problem, case.hint, case.at_context
            break
    else:
        message, hint, at_context = problem, "check the indentation and the quotes here", False
    mark = (error.context_mark if at_context else None) or error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return Problem(
        file,
        line,
        column,
        "(syntax)",
        f"invalid YAML: {message}",
        hint=hint + _snippet(text, line, column),
    )


def character_problem(file: str, text: str, error: yaml.reader.ReaderError) -> Problem:
    line = len(LINE_BREAK.findall(text, 0, error.position)) + 1
    line_start = max((m.end() for m in LINE_BREAK.finditer(text, 0, error.position)), default=0)
    column = error.position - line_start + 1
    character = error.character if isinstance(error.character, int) else ord(error.character)
    return Problem(
        file,
        line,
        column,
        "(syntax)",
        f"invalid YAML: the character U+{character:04X} is not allowed",
        hint="delete it (it is invisible, often pasted from another program)"
        + _snippet(text, line, column),
    )


def encoding_problem(file: str, raw: bytes, error: UnicodeDecodeError) -> Problem:
    line_start = raw.rfind(b"\n", 0, error.start) + 1
    line = raw.count(b"\n", 0, error.start) + 1
    column = len(raw[line_start : error.start].decode("utf-8", errors="replace")) + 1
    byte = raw[error.start]
    return Problem(
        file,
        line,
        column,
        "(file)",
        f"expected UTF-8 text, got the byte 0x{byte:02x}",
        hint="save the file as UTF-8 in your editor",
    )


def _snippet(text: str, line: int, column: int) -> str:
    """The source line and a caret under ``column``, indented to follow a hint."""
    lines = LINE_BREAK.split(text)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    source = source.replace("\t", " ")
    if len(source) > 100:
        start = max(0, min(column - 50, len(source) - 100))
        source, column = source[start : start + 100], column - start
    number = str(line)
    gutter = " " * len(number)
    return f"\n    {number} | {source}\n    {gutter} | {' ' * (column - 1)}^"
