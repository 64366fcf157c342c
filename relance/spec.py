"""The sequence language: what a marketer writes in ``sequences/<id>.yaml``.

These pydantic models are the single source of truth for the YAML format: the loader
validates against them, ``relance schema`` prints their JSON Schema, and the planner
reads them. Unknown keys are forbidden everywhere so that a typo is an error, not a
silently ignored line.

A ``Wait`` is written as a short string: ``"0d"``, ``"2d"``, ``"4h"``, ``"30m"``,
``"3 business days"``, ``"1 business day"``, ``"1w"``.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from relance.regions import check_country

SEQUENCE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
STEP_ID_PATTERN = SEQUENCE_ID_PATTERN


class Strict(BaseModel):
    """Base of every YAML model: unknown keys are errors, values are immutable, and a
    number is finite (YAML reads .inf and 1e999 as infinity)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Channel(StrEnum):
    CALL = "call"
    EMAIL = "email"
    REMINDER = "reminder"
    MEETING_CONFIRMATION = "meeting_confirmation"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


COUNTRY_DAYS = "country"
"""``send_window.days: country``: every working day of the prospect's country (read as the
seven days of the week, which the country's weekend and holidays then close)."""


class HolidayCategory(StrEnum):
    """Holiday categories of the ``holidays`` library (a country has some of them)."""

    PUBLIC = "public"
    BANK = "bank"
    GOVERNMENT = "government"
    OPTIONAL = "optional"
    HALF_DAY = "half_day"
    DE_FACTO = "de_facto"
    UNOFFICIAL = "unofficial"
    SCHOOL = "school"
    ARMED_FORCES = "armed_forces"
    OPTIONAL_WOMEN = "optional_women"
    CATHOLIC = "catholic"
    CHRISTIAN = "christian"
    ORTHODOX = "orthodox"
    PROTESTANT = "protestant"
    ARMENIAN = "armenian"
    HEBREW = "hebrew"
    HINDU = "hindu"
    ISLAMIC = "islamic"
    ALBANIAN = "albanian"
    BOSNIAN = "bosnian"
    ROMA = "roma"
    SABIAN = "sabian"
    SERBIAN = "serbian"
    TURKISH = "turkish"
    VLACH = "vlach"
    YAZIDI = "yazidi"


class WaitUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    BUSINESS_DAYS = "business_days"


_WAIT_RE = re.compile(
    r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*"
    r"(?P<unit>m|min|mins|minutes?|h|hours?|d|days?|w|weeks?|"
    r"business\s+days?|bd|working\s+days?)\s*$",
    re.IGNORECASE,
)

WAIT_EXAMPLES = '"0d", "2d", "4h", "30m", "1w", "3 business days"'


class Wait(BaseModel):
    """How long after the previous touch (or the enrollment) a step becomes due."""

    model_config = ConfigDict(frozen=True)

    amount: float = Field(ge=0)
    unit: WaitUnit

    @classmethod
    def parse(cls, text: str) -> Wait:
        match = _WAIT_RE.match(text)
        if match is None:
            raise ValueError(f"expected a wait such as {WAIT_EXAMPLES}, got {text!r}")
        amount = float(match["amount"])
        unit = re.sub(r"\s+", " ", match["unit"].lower())
        if unit.startswith(("business", "working")) or unit == "bd":
            if amount != int(amount):
                raise ValueError(f"business days are whole days, got {text!r}")
            return cls(amount=amount, unit=WaitUnit.BUSINESS_DAYS)
        if unit.startswith("w"):
            return cls(amount=amount * 7, unit=WaitUnit.DAYS)
        if unit.startswith("d"):
            return cls(amount=amount, unit=WaitUnit.DAYS)
        if unit.startswith("h"):
            return cls(amount=amount, unit=WaitUnit.HOURS)
        return cls(amount=amount, unit=WaitUnit.MINUTES)

    def as_timedelta(self) -> timedelta:
        """The wait as an absolute duration (a business day counts as a calendar day)."""
        seconds = {
            WaitUnit.MINUTES: 60,
            WaitUnit.HOURS: 3600,
            WaitUnit.DAYS: 86400,
            WaitUnit.BUSINESS_DAYS: 86400,
        }[self.unit]
        return timedelta(seconds=self.amount * seconds)

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        return {
            WaitUnit.MINUTES: f"{amount}m",
            WaitUnit.HOURS: f"{amount}h",
            WaitUnit.DAYS: f"{amount}d",
            WaitUnit.BUSINESS_DAYS: f"{amount} business day{'s' if amount != 1 else ''}",
        }[self.unit]


