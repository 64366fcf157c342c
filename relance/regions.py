"""Countries and regions as the ``holidays`` library names them: checked and normalized.

A country is a two-letter code the library knows ("FR", "IL"). A region is an ISO 3166-2
subdivision written ``<country>-<code>`` with the library's code for it: ``DE-BY``,
``FR-57``, ``FR-6AE``, ``ES-CT``, ``CH-ZH``, ``US-CA``, ``CA-QC``, ``AU-NSW``. The
library's aliases are understood too ("Bayern" or "New South Wales" with their country),
and so is a country written with its region (``DE-BY``). Anything else is a ValueError
that says what was expected and, when something is close, "did you mean".
"""

from __future__ import annotations

import difflib
import functools
import re

import holidays as holiday_data
from holidays.registry import COUNTRIES


@functools.cache
def countries() -> dict[str, tuple[str, ...]]:
    """Two-letter country code -> the subdivisions the library knows for it."""
    return {
        code: tuple(subdivisions)
        for code, subdivisions in holiday_data.list_supported_countries().items()
        if len(code) == 2
    }


@functools.cache
def _country_names() -> dict[str, str]:
    """Lower-case English name ("germany") -> code, for the "did you mean" hint."""
    names: dict[str, str] = {}
    for key, (class_name, code, *_rest) in COUNTRIES.items():
        names[key.replace("_", " ")] = code
        names[re.sub(r"(?<!^)(?=[A-Z])", " ", class_name).lower()] = code
    return names


def _hint(close: list[str]) -> str:
    return f" (did you mean {' or '.join(repr(name) for name in close)}?)" if close else ""


def check_country(value: str) -> str:
    """The upper-case code of a country the holidays library knows, else ValueError."""
    code = value.strip().upper()
    if code in countries():
        return code
    named = _country_names().get(value.strip().lower())
    close = (
        [named]
        if named
        else [
            _country_names()[name]
            for name in difflib.get_close_matches(value.strip().lower(), _country_names(), n=2)
        ]
    )
    raise ValueError(
        f'expected a country such as "FR", "France" or "Frankreich", got {value!r}{_hint(close)}'
    )


@functools.cache
def _aliases(country: str) -> dict[str, str]:
    """Case-folded code or alias -> the library's subdivision code, for one country."""
    calendar = holiday_data.country_holidays(country)
    found = {alias.casefold(): code for alias, code in calendar.subdivisions_aliases.items()}
    found.update({code.casefold(): code for code in countries()[country]})
    return found


def check_region(value: str, country: str | None) -> tuple[str, str]:
    """(country, region) for a region written "DE-BY", or "BY" / "Bayern" with ``country``.

    Raises ValueError naming what was expected, with the nearest known regions.
    """
    text = value.strip()
    prefix, _, rest = text.partition("-")
    if rest and len(prefix) == 2 and prefix.upper() in countries():
        code, name = prefix.upper(), rest
        if country is not None and country != code:
            raise ValueError(f"expected a region of {country}, got {value!r} (a region of {code})")
    elif country is not None:
        code, name = country, text
    else:
        raise ValueError(
            f'expected a region with its country such as "US-CA" or "DE-BY", got {value!r}'
        )
    known = _aliases(code)
    found = known.get(name.casefold())
    if found is not None:
        return code, f"{code}-{found}"
    subdivisions = countries()[code]
    if not subdivisions:
        raise ValueError(f"expected no region for {code}: the holidays library knows none")
    close = difflib.get_close_matches(name.casefold(), list(known), n=2, cutoff=0.5)
    suggestions = list(dict.fromkeys(f"{code}-{known[match]}" for match in close))
    shown = ", ".join(f"{code}-{sub}" for sub in subdivisions[:8])
    more = ", ..." if len(subdivisions) > 8 else ""
    raise ValueError(
        f"expected a region of {code} such as {shown}{more}, got {value!r}{_hint(suggestions)}"
    )


def subdivision(region: str) -> str:
    """The library's subdivision code of a checked region: "DE-BY" -> "BY"."""
    return region.partition("-")[2]
