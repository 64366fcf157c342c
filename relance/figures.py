"""The figures of a report, as data: counts and rates per step, A/B variant and sequence,
and the stages of the lifecycle funnel. How they are counted: ``relance.analytics``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from relance.qualification import Stage

STAGES = tuple(stage.value for stage in Stage)
STAGE_LABELS = {
    "suspect": "Suspect",
    "lead": "Lead",
    "prospect": "Prospect",
    "mql": "MQL",
    "sql": "SQL",
    "meeting": "Meeting",
    "client": "Client",
}
RATES = (
    ("delivered", "sent"),
    ("opened", "delivered"),
    ("clicked", "delivered"),
    ("replied", "sent"),
    ("booked", "sent"),
    ("bounced", "sent"),
    ("unsubscribed", "sent"),
)
"""Each rate as (numerator, denominator); the rate is named after its numerator."""


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def format_rate(value: float | None) -> str:
    """ "80%", "2.5%" below 10% (small rates are where a decimal matters), "–" for none."""
    if value is None:
        return "–"
    if value == 0 or value >= 0.1:
        return f"{value * 100:.0f}%"
    return f"{value * 100:.1f}%"


@dataclass
class Counts:
    """The figures of one step, variant, sequence or whole report."""

    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    booked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    tasks: int = 0

    @property
    def empty(self) -> bool:
        return self == Counts()

    def add(self, other: Counts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def rates(self) -> dict[str, float | None]:
        return {part: rate(getattr(self, part), getattr(self, whole)) for part, whole in RATES}

    def as_dict(self) -> dict[str, Any]:
        figures: dict[str, Any] = {item.name: getattr(self, item.name) for item in fields(self)}
        return {**figures, "rates": self.rates()}


def total_of(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for item in counts:
        total.add(item)
    return total


@dataclass
class StepStats:
    """One step of a sequence; ``variants`` holds the figures per A/B variant (None: none)."""

    step_id: str
    channel: str
    position: int
    variants: dict[str | None, Counts] = field(default_factory=dict)

    @property
    def total(self) -> Counts:
        return total_of(self.variants.values())

    @property
    def has_variants(self) -> bool:
        return any(variant is not None for variant in self.variants)

    def as_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "channel": self.channel,
            "position": self.position,
            **self.total.as_dict(),
            "variants": [
                {"variant": variant, **counts.as_dict()}
                for variant, counts in self.variants.items()
            ],
        }


@dataclass
class SequenceStats:
    sequence_id: str
    steps: list[StepStats]
    before_first_touch: Counts = field(default_factory=Counts)
    """Signals of enrollments that had not been sent anything yet."""

    @property
    def total(self) -> Counts:
        return total_of([*(step.total for step in self.steps), self.before_first_touch])

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence_id": self.sequence_id,
            **self.total.as_dict(),
            "steps": [step.as_dict() for step in self.steps],
            "before_first_touch": self.before_first_touch.as_dict(),
        }


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    prospects: int
    conversion: float | None
    """Prospects of the next stage / prospects of this one; None for the last stage."""

    @property
    def label(self) -> str:
        return STAGE_LABELS[self.stage]


@dataclass
class Report:
    generated_at: datetime
    sequence_id: str | None
    sequences: list[SequenceStats]
    funnel: list[FunnelStage]

    @property
    def total(self) -> Counts:
        return total_of(sequence.total for sequence in self.sequences)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at.isoformat().replace("+00:00", "Z"),
            "sequence_id": self.sequence_id,
            "total": self.total.as_dict(),
            "sequences": [sequence.as_dict() for sequence in self.sequences],
            "funnel": [
                {"stage": s.stage, "prospects": s.prospects, "conversion": s.conversion}
                for s in self.funnel
            ],
        }
