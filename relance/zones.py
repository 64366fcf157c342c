"""A prospect's time zone when none is given: inferred, deterministically, and explained.

In this order, the first that gives one zone wins:

1. ``region``: the region's zone from ``REGION_ZONES`` (``US-CA`` -> America/Los_Angeles),
   else the main zone of a country whose regions mostly share it (``MAIN_ZONES``);
2. ``country``: the country's zone when it has one, i.e. when every zone the tz database
   lists for it (``zone.tab`` of the ``tzdata`` package) keeps the same clock all year
   (DE: Berlin and Büsingen; AR: twelve zones at UTC-3): the first one listed;
3. ``phone``: the one zone ``phonenumbers`` gives for the number's country and area code
   (+1 415 ... -> America/Los_Angeles), the number read in the prospect's country when it
   has no ``+``;
4. otherwise nothing: the sequence's zone applies (source ``sequence``).

No maintained package maps ISO 3166-2 subdivisions to zones, so ``REGION_ZONES`` is a
small table, kept to the subdivisions the ``holidays`` library knows in countries with
more than one clock. A region split between zones takes the zone where most of its people
live (Florida: New_York, Tennessee: Chicago); a region left out (US-UM) falls through to
the next source. tests/test_zones.py checks every entry against both libraries.
"""

from __future__ import annotations

import functools
import importlib.resources
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_zones


class ZoneSource(StrEnum):
    """Where a prospect's zone came from."""

    GIVEN = "given"
    REGION = "region"
    COUNTRY = "country"
    PHONE = "phone"
    SEQUENCE = "sequence"


ZONE_SOURCE_TEXT = {
    ZoneSource.GIVEN: "given",
    ZoneSource.REGION: "from the region",
    ZoneSource.COUNTRY: "from the country",
    ZoneSource.PHONE: "from the phone number",
    ZoneSource.SEQUENCE: "of the sequence",
}
"""How ``plan`` and ``status`` say where a prospect's zone came from."""


_US = {
    "AK": "America/Anchorage", "AL": "America/Chicago", "AR": "America/Chicago",
    "AS": "Pacific/Pago_Pago", "AZ": "America/Phoenix", "CA": "America/Los_Angeles",
    "CO": "America/Denver", "CT": "America/New_York", "DC": "America/New_York",
    "DE": "America/New_York", "FL": "America/New_York", "GA": "America/New_York",
    "GU": "Pacific/Guam", "HI": "Pacific/Honolulu", "IA": "America/Chicago",
    "ID": "America/Boise", "IL": "America/Chicago", "IN": "America/Indiana/Indianapolis",
    "KS": "America/Chicago", "KY": "America/New_York", "LA": "America/Chicago",
    "MA": "America/New_York", "MD": "America/New_York", "ME": "America/New_York",
    "MI": "America/Detroit", "MN": "America/Chicago", "MO": "America/Chicago",
    "MP": "Pacific/Saipan", "MS": "America/Chicago", "MT": "America/Denver",
    "NC": "America/New_York", "ND": "America/Chicago", "NE": "America/Chicago",
    "NH": "America/New_York", "NJ": "America/New_York", "NM": "America/Denver",
    "NV": "America/Los_Angeles", "NY": "America/New_York", "OH": "America/New_York",
    "OK": "America/Chicago", "OR": "America/Los_Angeles", "PA": "America/New_York",
    "PR": "America/Puerto_Rico", "RI": "America/New_York", "SC": "America/New_York",
    "SD": "America/Chicago", "TN": "America/Chicago", "TX": "America/Chicago",
    "UT": "America/Denver", "VA": "America/New_York", "VI": "America/St_Thomas",
    "VT": "America/New_York", "WA": "America/Los_Angeles", "WI": "America/Chicago",
    "WV": "America/New_York", "WY": "America/Denver",
}  # fmt: skip
_CA = {
    "AB": "America/Edmonton", "BC": "America/Vancouver", "MB": "America/Winnipeg",
    "NB": "America/Moncton", "NL": "America/St_Johns", "NS": "America/Halifax",
    "NT": "America/Edmonton", "NU": "America/Iqaluit", "ON": "America/Toronto",
    "PE": "America/Halifax", "QC": "America/Toronto", "SK": "America/Regina",
    "YT": "America/Whitehorse",
}  # fmt: skip
_AU = {
    "ACT": "Australia/Sydney", "NSW": "Australia/Sydney", "NT": "Australia/Darwin",
    "QLD": "Australia/Brisbane", "SA": "Australia/Adelaide", "TAS": "Australia/Hobart",
    "VIC": "Australia/Melbourne", "WA": "Australia/Perth",
    "NSW Western": "Australia/Broken_Hill",
}  # fmt: skip
_BR = {
    "AC": "America/Rio_Branco", "AL": "America/Maceio", "AM": "America/Manaus",
    "AP": "America/Belem", "BA": "America/Bahia", "CE": "America/Fortaleza",
    "DF": "America/Sao_Paulo", "ES": "America/Sao_Paulo", "GO": "America/Sao_Paulo",
    "MA": "America/Fortaleza", "MG": "America/Sao_Paulo", "MS": "America/Campo_Grande",
    "MT": "America/Cuiaba", "PA": "America/Belem", "PB": "America/Fortaleza",
    "PE": "America/Recife", "PI": "America/Fortaleza", "PR": "America/Sao_Paulo",
    "RJ": "America/Sao_Paulo", "RN": "America/Fortaleza", "RO": "America/Porto_Velho",
    "RR": "America/Boa_Vista", "RS": "America/Sao_Paulo", "SC": "America/Sao_Paulo",
    "SE": "America/Maceio", "SP": "America/Sao_Paulo", "TO": "America/Araguaina",
    "São Paulo Capital": "America/Sao_Paulo",
}  # fmt: skip
_OTHERS = {
    "CL-MA": "America/Punta_Arenas",
    "ES-CN": "Atlantic/Canary",
    "FM-KSA": "Pacific/Kosrae",
    "FM-PNI": "Pacific/Pohnpei",
    "FM-TRK": "Pacific/Chuuk",
    "FM-YAP": "Pacific/Chuuk",
    "FR-971": "America/Guadeloupe",
    "FR-972": "America/Martinique",
    "FR-973": "America/Cayenne",
    "FR-974": "Indian/Reunion",
    "FR-976": "Indian/Mayotte",
    "FR-BL": "America/St_Barthelemy",
    "FR-MF": "America/Marigot",
    "FR-NC": "Pacific/Noumea",
    "FR-PF": "Pacific/Tahiti",
    "FR-PM": "America/Miquelon",
    "FR-TF": "Indian/Kerguelen",
    "FR-WF": "Pacific/Wallis",
    "PT-20": "Atlantic/Azores",
    "PT-30": "Atlantic/Madeira",
}