def _parse_wait(value: Any) -> Any:
    if isinstance(value, Wait):
        return value
    if isinstance(value, str):
        return Wait.parse(value)
    raise ValueError(f"expected a wait such as {WAIT_EXAMPLES}, got {type(value).__name__}")


WaitText = Annotated[
    Wait,
    BeforeValidator(_parse_wait),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _WAIT_RE.pattern,
            "description": f"A wait such as {WAIT_EXAMPLES}.",
            "examples": ["0d", "2d", "3 business days", "4h"],
        }
    ),
]


def _parse_clock(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 09:00 as a sexagesimal integer (540).
        return time(value // 60, value % 60)
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(part) for part in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'expected a local time such as "09:00", got {value!r}')


ClockTime = Annotated[
    time,
    BeforeValidator(_parse_clock),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}$", "examples": ["09:00"]}),
]


def _country_days(value: Any) -> Any:
    """``days: country`` is every day of the week: the country's weekend closes the rest."""
    if isinstance(value, str):
        if value.strip().lower() != COUNTRY_DAYS:
            raise ValueError(
                f"expected a list of weekdays such as [mon, tue] or {COUNTRY_DAYS}, got {value!r}"
            )
        return list(Weekday)
    return value


WindowDays = Annotated[
    list[Weekday],
    BeforeValidator(_country_days),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "array",
                    "items": {"enum": [day.value for day in Weekday]},
                    "minItems": 1,
                },
                {"const": COUNTRY_DAYS, "type": "string"},
            ]
        }
    ),
]


class SendWindow(Strict):
    """When touches may fall, in the prospect's local time."""

    days: WindowDays = Field(
        min_length=1,
        default=[Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI],
        description="Weekdays on which touches may fall (mon ... sun), or 'country': every "
        "working day of the prospect's country (Sun-Thu in Israel). Listed days narrow the "
        "country's working week, never widen it: no touch falls on its weekend (unless "
        "holidays.country is false).",
    )
    start: ClockTime = Field(default=time(9, 0), description="Earliest local time, e.g. 09:00.")
    end: ClockTime = Field(default=time(17, 30), description="Latest local time, e.g. 17:30.")

    @model_validator(mode="after")
    def _start_before_end(self) -> SendWindow:
        if self.start >= self.end:
            raise ValueError(
                f"expected start before end, got start {self.start:%H:%M} and end {self.end:%H:%M}"
            )
        return self


class Holidays(Strict):
    """Days on which nothing is sent besides weekends outside the window."""

    country: bool = Field(
        default=True,
        description="Follow the calendar of the prospect's country (holidays library): "
        "no touch on its weekend, its holidays, its region's, or the days every region of "
        "the country observes. false: only the window days and the extra dates close a day.",
    )
    categories: list[HolidayCategory] = Field(
        default=[HolidayCategory.PUBLIC],
        min_length=1,
        # Left out when it is the default, so that adding the key changed no stored digest.
        exclude_if=lambda value: value == [HolidayCategory.PUBLIC],
        description="Holiday categories to skip besides public holidays, which always "
        "count, e.g. [public, bank, optional]; a category the prospect's country does not "
        "have is ignored.",
    )
    extra: list[date] = Field(
        default_factory=list,
        description="Extra closed days for every prospect, e.g. company closures (YYYY-MM-DD).",
    )


