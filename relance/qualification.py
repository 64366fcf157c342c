"""Qualification: the grid, warmth, and the lifecycle stages a contact moves through.

Pure: nothing here reads the clock or the store.

The grid scores five criteria from 0 to 3 (BANT, plus fit); the total runs from 0 to 15.
A criterion left empty is *not assessed*: it counts 0 in the total, and a routing
condition on that criterion (``at_least`` / ``at_most``) does not hold.

    need       0 none or unknown  1 latent         2 acknowledged        3 a priority
    budget     0 none or unknown  1 possible       2 identified          3 approved
    authority  0 unknown          1 user, influencer  2 shares the decision  3 decision maker
    timing     0 no project       1 beyond 12 months  2 within 3-12 months  3 within 3 months
    fit        0 outside target   1 weak           2 good                3 ideal customer

Warmth says how soon to push: *hot* (imminent: get a meeting), *warm* (a project 3-12
months away: nurture), *cold* (no project in sight: long-term nurturing). Warmth given
explicitly (a CSV column, ``relance qualify --warmth``) wins; otherwise it is derived
from the grid, mainly from timing and need:

    hot   timing 3 and need >= 2 and total >= 10
    warm  timing >= 2 and need >= 1 and total >= 6
    cold  everything else (no project within a year, no need, or too little known)

Lifecycle stages, in order: suspect -> lead -> prospect -> MQL -> SQL -> meeting -> client.
Automatic moves (an import, routing, a booking) only ever go forward; a person may move
a contact back by hand, saying why (``relance stage PROSPECT --to lead --note ...``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SCORE_MAX = 3
TOTAL_MAX = 15


class Criterion(StrEnum):
    """One line of the qualification grid."""

    NEED = "need"
    BUDGET = "budget"
    AUTHORITY = "authority"
    TIMING = "timing"
    FIT = "fit"


CRITERIA: tuple[Criterion, ...] = tuple(Criterion)


class Warmth(StrEnum):
    COLD = "cold"
    WARM = "warm"
    HOT = "hot"


class Stage(StrEnum):
    """Lifecycle stages, declared in the order a contact moves through them."""

    SUSPECT = "suspect"
    LEAD = "lead"
    PROSPECT = "prospect"
    MQL = "mql"
    SQL = "sql"
    MEETING = "meeting"
    CLIENT = "client"


STAGES: tuple[Stage, ...] = tuple(Stage)
INITIAL_STAGE = Stage.LEAD
"""The stage of a contact saved without one."""

_WARMTH_WORDS = {
    "cold": Warmth.COLD,
    "froid": Warmth.COLD,
    "warm": Warmth.WARM,
    "tiede": Warmth.WARM,
    "hot": Warmth.HOT,
    "chaud": Warmth.HOT,
}
_STAGE_WORDS = {
    **{stage.value: stage for stage in STAGES},
    "marketing_qualified_lead": Stage.MQL,
    "sales_qualified_lead": Stage.SQL,
    "rendez_vous": Stage.MEETING,
    "rdv": Stage.MEETING,
    "customer": Stage.CLIENT,
}


@dataclass(frozen=True)
class Grid:
    """A contact's scores, 0-3 each; None: not assessed."""

    need: int | None = None
    budget: int | None = None
    authority: int | None = None
    timing: int | None = None
    fit: int | None = None

    @classmethod
    def of(cls, source: Any) -> Grid:
        """The grid of anything with need, budget, ... attributes (a Prospect, a row)."""
        return cls(**{c.value: getattr(source, c.value, None) for c in CRITERIA})

    def score(self, criterion: Criterion) -> int | None:
        value: int | None = getattr(self, criterion.value)
        return value

    def scores(self) -> dict[Criterion, int | None]:
        return {criterion: self.score(criterion) for criterion in CRITERIA}

    @property
    def total(self) -> int:
        """The sum of the assessed scores (0-15)."""
        return sum(score for score in self.scores().values() if score is not None)

    @property
    def assessed(self) -> bool:
        """True when at least one criterion was scored."""
        return any(score is not None for score in self.scores().values())

    def replace(self, changes: Mapping[Criterion, int | None]) -> Grid:
        values = {c.value: changes.get(c, self.score(c)) for c in CRITERIA}
        return Grid(**values)

    def describe(self) -> str:
        """ "need 3, budget 2, authority -, timing 3, fit 2 = 10/15"."""
        parts = [f"{c.value} {'-' if s is None else s}" for c, s in self.scores().items()]
        return f"{', '.join(parts)} = {self.total}/{TOTAL_MAX}"