REGION_ZONES: dict[str, str] = {
    **{f"US-{code}": zone for code, zone in _US.items()},
    **{f"CA-{code}": zone for code, zone in _CA.items()},
    **{f"AU-{code}": zone for code, zone in _AU.items()},
    **{f"BR-{code}": zone for code, zone in _BR.items()},
    **_OTHERS,
}
"""Region -> zone, for the regions of countries with more than one clock."""

MAIN_ZONES: dict[str, str] = {
    "CL": "America/Santiago",
    "ES": "Europe/Madrid",
    "FR": "Europe/Paris",
    "NZ": "Pacific/Auckland",
    "PT": "Europe/Lisbon",
}
"""The zone of every region of these countries that ``REGION_ZONES`` does not name."""

_SAMPLES = tuple(
    datetime(year, month, day, hour, tzinfo=UTC)
    for year in (2025, 2026, 2027)
    for month in range(1, 13)
    for day in (1, 15)
    for hour in (0, 12)
)
"""Instants at which two zones must agree to count as one clock."""


@functools.cache
def zone_table() -> dict[str, tuple[str, ...]]:
    """Country -> its zones, in the order of the tz database's ``zone.tab``."""
    text = importlib.resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _where, zone, *_comment = line.split("\t")
            table.setdefault(code, []).append(zone)
    table.setdefault("UK", table.get("GB", []))
    return {code: tuple(zones) for code, zones in table.items()}


@functools.cache
def country_zone(country: str) -> str | None:
    """The one clock of ``country``, None when it has several (or none is known)."""
    zones = zone_table().get(country, ())
    if not zones:
        return None
    first = ZoneInfo(zones[0])
    for other in map(ZoneInfo, zones[1:]):
        if any(moment.astimezone(first).utcoffset() != moment.astimezone(other).utcoffset()
               for moment in _SAMPLES):  # fmt: skip
            return None
    return zones[0]


def region_zone(region: str) -> str | None:
    """The zone of a checked region ("US-CA"), None when the table leaves it to the country."""
    return REGION_ZONES.get(region) or MAIN_ZONES.get(region.partition("-")[0])


@functools.lru_cache(maxsize=4096)
def phone_zone(phone: str, country: str | None) -> str | None:
    """The one zone of ``phone``'s country and area code, None if unknown or several."""
    try:
        number = phonenumbers.parse(phone, None if phone.lstrip().startswith("+") else country)
    except phonenumbers.NumberParseException:
        return None
    found = phone_zones.time_zones_for_number(number)
    if len(found) != 1 or found[0] == phone_zones.UNKNOWN_TIMEZONE:
        return None
    return str(found[0])


def infer_zone(
    country: str | None, region: str | None, phone: str
) -> tuple[str | None, ZoneSource]:
    """(zone, where it came from) for a prospect without a zone; (None, SEQUENCE) if none."""
    if region is not None:
        zone = region_zone(region)
        if zone is not None:
            return zone, ZoneSource.REGION
    if country is not None:
        zone = country_zone(country)
        if zone is not None:
            return zone, ZoneSource.COUNTRY
    if phone.strip():
        zone = phone_zone(phone, country)
        if zone is not None:
            return zone, ZoneSource.PHONE
    return None, ZoneSource.SEQUENCE
