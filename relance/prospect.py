"""Who is being followed up: the prospect as the core sees it.

Standard fields are typed; anything else a CRM export carries lives in ``fields`` and is
available to templates as ``prospect.<column>`` like the standard ones.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relance.addresses import canonical_address
from relance.errors import ProspectError
from relance.localenames import country_code, language_code
from relance.qualification import Stage, Warmth, parse_score, parse_stage, parse_warmth
from relance.regions import check_country, check_region
from relance.zones import ZoneSource, infer_zone

QUALIFICATION_FIELDS: tuple[str, ...] = (
    "need",
    "budget",
    "authority",
    "timing",
    "fit",
    "stage",
    "warmth",
)
"""Typed columns for qualification and routing: the grid (0-3 each), the lifecycle stage
and the warmth (see relance.qualification). Templates do not see them: they decide whom
to write to, not what to write."""

STANDARD_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "deal_value",
    "cycle_days",
    "timezone",
    "country",
    "region",
    "locale",
    "owner",
)
"""Typed columns that templates see as ``prospect.<name>``."""


CONTROL_CHARACTERS = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", "\x00": "a NUL"}


def control_character(text: str) -> str | None:
    """What ``text`` holds that may not reach a mail header: CR, LF or NUL; None if none."""
    for char, name in CONTROL_CHARACTERS.items():
        if char in text:
            return name
    return None


def one_line(text: str) -> str:
    """Stored text made safe to show: NUL removed, CR and LF made spaces."""
    return text.replace("\x00", "").replace("\r", " ").replace("\n", " ")


class Prospect(BaseModel):
    """A contact enrolled (or about to be) in a sequence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    title: str = ""
    phone: str = ""
    deal_value: float = Field(default=0, ge=0, description="Expected deal value; 0 if unknown.")
    cycle_days: float = Field(
        default=0, ge=0, description="Expected sales cycle in days; 0 if unknown."
    )
    timezone: str | None = None
    timezone_source: ZoneSource | None = Field(
        default=None,
        description="Where the zone came from: given, or inferred from the region, the "
        "country or the phone number; sequence: none, the sequence's applies.",
    )
    country: str | None = None
    region: str | None = Field(
        default=None,
        description='ISO 3166-2 subdivision as the holidays library names it, "DE-BY".',
    )
    locale: str | None = None
    owner: str = ""
    need: int | None = Field(default=None, description="Need, 0-3; None: not assessed.")
    budget: int | None = Field(default=None, description="Budget, 0-3; None: not assessed.")
    authority: int | None = Field(
        default=None, description="Authority (decision maker), 0-3; None: not assessed."
    )
    timing: int | None = Field(default=None, description="Timing, 0-3; None: not assessed.")
    fit: int | None = Field(default=None, description="Fit, 0-3; None: not assessed.")
    stage: Stage | None = Field(default=None, description="Lifecycle stage; None: as stored.")
    warmth: Warmth | None = Field(default=None, description="Given warmth; None: derived.")
    fields: dict[str, str] = Field(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        """CR, LF and NUL are refused in the standard fields (names reach mail headers);
        custom fields may span lines (a CRM's notes) but never hold a NUL."""
        if isinstance(value, Mapping):
            for name, text in value.items():
                if isinstance(text, str) and "\x00" in text:
                    raise ValueError(f"field {name}: expected text, got a NUL")
            return value
        problem = control_character(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(f"expected one line of text, got {problem}")
        return value

    @field_validator("email")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        return canonical_address(value)

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f'expected an IANA time zone such as "Europe/Paris", got {value!r}'
            ) from None
        return value

    @field_validator("deal_value", "cycle_days")
    @classmethod
    def _not_underflowing(cls, value: float) -> float:
        if 0 < value < sys.float_info.min:
            raise ValueError(
                f"expected 0 (unknown) or a positive number of usual size, got {value!r} "
                "(too small to compute with)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _country_with_region(cls, data: Any) -> Any:
        """ "DE-BY" as the country is country DE in region DE-BY; region "US-CA" alone is in US."""
        if isinstance(data, dict):
            country, region = data.get("country"), data.get("region")
            if isinstance(country, str) and country.strip()[2:3] == "-" and not region:
                data = {**data, "country": country.strip()[:2], "region": country.strip()}
            elif isinstance(region, str) and region.strip()[2:3] == "-" and not country:
                data = {**data, "country": region.strip()[:2]}
        return data

    @field_validator("country")
    @classmethod
    def _valid_country(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        # A name in any of several languages ("Deutschland"), then the holidays library's check.
        try:
            return check_country(value)  # a code the holidays library knows ("UK" too)
        except ValueError:
            named = country_code(value)  # else a name in one of several languages
            if named is None or named == value.strip().upper():
                raise
            return check_country(named)

    @field_validator("region")
    @classmethod
    def _valid_region(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if "country" not in info.data:
            return None  # the country is wrong: its own error says so
        return check_region(value, info.data["country"])[1]

    @model_validator(mode="after")
    def _zone_or_its_source(self) -> Prospect:
        """A missing zone is inferred (region, country, phone); the source is kept."""
        zone: str | None = self.timezone
        if zone is not None:
            source = self.timezone_source or ZoneSource.GIVEN
        elif self.timezone_source is ZoneSource.SEQUENCE:
            return self
        else:
            zone, source = infer_zone(self.country, self.region, self.phone)
        # The model is frozen once built: this completes it while it is being built.
        object.__setattr__(self, "timezone", zone)
        object.__setattr__(self, "timezone_source", source)
        return self

    @field_validator("locale")
    @classmethod
    def _valid_locale(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        code = language_code(value)
        if code is None:
            raise ValueError(
                f'expected a language such as "fr", "French" or "français", got {value!r}'
            )
        return code

    @field_validator("need", "budget", "authority", "timing", "fit", mode="before")
    @classmethod
    def _valid_score(cls, value: Any) -> int | None:
        return parse_score(value)

    @field_validator("stage", mode="before")
    @classmethod
    def _valid_stage(cls, value: Any) -> Stage | None:
        return parse_stage(value)

    @field_validator("warmth", mode="before")
    @classmethod
    def _valid_warmth(cls, value: Any) -> Warmth | None:
        return parse_warmth(value)

    def context(self) -> dict[str, Any]:
        """What templates see as ``prospect``: standard fields and custom fields together."""
        data: dict[str, Any] = self.model_dump(
            exclude={"fields", "timezone_source", *QUALIFICATION_FIELDS}
        )
        data["full_name"] = " ".join(part for part in (self.first_name, self.last_name) if part)
        data.update(self.fields)
        return data


SAMPLE_PROSPECT = Prospect(
    email="claire.martin@example.com",
    first_name="Claire",
    last_name="Martin",
    company="Acme Industrie",
    title="Directrice des opérations",
    phone="+33 1 23 45 67 89",
    deal_value=25_000,
    cycle_days=90,
    timezone="Europe/Paris",
    country="FR",
    locale="fr",
    owner="sdr@example.com",
)
"""The prospect ``validate`` and ``preview`` render templates against."""


def prospect_from_row(row: Mapping[str, str]) -> Prospect:
    """A prospect from one CSV row (column -> text), as a CRM export gives it.

    Column names are matched loosely ("First Name" is ``first_name``); standard columns
    are typed (``deal_value`` accepts "25000", "25 000 €", "25,000", "25.000,50" or
    "25000,5": a comma or dot followed by exactly three digits groups thousands), and so
    are the qualification columns (need, budget, authority, timing, fit: 0-3; stage;
    warmth); every other column goes to ``fields``. A bad value raises ProspectError
    naming its column.
    """
    standard: dict[str, Any] = {}
    custom: dict[str, str] = {}
    errors: list[str] = []
    for column, raw in row.items():
        if column is None:  # csv.DictReader puts extra cells under None
            continue
        key = _column_key(str(column))
        value = (raw or "").strip()
        typed = key in STANDARD_FIELDS or key in QUALIFICATION_FIELDS
        problem = control_character(value) if typed else None
        if problem or "\x00" in value:
            what = f"one line of text, got {problem}" if problem else "text, got a NUL"
            errors.append(f"column {key}: expected {what}")
            value = one_line(value)
        if not typed:
            custom[key] = value
        elif key in ("deal_value", "cycle_days") and value:
            try:
                standard[key] = _parse_number(value)
            except ValueError:
                errors.append(f"column {key}: expected a number such as 25000, got {value!r}")
        elif value:
            standard[key] = value
    try:
        prospect = Prospect(**standard, fields=custom)
    except ValidationError as error:
        errors.extend(_column_error(item) for item in error.errors())
    if errors:
        raise ProspectError("; ".join(sorted(errors)))
    return prospect


@lru_cache(maxsize=1024)
def _column_key(column: str) -> str:
    """ "Deal value", "deal-value" -> "deal_value"."""
    return re.sub(r"[\s-]+", "_", column.strip().lower())


def _parse_number(text: str) -> float:
    """ "25 000", "25,000", "25.000,50", "25000,5" -> a float; ValueError otherwise."""
    compact = re.sub(r"[\s\u00a0\u202f€$£_]", "", text)
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", compact):
        compact = compact.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", compact):
        compact = compact.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d+,\d+", compact):
        compact = compact.replace(",", ".")
    number = float(compact)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {text!r}")
    return number


def _column_error(item: Any) -> str:
    column = ".".join(str(part) for part in item["loc"]) or "row"
    if item["type"] == "missing":
        return f"column {column}: expected a value, got none"
    message = str(item["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if ", got " not in message:
        message += f", got {item['input']!r}"
    return f"column {column}: {message}"