class Cadence(Strict):
    """How deal value and sales-cycle length stretch or compress the waits.

    stretch = (1 + deal_value_doubling) ** log2(deal_value / reference_deal_value)
            * (1 + cycle_doubling) ** log2(cycle_days / reference_cycle_days)
    clamped to [min_stretch, max_stretch]. Every wait is multiplied by the stretch
    (business days rounded up), then no gap between two touches is shorter than
    ``min_gap``. With non-negative ``*_doubling`` the gaps never shrink when deal value
    or cycle length grows.
    """

    reference_deal_value: float = Field(
        default=10_000, gt=0, description="Deal value for which the waits apply as written."
    )
    reference_cycle_days: float = Field(
        default=60,
        gt=0,
        description="Sales-cycle length (days) for which the waits apply as written.",
    )
    deal_value_doubling: float = Field(
        default=0.15,
        ge=0,
        le=2,
        description="Each doubling of the deal value stretches the waits by this fraction "
        "(0.15 = +15%).",
    )
    cycle_doubling: float = Field(
        default=0.25,
        ge=0,
        le=2,
        description="Each doubling of the sales cycle stretches the waits by this fraction; "
        "each halving compresses them likewise.",
    )
    min_stretch: float = Field(
        default=0.5, gt=0, description="Waits never shrink below this factor."
    )
    max_stretch: float = Field(
        default=2.5, gt=0, description="Waits never grow beyond this factor."
    )
    min_gap: WaitText = Field(
        default=Wait(amount=1, unit=WaitUnit.DAYS),
        description="Shortest gap between two touches of one prospect.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Cadence:
        if self.min_stretch > self.max_stretch:
            raise ValueError(
                f"expected min_stretch <= max_stretch, got {self.min_stretch} > {self.max_stretch}"
            )
        return self


class ExitAction(StrEnum):
    PAUSE = "pause"
    STOP = "stop"
    CONTINUE = "continue"


class ExitRules(Strict):
    """What a signal from the prospect does to the enrollment.

    booked always stops the chase and runs the meeting_confirmation step(s); bounce,
    unsubscribe and spam_report always stop and suppress the address. Only the reply
    action is a choice.
    """

    reply: Literal["pause", "stop"] = Field(default="pause", description="pause (default) or stop.")
    booked: Literal["stop"] = Field(
        default="stop", description="Stop chasing and send the meeting confirmation."
    )
    bounce: Literal["stop"] = Field(default="stop", description="Stop and suppress the address.")
    unsubscribe: Literal["stop"] = Field(
        default="stop", description="Stop and suppress the address."
    )
    spam_report: Literal["stop"] = Field(
        default="stop", description="Stop and suppress the address."
    )


class Throttle(Strict):
    """Caps on the sender for this sequence's emails (instead of the settings' caps)."""

    hourly_cap: int | None = Field(default=None, ge=1, description="Emails per rolling hour.")
    daily_cap: int | None = Field(default=None, ge=1, description="Emails per rolling day.")
    min_spacing: WaitText | None = Field(
        default=None, description='Shortest time between two emails, e.g. "2m".'
    )
    domain_daily_cap: int | None = Field(
        default=None, ge=1, description="Emails per recipient domain per rolling day."
    )


class Resource(Strict):
    """The useful thing an email carries (guide, case study, benchmark...)."""

    title: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://\S+$", description="http(s) link to the resource.")


class StepTemplates(Strict):
    """Template files, relative to ``templates/``. ``{locale}`` is replaced by the locale."""

    subject: str | None = Field(default=None, description="Email subject (one line).")
    html: str | None = Field(default=None, description="Email HTML body.")
    text: str | None = Field(default=None, description="Email plain-text body.")
    script: str | None = Field(default=None, description="Call script shown to the SDR.")
    reminder: str | None = Field(default=None, description="Reminder text shown to the SDR.")

    def parts(self) -> dict[str, str]:
        return {name: path for name, path in self.model_dump().items() if path is not None}


class VariantTemplates(Strict):
    """What a variant writes differently; the parts it leaves out are the step's own."""

    subject: str | None = Field(default=None, description="Email subject instead of the step's.")
    html: str | None = Field(default=None, description="Email HTML body instead of the step's.")
    text: str | None = Field(
        default=None, description="Email plain-text body instead of the step's."
    )

    @model_validator(mode="after")
    def _body_whole(self) -> VariantTemplates:
        if (self.html is None) != (self.text is None):
            raise ValueError(
                "expected html and text together: a variant that rewrites the body "
                "rewrites both versions of it"
            )
        return self

    def parts(self) -> dict[str, str]:
        return {name: path for name, path in self.model_dump().items() if path is not None}


class Variant(Strict):
    """One arm of an A/B test on an email step (see ``relance.variants``)."""

    id: str = Field(
        pattern=STEP_ID_PATTERN,
        max_length=40,
        description="Stable id, recorded on every touch sent with this variant.",
    )
    weight: float = Field(
        default=1,
        gt=0,
        description="Share of the prospects, relative to the other variants' weights "
        "(50 and 50: half each).",
    )
    templates: VariantTemplates = Field(
        default_factory=VariantTemplates,
        description="Templates used instead of the step's; none: the step as written "
        "(the control).",
    )


def _no_variants(variants: list[Variant]) -> bool:
    return not variants


REQUIRED_PARTS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("subject", "html", "text"),
    Channel.MEETING_CONFIRMATION: ("subject", "html", "text"),
    Channel.CALL: ("script",),
    Channel.REMINDER: ("reminder",),
}


