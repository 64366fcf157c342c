"""Routing: which sequence a contact joins, from its qualification (``routing.yaml``).

The file lists rules; the FIRST rule whose ``when`` holds gives the sequence (or none)
and the lifecycle stage an enrolled contact reaches. Every condition of a ``when`` must
hold; ``when: {}`` (or no ``when``) holds for every contact::

    rules:
      - name: hot and qualified
        when: {warmth: hot, min_score: 10, at_least: {authority: 2}}
        sequence: outbound-2w
        stage: sql
      - name: cold or poorly qualified
        sequence: nurture-cold-12m

``when`` keys: ``warmth`` (one or a list of cold, warm, hot), ``min_score`` /
``max_score`` (bounds of the grid's total, 0-15), ``at_least`` / ``at_most`` (bounds per
criterion: need, budget, authority, timing, fit; a criterion not assessed meets
neither), ``stage`` (one or a list of stages the contact is at before routing).
The grid, warmth and stages are described in ``relance.qualification``.

The file is validated like a sequence file (``relance validate``): located problems,
unknown keys with a "did you mean", and a sequence that does not exist, a rule that can
never apply (after one that holds for everyone) or a name used twice are errors too.
``route`` itself is pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from relance.catalog import list_sequence_files
from relance.diagnostics import Problem, format_loc
from relance.errors import RoutingError
from relance.loader import ModelLoad, SourceMap, load_model_file, load_model_text
from relance.qualification import (
    CRITERIA,
    SCORE_MAX,
    STAGES,
    TOTAL_MAX,
    Criterion,
    Qualification,
    Stage,
    Warmth,
)
from relance.settings import Settings
from relance.spec import SEQUENCE_ID_PATTERN, Strict
from relance.wording import describe

ROUTING_FILE = "routing.yaml"
ENROLLED_STAGE = Stage.PROSPECT
"""The stage an enrolled contact reaches when its rule names none."""

E = TypeVar("E", bound=StrEnum)


def _one_or_many(kind: type[E], words: str) -> Any:
    """A validator accepting one value of ``kind`` or a non-empty list of them."""

    def parse(value: Any) -> list[E]:
        items = value if isinstance(value, list) else [value]
        allowed = {member.value: member for member in kind}
        if not items:
            raise ValueError(f"expected {words} (or a list of them), got an empty list")
        parsed = []
        for item in items:
            if not isinstance(item, str) or item not in allowed:
                raise ValueError(f"expected {words} (or a list of them), got {describe(item)}")
            parsed.append(allowed[item])
        return parsed

    return parse


def _one_or_many_schema(kind: type[StrEnum], description: str) -> dict[str, Any]:
    values = [member.value for member in kind]
    return {
        "anyOf": [
            {"enum": values},
            {"type": "array", "items": {"enum": values}, "minItems": 1},
        ],
        "description": description,
    }


Warmths = Annotated[
    list[Warmth],
    BeforeValidator(_one_or_many(Warmth, "cold, warm or hot")),
    WithJsonSchema(_one_or_many_schema(Warmth, "cold, warm or hot, or a list of them.")),
]
Stages = Annotated[
    list[Stage],
    BeforeValidator(_one_or_many(Stage, f"one of {', '.join(STAGES)}")),
    WithJsonSchema(_one_or_many_schema(Stage, "A lifecycle stage, or a list of them.")),
]


def _score_field(criterion: str) -> Any:
    return Field(default=None, ge=0, le=SCORE_MAX, description=f"{criterion}, 0-{SCORE_MAX}.")


class Scores(Strict):
    """Bounds per criterion of the grid."""

    need: int | None = _score_field("Need")
    budget: int | None = _score_field("Budget")
    authority: int | None = _score_field("Authority (decision maker)")
    timing: int | None = _score_field("Timing (3: within 3 months)")
    fit: int | None = _score_field("Fit with the target")

    def bounds(self) -> dict[Criterion, int]:
        return {c: bound for c in CRITERIA if (bound := getattr(self, c.value)) is not None}


class Condition(Strict):
    """When a rule applies: every key given must hold."""

    warmth: Warmths | None = Field(default=None, description="cold, warm or hot (or a list).")
    min_score: int | None = Field(
        default=None, ge=0, le=TOTAL_MAX, description="The grid's total is at least this."
    )
    max_score: int | None = Field(
        default=None, ge=0, le=TOTAL_MAX, description="The grid's total is at most this."
    )
    at_least: Scores | None = Field(
        default=None, description="Each criterion given is assessed and at least this."
    )
    at_most: Scores | None = Field(
        default=None, description="Each criterion given is assessed and at most this."
    )
    stage: Stages | None = Field(
        default=None, description="The contact's stage before routing (one or a list)."
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Condition:
        if (
            self.min_score is not None
            and self.max_score is not None
            and self.min_score > self.max_score
        ):
            raise ValueError(
                f"expected min_score <= max_score, got {self.min_score} > {self.max_score}"
            )
        if self.at_least is not None and self.at_most is not None:
            highs = self.at_most.bounds()
            for criterion, low in self.at_least.bounds().items():
                if criterion in highs and low > highs[criterion]:
                    raise ValueError(
                        f"expected at_least.{criterion} <= at_most.{criterion}, "
                        f"got {low} > {highs[criterion]}"
                    )
        return self

    @property
    def always(self) -> bool:
        """True when the condition holds for every contact."""
        return all(getattr(self, name) is None for name in type(self).model_fields)

    def check(self, subject: Qualification) -> list[str] | None:
        """The conditions met, worded ("score 12 >= 10"), or None if one is not met."""
        met: list[str] = []
        if self.warmth is not None:
            if subject.warmth not in self.warmth:
                return None
            met.append(subject.describe_warmth())
        total = subject.grid.total
        if self.min_score is not None:
            if total < self.min_score:
                return None
            met.append(f"score {total} >= {self.min_score}")
        if self.max_score is not None:
            if total > self.max_score:
                return None
            met.append(f"score {total} <= {self.max_score}")
        for criterion, bound in (self.at_least.bounds() if self.at_least else {}).items():
            score = subject.grid.score(criterion)
            if score is None or score < bound:
                return None
            met.append(f"{criterion} {score} >= {bound}")
        for criterion, bound in (self.at_most.bounds() if self.at_most else {}).items():
            score = subject.grid.score(criterion)
            if score is None or score > bound:
                return None
            met.append(f"{criterion} {score} <= {bound}")
        if self.stage is not None:
            if subject.stage not in self.stage:
                return None
            met.append(f"stage {subject.stage}")
        return met


class Rule(Strict):
    """One routing rule."""

    name: str = Field(min_length=1, description="Shown as the reason of each routing.")
    when: Condition = Field(
        default_factory=Condition, description="When it applies (default: always)."
    )
    sequence: str | None = Field(
        pattern=SEQUENCE_ID_PATTERN,
        description="The sequence to enroll in (its id), or null to enroll nobody.",
    )
    stage: Stage | None = Field(
        default=None,
        description=f"The stage an enrolled contact reaches at least (default "
        f"{ENROLLED_STAGE.value}); never moves a contact back.",
    )

    @model_validator(mode="after")
    def _stage_needs_a_sequence(self) -> Rule:
        if self.sequence is None and self.stage is not None:
            raise ValueError(
                "expected no stage when sequence is null: only an enrolled contact moves"
            )
        return self

    @property
    def stage_reached(self) -> Stage:
        return self.stage or ENROLLED_STAGE


class Routing(Strict):
    """A routing file: the first rule that applies wins."""

    rules: list[Rule] = Field(min_length=1, description="Tried in order; the first match wins.")

    def sequence_ids(self) -> list[str]:
        return sorted({rule.sequence for rule in self.rules if rule.sequence is not None})


@dataclass(frozen=True)
class Route:
    """Where a contact goes, and why."""

    sequence_id: str | None
    reason: str
    rule: str | None = None
    stage: Stage | None = None
    """The stage the contact reaches if enrolled; None when not enrolled."""


NO_RULE = "no rule applies"


def route(subject: Qualification, routing: Routing) -> Route:
    """The route of the first rule whose condition holds for ``subject``."""
    for rule in routing.rules:
        met = rule.when.check(subject)
        if met is None:
            continue
        reason = f"{rule.name}: {', '.join(met)}" if met else rule.name
        stage = rule.stage_reached if rule.sequence is not None else None
        return Route(rule.sequence, reason, rule.name, stage)
    return Route(None, NO_RULE)


# --- loading and checking ---------------------------------------------------------------

_KEYS = "rules"
_EMPTY_HINT = f"start from the {ROUTING_FILE} shipped with Relance"


def load_routing_text(
    text: str, file: str, known_sequences: Collection[str] | None = None
) -> ModelLoad[Routing]:
    """Load a routing file's text; ``known_sequences`` (ids) checks the sequences named."""
    loaded = load_model_text(text, file, Routing, keys=_KEYS, empty_hint=_EMPTY_HINT)
    return _checked(loaded, file, known_sequences)


