"""Lifecycle stages and the qualification grid in the store: every stage move is kept.

``prospects.stage`` is where a contact stands now; ``stage_moves`` holds every move with
its date, its source and an optional note, so that the funnel (suspect -> client) and a
contact's history can be told from the store alone.

Sources of moves:

    import    the contact was saved by an enrollment or an import (its first stage, or
              a later stage given by the file)
    routing   ``relance enroll --route``: the stage its routing rule gives
    booking   a meeting was booked: meeting
    cli       ``relance stage PROSPECT --to STAGE`` (by hand)

Automatic moves (import, routing, booking) only go forward; a person may move a contact
back by hand, with a note saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from relance.addresses import address_key
from relance.errors import InputError, NotFoundError, StateError
from relance.qualification import (
    CRITERIA,
    Criterion,
    Grid,
    Qualification,
    Stage,
    Warmth,
    automatic_move,
    is_forward,
)
from relance.store import Store, insert_many
from relance.tables import MAX_ROW_ID, prospects, stage_moves


@dataclass(frozen=True)
class StageMove:
    """One move of a contact from one stage to another (from None: its first stage)."""

    prospect_id: int
    from_stage: Stage | None
    to_stage: Stage
    moved_at: datetime
    source: str
    note: str | None = None


def stored_qualification(row: Any) -> Qualification:
    """The qualification a prospects row holds."""
    warmth = Warmth(row.warmth) if row.warmth else None
    return Qualification(Grid.of(row), warmth, Stage(row.stage))


def record_first_stages(
    connection: Connection, stages: Mapping[int, Stage], *, now: datetime, source: str
) -> None:
    """Record the first stage of newly saved prospects (prospect id -> stage)."""
    if stages:
        insert_many(
            connection,
            stage_moves,
            [
                {
                    "prospect_id": prospect_id,
                    "from_stage": None,
                    "to_stage": stage.value,
                    "moved_at": now,
                    "source": source,
                }
                for prospect_id, stage in stages.items()
            ],
        )


def record_move(
    connection: Connection,
    prospect_id: int,
    from_stage: Stage | None,
    to_stage: Stage,
    *,
    now: datetime,
    source: str,
    note: str | None = None,
) -> StageMove:
    """Move a prospect to ``to_stage`` and keep the move, whatever the direction."""
    connection.execute(
        update(prospects)
        .where(prospects.c.id == prospect_id)
        .values(stage=to_stage.value, updated_at=now)
    )
    connection.execute(
        insert(stage_moves),
        {
            "prospect_id": prospect_id,
            "from_stage": from_stage.value if from_stage else None,
            "to_stage": to_stage.value,
            "moved_at": now,
            "source": source,
            "note": note,
        },
    )
    return StageMove(prospect_id, from_stage, to_stage, now, source, note)


def advance_stage(
    connection: Connection,
    prospect_id: int,
    target: Stage,
    *,
    now: datetime,
    source: str,
    note: str | None = None,
) -> StageMove | None:
    """An automatic move: to ``target`` if it is ahead of the current stage, else none."""
    current = Stage(
        connection.execute(
            select(prospects.c.stage).where(prospects.c.id == prospect_id).with_for_update()
        ).scalar_one()
    )
    if automatic_move(current, target) is None:
        return None
    return record_move(connection, prospect_id, current, target, now=now, source=source, note=note)


def stage_history(connection: Connection, prospect_id: int) -> list[StageMove]:
    """Every move of a prospect, oldest first."""
    rows = connection.execute(
        select(stage_moves)
        .where(stage_moves.c.prospect_id == prospect_id)
        .order_by(stage_moves.c.moved_at, stage_moves.c.id)
    )
    return [
        StageMove(
            row.prospect_id,
            Stage(row.from_stage) if row.from_stage else None,
            Stage(row.to_stage),
            row.moved_at,
            row.source,
            row.note,
        )
        for row in rows
    ]


def move_stage(
    store: Store,
    ref: str,
    target: Stage,
    *,
    now: datetime,
    note: str | None = None,
    source: str = "cli",
) -> StageMove:
    """Move a prospect by hand (email or id). Moving back needs a note saying why."""
    note = (note or "").strip() or None
    with store.transaction() as connection:
        row = _locked(connection, ref)
        current = Stage(row.stage)
        if current is target:
            raise StateError(f"{row.email} is already at stage {target.value}")
        if not is_forward(current, target) and note is None:
            raise InputError(
                f"moving {row.email} back from {current.value} to {target.value} "
                "needs a note saying why (--note)"
            )
        return record_move(connection, row.id, current, target, now=now, source=source, note=note)


def qualify(
    store: Store,
    ref: str,
    *,
    now: datetime,
    scores: Mapping[Criterion, int | None] | None = None,
    warmth: Warmth | None = None,
    derive: bool = False,
) -> tuple[str, Qualification]:
    """Set a prospect's scores (None: not assessed) and warmth; (email, qualification).

    ``warmth`` sets the warmth by hand; ``derive`` drops it so that the grid decides.
    """
    if warmth is not None and derive:
        raise InputError("give a warmth or ask to derive it from the grid, not both")
    changes = dict(scores or {})
    with store.transaction() as connection:
        row = _locked(connection, ref)
        values: dict[str, Any] = {c.value: changes[c] for c in CRITERIA if c in changes}
        if warmth is not None or derive:
            values["warmth"] = warmth.value if warmth is not None else None
        if values:
            values["updated_at"] = now
            connection.execute(update(prospects).where(prospects.c.id == row.id).values(values))
        after = connection.execute(select(prospects).where(prospects.c.id == row.id)).one()
        return str(after.email), stored_qualification(after)


def _locked(connection: Connection, ref: str) -> Row[Any]:
    """A prospect by email address or numeric id, locked for this transaction."""
    ref = ref.strip()
    column = prospects.c.id if ref.isdigit() else prospects.c.email
    value: Any = int(ref) if ref.isdigit() else address_key(ref)
    if ref.isdigit() and value > MAX_ROW_ID:
        raise NotFoundError(f"no prospect {ref!r} (give an email address or a prospect id)")
    row = connection.execute(select(prospects).where(column == value).with_for_update()).first()
    if row is None:
        raise NotFoundError(f"no prospect {ref!r} (give an email address or a prospect id)")
    return row
