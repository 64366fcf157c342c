"""Countries and languages as CRM exports write them: codes, or names in many languages.

``country_code("Deutschland")`` is ``"DE"``; ``language_code("allemand")`` is ``"de"``. The
names come from the Unicode CLDR through Babel (``Locale(x).territories`` and
``.languages``), in the languages of ``NAME_LANGUAGES``; matching ignores case, accents
and punctuation. Codes are accepted as ISO 3166-1 alpha-2 ("DE", "de") for countries and
ISO 639-1 ("de"), or a locale tag ("de-DE", "de_AT", "pt-BR"), for languages. Anything
else is None: the caller says what was expected, quoting the value as written.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

from babel import Locale

NAME_LANGUAGES: tuple[str, ...] = ("en", "fr", "de", "es", "it", "nl", "pt", "pl", "sv")
"""Languages whose names for countries and languages are understood (the first wins when
two languages give one name to different places)."""

COUNTRY_ALIASES: dict[str, str] = {
    "uk": "GB",
    "england": "GB",
    "great britain": "GB",
    "usa": "US",
    "u s a": "US",
    "u s": "US",
    "united states of america": "US",
    "holland": "NL",
}
"""Everyday names CLDR does not list."""


def fold(text: str) -> str:
    """ "Côte d’Ivoire" -> "cote d ivoire": lower case, no accents, words only."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain.lower()).split())


@cache
def _countries() -> dict[str, str]:
    names: dict[str, str] = dict(COUNTRY_ALIASES)
    for language in NAME_LANGUAGES:
        for code, name in Locale(language).territories.items():
            if re.fullmatch(r"[A-Z]{2}", code) and code not in ("ZZ", "EU", "EZ", "UN", "QO"):
                names.setdefault(fold(name), code)
    codes = {code for code in names.values()}
    names.update({code.lower(): code for code in codes})
    return names


@cache
def _languages() -> dict[str, str]:
    names: dict[str, str] = {}
    for language in NAME_LANGUAGES:
        for code, name in Locale(language).languages.items():
            if re.fullmatch(r"[a-z]{2}", code):
                names.setdefault(fold(name), code)
    codes = {code for code in names.values()}
    names.update({code: code for code in codes})
    return names


@lru_cache(maxsize=4096)
def country_code(text: str) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country named or coded in ``text``, else None.

    Any two letters are taken as a code (CLDR lacks user-assigned ones such as "XK")."""
    key = fold(text)
    found = _countries().get(key)
    if found is None and re.fullmatch(r"[a-z]{2}", key):
        return key.upper()
    return found


@lru_cache(maxsize=4096)
def language_code(text: str) -> str | None:
    """The ISO 639-1 code of a language named or coded in ``text`` ("de-AT" too), else None."""
    key = fold(text)
    found = _languages().get(key)
    if found is None:
        tag = re.fullmatch(r"([a-z]{2}) [a-z]{2,4}", key)  # de-AT, pt_BR, zh-Hant
        if tag is not None:
            found = _languages().get(tag[1]) if len(tag[1]) == 2 else None
    return found