class Step(Strict):
    """One touch of the sequence."""

    id: str = Field(pattern=STEP_ID_PATTERN, description="Stable id, used in the UI and reports.")
    channel: Channel
    wait: WaitText = Field(
        default=Wait(amount=0, unit=WaitUnit.DAYS),
        description="Wait after the previous touch (the first step: after enrollment). "
        "Ignored for meeting_confirmation, which runs on booking.",
    )
    objective: str = Field(min_length=1, description="The one purpose of this touch.")
    templates: StepTemplates
    resource: Resource | None = None
    new_thread: bool = Field(
        default=False,
        description="email only: start a new thread with this step's own subject, instead "
        "of answering the first email of the sequence (Re: ...).",
    )
    stretch: bool = Field(
        default=True,
        # Left out when true, so that adding the key changed no stored version's digest.
        exclude_if=lambda value: value is True,
        description="false: the wait is pinned, as written, whatever the deal value and "
        'cycle length ("the day after the trade show").',
    )
    remind_before: WaitText | None = Field(
        default=None,
        description="meeting_confirmation only: also send a reminder this long before the meeting.",
    )
    variants: list[Variant] = Field(
        default_factory=list,
        # Left out when empty, so that adding the key changed no stored version's digest.
        exclude_if=_no_variants,
        description="email only: an A/B test. Each prospect gets one variant, always the "
        "same, in proportion to the weights.",
    )

    @field_validator("variants")
    @classmethod
    def _distinct_variants(cls, variants: list[Variant], info: ValidationInfo) -> list[Variant]:
        channel = info.data.get("channel")
        if variants and channel is not None and channel is not Channel.EMAIL:
            raise ValueError(f"expected variants only on an email step, got a {channel} step")
        if len(variants) == 1:
            raise ValueError("expected at least two variants for an A/B test, got one")
        base = info.data.get("templates")
        seen: dict[str, Any] = {}
        for variant in variants:
            if variant.id in seen:
                raise ValueError(f"duplicate variant id {variant.id!r}: variant ids must be unique")
            parts = variant.templates.parts()
            used = base.model_copy(update=parts) if isinstance(base, StepTemplates) else parts
            twin = next((other for other, templates in seen.items() if templates == used), None)
            if twin is not None:
                raise ValueError(
                    f"variants {twin!r} and {variant.id!r} use the same templates: "
                    "they would test nothing"
                )
            seen[variant.id] = used
        return variants

    @model_validator(mode="after")
    def _templates_fit_channel(self) -> Step:
        parts = self.templates.parts()
        missing = [part for part in REQUIRED_PARTS[self.channel] if part not in parts]
        if missing:
            raise ValueError(
                f"expected templates {', '.join(missing)} for a {self.channel.value} step"
            )
        if self.remind_before is not None and self.channel is not Channel.MEETING_CONFIRMATION:
            raise ValueError("expected remind_before only on a meeting_confirmation step")
        if self.new_thread and self.channel is not Channel.EMAIL:
            raise ValueError("expected new_thread only on an email step")
        return self

    def variant(self, variant_id: str) -> Variant:
        for variant in self.variants:
            if variant.id == variant_id:
                return variant
        raise KeyError(variant_id)

    def templates_for(self, variant_id: str | None) -> StepTemplates:
        """The step's templates with those of ``variant_id`` instead (None: the step's own).

        Raises KeyError for a variant the step does not have.
        """
        if variant_id is None:
            return self.templates
        return self.templates.model_copy(update=self.variant(variant_id).templates.parts())

    @property
    def timed(self) -> bool:
        """True for steps planned on the clock, False for those run by a booking."""
        return self.channel is not Channel.MEETING_CONFIRMATION


def _empty(value: object) -> bool:
    return not value


class Reenroll(Strict):
    """When a prospect who completed this sequence may be enrolled in it again."""

    after: WaitText = Field(description='Cool-down after completion, e.g. "90d".')


REENROLL_NEVER = "never"


