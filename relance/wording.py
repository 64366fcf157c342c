"""Pydantic's validation errors, reworded for the person who wrote the YAML.

Each error becomes ``path: expected <plain words>, got <what was written>``, located by the
source map: an unknown key at the key, with a "did you mean"; a missing key at the mapping
that lacks it; a wrong value at the value. The wording depends on the error type and, for
text patterns, on which pattern of ``relance.spec`` it is.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from relance.diagnostics import Loc, Problem, format_loc
from relance.spec import SEQUENCE_ID_PATTERN, Sequence

if TYPE_CHECKING:
    from relance.loader import SourceMap

_PATTERNS = {
    SEQUENCE_ID_PATTERN: "lowercase letters, digits, '-' or '_', starting with a letter or digit",
    r"^[a-z]{2}$": "a two-letter language code in lowercase such as 'fr'",
    r"^[A-Z]{2}$": "a two-letter country code in capitals such as 'FR'",
    r"^[a-z][a-z0-9_]*$": "lowercase letters, digits or '_', starting with a letter",
    r"^https?://\S+$": "a link starting with http:// or https://",
}

_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}

_EXPECTED = {
    "string_type": "text",
    "string_too_short": "text that is not empty",
    "list_type": "a list",
    "model_type": "a mapping of keys and values",
    "model_attributes_type": "a mapping of keys and values",
    "dict_type": "a mapping of keys and values",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "date_type": "a date such as 2025-12-24",
    "date_parsing": "a date such as 2025-12-24",
    "date_from_datetime_parsing": "a date such as 2025-12-24",
    "date_from_datetime_inexact": "a date without a time, such as 2025-12-24",
}


def explain_validation_error(
    error: ValidationError,
    file: str,
    source_map: SourceMap,
    explained: set[Loc],
    model: type[BaseModel] = Sequence,
) -> list[Problem]:
    """One problem per pydantic error, except those under a path in ``explained``.

    ``model`` is the model of the whole document, whose keys the hints suggest.
    """
    details = [
        detail
        for detail in error.errors()
        if not any(detail["loc"][: len(loc)] == loc for loc in explained)
    ]
    suggested = {
        (*detail["loc"][:-1], suggestion)
        for detail in details
        if detail["type"] == "extra_forbidden"
        for suggestion in [_suggestion(detail["loc"], model)]
        if suggestion
    }
    return [
        explain_error(detail, file, source_map, model)
        for detail in details
        # "missing 'channel'" says nothing more than "unknown key 'chanel', did you mean...".
        if not (detail["type"] == "missing" and detail["loc"] in suggested)
    ]


def explain_error(
    detail: ErrorDetails, file: str, source_map: SourceMap, model: type[BaseModel] = Sequence
) -> Problem:
    kind, loc, value = detail["type"], detail["loc"], detail["input"]
    context = detail.get("ctx") or {}
    got = describe(value, source_map.plain.get(loc))
    hint: str | None = None
    if kind == "missing":
        parent, key = loc[:-1], loc[-1]
        at = source_map.locate(parent)
        field = _fields(parent, model).get(str(key))
        hint = f"{key}: {field.description}" if field and field.description else None
        return Problem(
            file, at.line, at.column, format_loc(parent), f"missing required key {key!r}", hint
        )
    if kind == "extra_forbidden":
        at = source_map.locate_key(loc)
        hint = _key_hint(loc, model)
        return Problem(file, at.line, at.column, format_loc(loc), "unknown key", hint)
    if kind in ("value_error", "assertion_error"):
        message = re.sub(r"^(Value error|Assertion failed), ", "", detail["msg"])
    elif kind in ("enum", "literal_error"):
        choices = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        message = f"expected one of {', '.join(choices)}, got {got}"
    elif kind == "string_pattern_mismatch":
        pattern = str(context.get("pattern", ""))
        wanted = _PATTERNS.get(pattern, f"text matching {pattern}")
        message = f"expected {wanted}, got {got}"
    elif kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        message = f"expected a number {words} {_number(context.get(name))}, got {got}"
    elif kind == "too_short":
        least = int(context.get("min_length", 1))
        message = f"expected at least {least} item{'s' if least != 1 else ''}, got {got}"
    elif kind == "string_too_long":
        most = int(context.get("max_length", 0))
        message = f"expected at most {most} characters, got {len(str(value))}"
    elif kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        message = f"expected a smaller number, got {got}"  # beyond what a float holds
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {got}"
    else:
        text = re.sub(r"^Input should (be )?", "", detail["msg"])
        message = f"expected {text[:1].lower()}{text[1:]}, got {got}"
    raw = source_map.plain.get(loc)
    if kind == "string_type" and raw is not None and not isinstance(value, str):
        hint = f'quote it: "{raw}"' if len(raw) <= 40 else "put the text in quotes"
    elif kind == "list_type" and not isinstance(value, dict):
        hint = "write a list: one '- item' line per item, or [item, item]"
    at = source_map.locate(loc)
    return Problem(file, at.line, at.column, format_loc(loc), message, hint)


def describe(value: Any, raw: str | None = None) -> str:
    """What was written, as the author would recognise it: 'sms', NO (read as false).

    ``raw`` is the text of an unquoted scalar, from the source map.
    """
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return repr(_shorten(value))
    if value is None and not raw:
        return "an empty value"
    if isinstance(value, int) and value.bit_length() > 128 and raw is None:
        return "a very large number"  # str() refuses ints of more than 4300 digits
    if raw is None:
        return _shorten(repr(value))
    note = _note(value, raw)
    return f"{_shorten(raw)} (read as {note})" if note else _shorten(raw)


def _note(value: Any, raw: str) -> str | None:
    """What YAML made of ``raw``, when the text does not say it: NO -> false."""
    if value is None:
        return None if raw.lower() == "null" else "an empty value"
    if isinstance(value, bool):
        return None if raw.lower() == str(value).lower() else str(value).lower()
    if isinstance(value, int) and value.bit_length() > 128:
        return "a very large number"
    if isinstance(value, int | float):
        return f"the number {value}" if ":" in raw else None  # 09:00 -> 540
    if isinstance(value, date):
        return "a date"
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _key_hint(loc: Loc, model: type[BaseModel]) -> str | None:
    suggestion = _suggestion(loc, model)
    if suggestion:
        return f"did you mean {suggestion!r}?"
    allowed = list(_fields(loc[:-1], model))
    return f"allowed keys here: {', '.join(allowed)}" if allowed else None


def _suggestion(loc: Loc, model: type[BaseModel]) -> str | None:
    key = str(loc[-1])
    allowed = list(_fields(loc[:-1], model))
    by_lower = {name.lower(): name for name in allowed}
    matches = difflib.get_close_matches(key.lower().replace("-", "_"), by_lower, n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def _fields(loc: Loc, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of the model found at ``loc`` in a document of ``model``, or none."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            if get_origin(annotation) is not list:
                return {}
            annotation = get_args(annotation)[0]
        elif _is_model(annotation) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return {}
    annotation = _unwrap(annotation)
    return dict(annotation.model_fields) if _is_model(annotation) else {}


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