def load_routing_file(
    path: Path, known_sequences: Collection[str] | None = None
) -> ModelLoad[Routing]:
    loaded = load_model_file(path, Routing, keys=_KEYS, empty_hint=_EMPTY_HINT)
    return _checked(loaded, str(path), known_sequences)


def routing_path(settings: Settings) -> Path:
    """Where the routing file lives: next to sequences/ in the project directory."""
    return settings.home / ROUTING_FILE


def known_sequence_ids(settings: Settings) -> list[str]:
    return sorted({path.stem for path in list_sequence_files(settings)})


def resolve_routing(path: Path | None, settings: Settings) -> Routing:
    """The routing file at ``path`` (default: routing.yaml in the project), validated;
    RoutingError lists every problem."""
    path = path or routing_path(settings)
    loaded = load_routing_file(path, known_sequence_ids(settings))
    if loaded.value is None or loaded.problems:
        raise RoutingError(loaded.problems)
    return loaded.value


def _checked(
    loaded: ModelLoad[Routing], file: str, known_sequences: Collection[str] | None
) -> ModelLoad[Routing]:
    routing = loaded.value
    if routing is None:
        return loaded
    problems = [*loaded.problems, *_rule_problems(routing, file, loaded.source_map)]
    if known_sequences is not None:
        problems += _sequence_problems(routing, file, loaded.source_map, known_sequences)
    problems.sort(key=lambda p: (p.file, p.line, p.column, p.path, p.message))
    return ModelLoad(routing, problems, loaded.source_map)