class ProspectField(Strict):
    """A custom prospect field the templates use, optional or with a default."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    optional: bool = Field(
        default=False,
        description="True: a row may leave it empty (templates guard it with {% if %}).",
    )
    default: str | None = Field(
        default=None, description="What templates see when the prospect has no value."
    )

    @property
    def required(self) -> bool:
        return not self.optional and self.default is None


FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Sequence(Strict):
    """A multichannel follow-up sequence."""

    id: str = Field(
        pattern=SEQUENCE_ID_PATTERN, description="Same as the file name, without .yaml."
    )
    name: str = Field(min_length=1)
    description: str = ""
    locale: str = Field(
        default="fr", pattern=r"^[a-z]{2}$", description="Default template language."
    )
    locales: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=list,
        description="Every language the templates exist in (the default locale is implied).",
    )
    fallback_locales: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=list,
        # Left out when empty (and so are the other keys below at their defaults), so that
        # adding them changed no stored version's digest.
        exclude_if=_empty,
        description="For a prospect whose language the templates lack: the first of these "
        "that they have (else the default locale), e.g. [en].",
    )
    timezone: str = Field(
        default="Europe/Paris", description="IANA zone when the prospect has none."
    )
    country: str = Field(
        default="FR", pattern=r"^[A-Z]{2}$", description="ISO country when the prospect has none."
    )
    send_window: SendWindow = Field(default_factory=SendWindow)
    holidays: Holidays = Field(default_factory=Holidays)
    cadence: Cadence = Field(default_factory=Cadence)
    exit: ExitRules = Field(default_factory=ExitRules)
    throttle: Throttle | None = Field(
        default=None, description="Sender caps for this sequence (default: the settings')."
    )
    prospect_fields: list[FieldName | ProspectField] = Field(
        default_factory=list,
        description="Custom prospect fields the templates use (CSV columns), beyond the "
        "standard ones: a name (every row must fill it), or {name, optional, default}.",
    )
    reenroll: Literal["never"] | Reenroll = Field(
        default="never",
        exclude_if=lambda value: value == REENROLL_NEVER,
        description='Whether a prospect who completed this sequence may enter it again: "never" '
        '(default) or {after: "90d"}. Booked, client, stopped, replied and suppressed '
        "prospects are never enrolled again.",
    )
    allow_concurrent: bool = Field(
        default=False,
        exclude_if=_empty,
        description="True: enroll prospects even while they are active in another sequence.",
    )
    steps: list[Step] = Field(min_length=1)

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        return check_country(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: "Europe" is a directory of the zone database; a long name is too long a path.
            raise ValueError(
                f'expected an IANA time zone such as "Europe/Paris", got {value!r}'
            ) from None
        return value

    @model_validator(mode="after")
    def _unique_step_ids(self) -> Sequence:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}: step ids must be unique")
            seen.add(step.id)
        if not any(step.timed for step in self.steps):
            raise ValueError("expected at least one step on the clock (call, email or reminder)")
        return self

    @field_validator("fallback_locales")
    @classmethod
    def _known_fallbacks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        default = info.data.get("locale")
        if default is None:
            return value  # the default locale is wrong: that error is enough
        known = [default, *info.data.get("locales", [])]
        missing = [loc for loc in value if loc not in known]
        if missing:
            raise ValueError(
                f"expected languages the templates exist in ({', '.join(dict.fromkeys(known))}), "
                f"got {', '.join(missing)}"
            )
        return value

    @model_validator(mode="after")
    def _unique_fields(self) -> Sequence:
        names = [f if isinstance(f, str) else f.name for f in self.prospect_fields]
        doubles = sorted({name for name in names if names.count(name) > 1})
        if doubles:
            raise ValueError(f"prospect_fields: {', '.join(doubles)} listed twice")
        return self

    @property
    def all_locales(self) -> list[str]:
        return [self.locale, *(loc for loc in self.locales if loc != self.locale)]

    @property
    def fields(self) -> list[ProspectField]:
        """Every custom field, a bare name being a required field."""
        return [
            ProspectField(name=item) if isinstance(item, str) else item
            for item in self.prospect_fields
        ]

    @property
    def field_names(self) -> list[str]:
        return [item.name for item in self.fields]

    @property
    def required_fields(self) -> list[str]:
        """The custom fields every prospect must fill."""
        return [item.name for item in self.fields if item.required]

    @property
    def field_defaults(self) -> dict[str, str]:
        """What templates see for an optional field the prospect leaves empty."""
        return {item.name: item.default or "" for item in self.fields if not item.required}

    @property
    def timed_steps(self) -> list[Step]:
        return [step for step in self.steps if step.timed]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
