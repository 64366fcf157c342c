"""``relance qualify`` (the grid and warmth of a prospect) and ``relance stage`` (its
lifecycle stage: history, or a move by hand)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from relance.cli.app import command
from relance.cli.console import JsonOption, NowOption, iso, open_store, output, read_now, table
from relance.errors import InputError
from relance.lifecycle import StageMove, move_stage, qualify, stage_history, stored_qualification
from relance.qualification import (
    CRITERIA,
    SCORE_MAX,
    STAGES,
    Criterion,
    Qualification,
    parse_score,
    parse_stage,
    parse_warmth,
)
from relance.signals import find_prospect

ScoreOption = Annotated[
    str | None,
    typer.Option(help=f"0-{SCORE_MAX}, or - for not assessed.", show_default=False),
]


@command("qualify")
def qualify_command(
    prospect_ref: Annotated[
        str, typer.Argument(metavar="PROSPECT", help="Email address or prospect id.")
    ],
    need: ScoreOption = None,
    budget: ScoreOption = None,
    authority: Annotated[
        str | None,
        typer.Option(help="Decision maker: 0-3, or - for not assessed.", show_default=False),
    ] = None,
    timing: Annotated[
        str | None,
        typer.Option(
            help="3: within 3 months, 2: 3-12 months, 1: later, 0: no project; - for not assessed.",
            show_default=False,
        ),
    ] = None,
    fit: ScoreOption = None,
    warmth: Annotated[
        str | None,
        typer.Option(
            help="cold, warm or hot; 'derived' to let the grid decide again.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    now: NowOption = None,
) -> None:
    """Set a prospect's qualification grid (0-3 per criterion) and warmth, or show them.

    Criteria not given keep their score. Warmth given by hand wins over the grid's
    until set back to 'derived' (hot: timing 3, need >= 2 and total >= 10; warm: timing
    >= 2, need >= 1 and total >= 6; cold otherwise).

    Example: [bold]relance qualify claire.martin@example.com --need 3 --budget 2
    --authority 3 --timing 3 --fit 2[/bold]
    """
    given = {
        Criterion.NEED: need,
        Criterion.BUDGET: budget,
        Criterion.AUTHORITY: authority,
        Criterion.TIMING: timing,
        Criterion.FIT: fit,
    }
    scores = {
        criterion: _score(criterion, text) for criterion, text in given.items() if text is not None
    }
    derive = warmth is not None and warmth.strip().lower() in ("derived", "derive", "-")
    chosen = None
    if warmth is not None and not derive:
        try:
            chosen = parse_warmth(warmth)
        except ValueError as error:
            raise InputError(f"--warmth: {error}, or derived") from None
    moment = read_now(now)
    email, result = qualify(
        open_store(), prospect_ref, now=moment, scores=scores, warmth=chosen, derive=derive
    )
    if as_json:
        typer.echo(json.dumps(qualification_data(email, result), indent=2))
    else:
        typer.echo(f"{email}: {result.describe()}")


def _score(criterion: Criterion, text: str) -> int | None:
    if text.strip() == "-":
        return None
    try:
        score = parse_score(text)
    except ValueError as error:
        raise InputError(f"--{criterion.value}: {error}") from None
    if score is None:
        raise InputError(f"--{criterion.value}: expected a score from 0 to {SCORE_MAX}, got ''")
    return score


def qualification_data(email: str, result: Qualification) -> dict[str, Any]:
    return {
        "email": email,
        "grid": {c.value: result.grid.score(c) for c in CRITERIA},
        "total": result.grid.total,
        "warmth": result.warmth.value,
        "warmth_given": result.given_warmth is not None,
        "stage": result.stage.value,
    }


@command("stage")
def stage_command(
    prospect_ref: Annotated[
        str, typer.Argument(metavar="PROSPECT", help="Email address or prospect id.")
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", help=f"Move to this stage: {', '.join(STAGES)}.", show_default=False),
    ] = None,
    note: Annotated[
        str | None,
        typer.Option(help="Why (required to move back).", show_default=False),
    ] = None,
    as_json: JsonOption = False,
    now: NowOption = None,
) -> None:
    """Show a prospect's lifecycle stage and every move, or move it by hand with --to.

    Stages: suspect, lead, prospect, mql, sql, meeting, client. Imports, routing and
    bookings only move a prospect forward; by hand it may go back, with a --note.

    Example: [bold]relance stage claire.martin@example.com --to sql --note "budget
    confirmed on the phone"[/bold]
    """
    store = open_store()
    move: StageMove | None = None
    if to is not None:
        try:
            target = parse_stage(to)
        except ValueError as error:
            raise InputError(f"--to: {error}") from None
        if target is None:
            raise InputError(f"--to: expected one of {', '.join(STAGES)}, got ''")
        move = move_stage(store, prospect_ref, target, now=read_now(now), note=note)
    elif note is not None:
        raise InputError("--note goes with --to: a note explains a move")
    with store.reading() as connection:
        row = find_prospect(connection, prospect_ref)
        current = stored_qualification(row)
        history = stage_history(connection, row.id)
    if as_json:
        data = {
            **qualification_data(row.email, current),
            "moves": [_move_data(item) for item in history],
        }
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if move is not None:
        typer.echo(f"{row.email}: {_arrow(move)} (by hand)")
        return
    with output() as out:
        out.print(f"{row.email}: stage {current.stage.value}")
        grid = table("moved at", "from", "to", "source", "note")
        for item in history:
            grid.add_row(
                f"{item.moved_at:%Y-%m-%d %H:%M} UTC",
                item.from_stage.value if item.from_stage else "-",
                item.to_stage.value,
                item.source,
                item.note or "",
            )
        out.print(grid)


def _arrow(move: StageMove) -> str:
    start = move.from_stage.value if move.from_stage else "-"
    return f"{start} -> {move.to_stage.value}"


def _move_data(move: StageMove) -> dict[str, Any]:
    return {
        "from": move.from_stage.value if move.from_stage else None,
        "to": move.to_stage.value,
        "moved_at": iso(move.moved_at),
        "source": move.source,
        "note": move.note,
    }