def _problem(
    file: str, source_map: SourceMap, loc: tuple[str | int, ...], message: str, hint: str | None
) -> Problem:
    at = source_map.locate(loc)
    return Problem(file, at.line, at.column, format_loc(loc), message, hint)


def _rule_problems(routing: Routing, file: str, source_map: SourceMap) -> list[Problem]:
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    catch_all: Rule | None = None
    for index, rule in enumerate(routing.rules):
        name_at = source_map.locate(("rules", index, "name"))
        if rule.name in first_line:
            problems.append(
                _problem(
                    file,
                    source_map,
                    ("rules", index, "name"),
                    f"duplicate rule name {rule.name!r} (first at line {first_line[rule.name]})",
                    "every rule needs its own name: it is the reason shown for each contact",
                )
            )
        first_line.setdefault(rule.name, name_at.line)
        if catch_all is not None:
            problems.append(
                _problem(
                    file,
                    source_map,
                    ("rules", index),
                    f"rule {rule.name!r} never applies: rule {catch_all.name!r} above "
                    "applies to every contact",
                    "move the rule without conditions to the end",
                )
            )
        elif rule.when.always:
            catch_all = rule
    return problems


def _sequence_problems(
    routing: Routing, file: str, source_map: SourceMap, known: Collection[str]
) -> list[Problem]:
    problems: list[Problem] = []
    listing = ", ".join(sorted(known)) or "none"
    for index, rule in enumerate(routing.rules):
        if rule.sequence is None or rule.sequence in known:
            continue
        hint: str | None = None
        if rule.sequence in ("none", "nothing", "nobody"):
            hint = "write sequence: null to enroll nobody"
        else:
            close = difflib.get_close_matches(rule.sequence, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else None
        problems.append(
            _problem(
                file,
                source_map,
                ("rules", index, "sequence"),
                f"expected the id of a sequence file ({listing}), got {rule.sequence!r}",
                hint,
            )
        )
    return problems