def derive_warmth(grid: Grid) -> Warmth:
    """Warmth from the grid alone (see the module's docstring for the rule)."""
    timing = grid.timing or 0
    need = grid.need or 0
    if timing >= 3 and need >= 2 and grid.total >= 10:
        return Warmth.HOT
    if timing >= 2 and need >= 1 and grid.total >= 6:
        return Warmth.WARM
    return Warmth.COLD


def warmth_of(grid: Grid, given: Warmth | None) -> tuple[Warmth, bool]:
    """(warmth, True when it was given) — the given warmth wins over the grid's."""
    if given is not None:
        return given, True
    return derive_warmth(grid), False


@dataclass(frozen=True)
class Qualification:
    """Where a contact stands: the grid, the warmth given (if any) and the stage."""

    grid: Grid = Grid()
    given_warmth: Warmth | None = None
    stage: Stage = INITIAL_STAGE

    @property
    def warmth(self) -> Warmth:
        return warmth_of(self.grid, self.given_warmth)[0]

    def describe_warmth(self) -> str:
        """ "hot" when derived from the grid, "hot (given)" otherwise."""
        return self.warmth.value + (" (given)" if self.given_warmth is not None else "")

    def describe(self) -> str:
        """ "need 3, budget 2, ... = 13/15; hot; stage sql"."""
        return f"{self.grid.describe()}; {self.describe_warmth()}; stage {self.stage.value}"


def qualification_of(source: Any, stored: Qualification | None = None) -> Qualification:
    """The qualification a contact has once ``source`` (a Prospect, a row) is saved over
    what was ``stored``: scores and warmth given replace the stored ones, the others stay;
    the stage is the later of the two (an import never moves a contact back)."""
    before = stored or Qualification()
    given = Grid.of(source)
    grid = before.grid.replace({c: s for c, s in given.scores().items() if s is not None})
    warmth = getattr(source, "warmth", None) or before.given_warmth
    given_stage: Stage | None = getattr(source, "stage", None)
    if stored is None:
        stage = given_stage or INITIAL_STAGE
    elif given_stage is not None and is_forward(stored.stage, given_stage):
        stage = given_stage
    else:
        stage = stored.stage
    return Qualification(grid, warmth, stage)


# --- stages ------------------------------------------------------------------------------


def stage_rank(stage: Stage) -> int:
    return STAGES.index(stage)


def is_forward(current: Stage, target: Stage) -> bool:
    """True when ``target`` comes after ``current`` in the lifecycle."""
    return stage_rank(target) > stage_rank(current)


def automatic_move(current: Stage, target: Stage) -> Stage | None:
    """The stage an automatic move leads to: ``target`` if it is ahead, else None (stay)."""
    return target if is_forward(current, target) else None


# --- reading what people write -----------------------------------------------------------


def _word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text.strip()).encode("ascii", "ignore").decode()
    return "_".join(part for part in plain.lower().replace("-", " ").split())


def parse_score(value: Any) -> int | None:
    """A score 0-3 from "2", 2 or "2.0"; None for an empty cell. ValueError otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a score from 0 to {SCORE_MAX}, got {value!r}")
    number: float | None = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "."))
        except ValueError:
            number = None
    if number is None or not number.is_integer() or not 0 <= number <= SCORE_MAX:
        raise ValueError(f"expected a score from 0 to {SCORE_MAX}, got {value!r}")
    return int(number)


def parse_warmth(value: Any) -> Warmth | None:
    """cold, warm or hot (or froid, tiède, chaud); None for an empty cell."""
    if value is None or isinstance(value, Warmth):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        found = _WARMTH_WORDS.get(_word(value))
        if found is not None:
            return found
    raise ValueError(f"expected cold, warm or hot, got {value!r}")


def parse_stage(value: Any) -> Stage | None:
    """A lifecycle stage ("SQL", "Meeting", "rendez-vous"...); None for an empty cell."""
    if value is None or isinstance(value, Stage):
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        found = _STAGE_WORDS.get(_word(value))
        if found is not None:
            return found
    raise ValueError(f"expected one of {', '.join(STAGES)}, got {value!r}")
