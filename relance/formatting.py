"""Money and dates written the way a reader of a given language expects them.

Pure functions behind the template filters ``money`` and ``date_local``. French and
English are spelled out; other languages fall back to English words (numbers follow the
language's separators where known).
"""

from __future__ import annotations

from datetime import date, datetime

_NUMBER_STYLES: dict[str, tuple[str, str, bool]] = {
    # locale: (group separator, decimal mark, currency symbol first)
    "fr": ("\u00a0", ",", False),
    "de": (".", ",", False),
    "es": (".", ",", False),
    "it": (".", ",", False),
    "nl": (".", ",", True),
    "en": (",", ".", True),
}
_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}

_MONTHS = {
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "en": "January February March April May June July August September October November December",
}
_WEEKDAYS = {
    "fr": "lundi mardi mercredi jeudi vendredi samedi dimanche",
    "en": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
}
DATE_STYLES = ("long", "date", "day", "time")


def format_money(amount: float, locale: str, currency: str = "EUR") -> str:
    """25000 -> "25 000 €" (fr, no-break spaces) or "€25,000" (en); cents only if any."""
    group, decimal, symbol_first = _NUMBER_STYLES.get(locale, _NUMBER_STYLES["en"])
    cents = round(amount * 100)
    whole, fraction = divmod(abs(cents), 100)
    digits = f"{whole:,}".replace(",", group)
    if fraction:
        digits += f"{decimal}{fraction:02d}"
    sign = "-" if cents < 0 else ""
    symbol = _CURRENCY_SYMBOLS.get(currency.upper(), currency.upper())
    if symbol_first:
        return f"{sign}{symbol}{' ' if symbol.isalpha() else ''}{digits}"
    return f"{sign}{digits}\u00a0{symbol}"


def format_date(value: date, locale: str, style: str = "long") -> str:
    """A date or datetime in words, in its own zone: "jeudi 14 mars 2030 à 10h00"."""
    if style not in DATE_STYLES:
        raise ValueError(f"expected a date style among {', '.join(DATE_STYLES)}, got {style!r}")
    lang = "fr" if locale == "fr" else "en"
    weekday = _WEEKDAYS[lang].split()[value.weekday()]
    month = _MONTHS[lang].split()[value.month - 1]
    if lang == "fr":
        day = f"{weekday} {'1er' if value.day == 1 else value.day} {month}"
        clock = f"{value:%H}h{value:%M}" if isinstance(value, datetime) else ""
        joiner = " à "
    else:
        day = f"{weekday}, {value.day} {month}"
        clock = f"{value:%H:%M}" if isinstance(value, datetime) else ""
        joiner = " at "
    if style in ("long", "time") and not isinstance(value, datetime):
        raise ValueError(f"expected a date and time for style {style!r}, got a date")
    if style == "day":
        return day
    if style == "time":
        return clock
    full_date = f"{day} {value.year}"
    return full_date if style == "date" else f"{full_date}{joiner}{clock}"
