"""``relance review``: the emails whose outcome a crash or a lost answer left unknown.

It first settles what the provider's recorded events decide (``recovery.resolve_unknown``),
then applies a person's verdicts and lists what still waits: ``--sent ID`` when the
prospect got it (SendGrid's Email Activity shows the ``touchpoint_id`` custom arg),
``--resend ID`` when the provider never had it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from relance.cli.app import command
from relance.cli.console import JsonOption, NowOption, iso, open_store, output, read_now, table
from relance.recovery import DEFAULT_GRACE, resolve_unknown, settle_by_hand, unknown_touches
from relance.tables import MAX_ROW_ID


@command("review")
def review_command(
    sent: Annotated[
        list[int] | None,
        typer.Option(
            "--sent",
            metavar="ID",
            min=1,
            max=MAX_ROW_ID,
            help="The prospect got this touchpoint's email (repeatable).",
        ),
    ] = None,
    resend: Annotated[
        list[int] | None,
        typer.Option(
            "--resend",
            metavar="ID",
            min=1,
            max=MAX_ROW_ID,
            help="The provider never had it: plan it again, due now.",
        ),
    ] = None,
    grace_hours: Annotated[
        float, typer.Option(min=1, help="Provider silence after which an email was never sent.")
    ] = DEFAULT_GRACE.total_seconds() / 3600,
    as_json: JsonOption = False,
    now: NowOption = None,
) -> None:
    """Settle and list the emails whose outcome is unknown (a dispatcher died mid-send).

    Example: [bold]relance review --sent 1042 --resend 1043[/bold]
    """
    moment = read_now(now)
    store = open_store()
    resolution = resolve_unknown(store, moment, grace=timedelta(hours=grace_hours))
    marked = settle_by_hand(store, sent or [], sent=True, now=moment) if sent else []
    planned = settle_by_hand(store, resend or [], sent=False, now=moment) if resend else []
    waiting = unknown_touches(store)
    if as_json:
        document = {
            "confirmed": resolution.confirmed,
            "dropped": resolution.dropped,
            "replanned": resolution.replanned,
            "marked_sent": marked,
            "marked_not_sent": planned,
            "waiting": [
                {
                    "touchpoint_id": touch.touchpoint_id,
                    "sequence_id": touch.sequence_id,
                    "step_id": touch.step_id,
                    "prospect_id": touch.prospect_id,
                    "claimed_at": iso(touch.claimed_at),
                    "reason": touch.reason,
                }
                for touch in waiting
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    with output() as console:
        if resolution.confirmed or resolution.dropped or resolution.replanned:
            console.print(
                f"From the provider's events: {resolution.confirmed} sent, "
                f"{resolution.dropped} dropped; {resolution.replanned} planned again "
                f"(no event in {grace_hours:g} h)."
            )
        if marked:
            console.print(f"Marked sent: {', '.join(map(str, marked))}.")
        if planned:
            console.print(f"Planned again: {', '.join(map(str, planned))}.")
        if not waiting:
            console.print("No email waits for review.")
            return
        grid = table("touchpoint", "sequence", "step", "prospect", "claimed at", "reason")
        for touch in waiting:
            grid.add_row(
                str(touch.touchpoint_id),
                touch.sequence_id,
                touch.step_id,
                str(touch.prospect_id),
                iso(touch.claimed_at) or "",
                touch.reason or "",
            )
        console.print(grid)
        count = len(waiting)
        console.print(
            f"{count} email{'s' if count > 1 else ''} wait{'' if count > 1 else 's'} for review: "
            "--sent ID if the prospect got it, --resend ID if the provider never had it."
        )
