"""Reading the JSON of a provider's webhook: typed values, or an InputError naming the path.

Shared by the booking integrations (Calendly, Cal.com): every reader takes the object,
the key and the path to print, caps text at ``MAX_TEXT`` characters and refuses NULs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from relance.errors import InputError

MAX_TEXT = 2000


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise InputError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object, got {type(data).__name__}")
    return data


def optional_object(data: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def required_object(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = optional_object(data, key, path)
    if value is None:
        raise InputError(f"{path}: missing")
    return value


def optional_text(data: dict[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{path}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InputError(f"{path}: expected text, got a NUL character")
    return value[:MAX_TEXT]


def required_text(data: dict[str, Any], key: str, path: str) -> str:
    value = optional_text(data, key, path)
    if value is None:
        raise InputError(f"{path}: missing")
    return value


def optional_time(data: dict[str, Any], key: str, path: str) -> datetime | None:
    text = optional_text(data, key, path)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None:
        raise InputError(f"{path}: expected an ISO 8601 time with a UTC offset, got {text[:60]!r}")
    return moment


def required_time(data: dict[str, Any], key: str, path: str) -> datetime:
    moment = optional_time(data, key, path)
    if moment is None:
        raise InputError(f"{path}: missing")
    return moment
