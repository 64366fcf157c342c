"""The figures of the sequences: per step and A/B variant, and the lifecycle funnel.

``build_report(store, now=...)`` reads the store once; everything else here is pure. The
figures it returns are data (``relance.figures``), rendered by ``relance report`` in the
terminal (``relance.cli.reporting``) and as an HTML page (``relance.report_html``).

Counting rules (per sequence, step and variant; variant = ``touchpoints.variant``, NULL
when the step has no variants):

sent
    E-mail touches (channel ``email``) whose status is ``sent``. A touch ``unknown`` (a
    send whose outcome is not settled yet), failed, skipped or planned is not sent.
    Meeting confirmations are left out: they follow a booking, they do not seek one.
tasks
    Call and reminder touches that became an SDR task (status ``sent``), counted apart:
    never in sent.
delivered, opened, clicked
    Sent e-mail touches named (``events.touchpoint_id``) by at least one event of that
    kind: distinct touches, not raw events (a message opened five times counts once).
    A click proves an open and an open proves delivery (image blocking hides opens,
    delivery events come late or not at all), so a clicked touch also counts as opened
    and delivered: clicked <= opened <= delivered <= sent.
replied, booked, bounced, unsubscribed
    Enrollments, each counted once per kind, at its first event of that kind (a
    ``spam_report`` counts as unsubscribed). The event goes to the step and variant of
    the last touch sent to its enrollment at or before the event's ``occurred_at``:
    any touch (e-mail, call or reminder) for a reply or a booking, which a call can
    bring as well as an e-mail; the last e-mail for a bounce or an unsubscribe, which
    only an e-mail can cause. An event that names no enrollment (its prospect was in
    several sequences) goes to the last such touch sent to the prospect in any sequence.
    An event with an enrollment but no such touch before it counts on its sequence's
    "before the first touch" line; one with neither, or with no known prospect (a bounce
    from an address nobody has), counts nowhere.
rates
    delivered/sent, opened/delivered, clicked/delivered, replied/sent, booked/sent,
    bounced/sent, unsubscribed/sent; None when the denominator is 0 (a call step).

The funnel (suspect → lead → prospect → mql → sql → meeting → client): a prospect counts
in every stage up to the furthest it ever reached, its current stage or any stage named
by its ``stage_moves`` (from or to): a prospect moved back from sql to lead still counts
in sql, and in every stage before it. Conversion of a stage = prospects of the next stage
/ prospects of this one. A booked meeting is not a sale: only ``client`` is. With a
sequence given, the funnel counts the prospects ever enrolled in it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, case, distinct, func, select, union_all

from relance.errors import NotFoundError
from relance.figures import (
    STAGES,
    Counts,
    FunnelStage,
    Report,
    SequenceStats,
    StepStats,
    rate,
)
from relance.spec import Channel
from relance.store import Store
from relance.tables import enrollments, events, prospects, stage_moves, touchpoints

SIGNAL_KINDS = {
    "replied": "replied",
    "booked": "booked",
    "bounced": "bounced",
    "unsubscribed": "unsubscribed",
    "spam_report": "unsubscribed",
}
"""Event kinds attributed to the last touch, and the figure each one counts in."""
EMAIL_SIGNALS = frozenset({"bounced", "unsubscribed"})
"""Figures only an e-mail can cause: they go to the last e-mail, not to a later call."""

ENGAGEMENT = {
    "delivered": ("delivered", "opened", "clicked"),
    "opened": ("opened", "clicked"),
    "clicked": ("clicked",),
}
"""Each engagement figure and the event kinds that prove it."""

TASK_CHANNELS = (Channel.CALL.value, Channel.REMINDER.value)

StepKey = tuple[str, str | None, str | None]
"""(sequence id, step id or None before the first touch, variant or None)."""


# --- pure computation ----------------------------------------------------------------------


@dataclass(frozen=True)
class SentTouch:
    """A touch that went out (e-mail sent or SDR task created)."""

    touchpoint_id: int
    enrollment_id: int
    prospect_id: int
    sequence_id: str
    step_id: str
    variant: str | None
    position: int
    sent_at: datetime
    channel: str


@dataclass(frozen=True)
class SignalEvent:
    event_id: int
    kind: str
    """The figure it counts in: replied, booked, bounced or unsubscribed."""
    prospect_id: int
    enrollment_id: int | None
    occurred_at: datetime


def attribute_signals(
    signals: Iterable[SignalEvent],
    touches: Iterable[SentTouch],
    enrollment_sequences: Mapping[int, str],
) -> dict[StepKey, Counts]:
    """Each enrollment's first signal of each kind, on the step of the last touch before it."""
    order = sorted(touches, key=lambda t: (t.sent_at, t.position, t.touchpoint_id))
    # (enrollment or prospect id, e-mails only) -> touches in the order they went out
    by_enrollment: dict[tuple[int, bool], list[SentTouch]] = defaultdict(list)
    by_prospect: dict[tuple[int, bool], list[SentTouch]] = defaultdict(list)
    for touch in order:
        for emails_only in {False, touch.channel == Channel.EMAIL.value}:
            by_enrollment[(touch.enrollment_id, emails_only)].append(touch)
            by_prospect[(touch.prospect_id, emails_only)].append(touch)
    seen: set[tuple[int, str]] = set()
    counts: dict[StepKey, Counts] = defaultdict(Counts)
    for signal in sorted(signals, key=lambda s: (s.occurred_at, s.event_id)):
        emails_only = signal.kind in EMAIL_SIGNALS
        if signal.enrollment_id is not None:
            pool = by_enrollment.get((signal.enrollment_id, emails_only), [])
        else:
            pool = by_prospect.get((signal.prospect_id, emails_only), [])
        before = bisect_right(pool, signal.occurred_at, key=lambda t: t.sent_at)
        key: StepKey
        if before:
            last = pool[before - 1]
            enrollment_id = last.enrollment_id
            key = (last.sequence_id, last.step_id, last.variant)
        elif signal.enrollment_id is not None and signal.enrollment_id in enrollment_sequences:
            enrollment_id = signal.enrollment_id
            key = (enrollment_sequences[enrollment_id], None, None)
        else:
            continue
        if (enrollment_id, signal.kind) in seen:
            continue
        seen.add((enrollment_id, signal.kind))
        figure = counts[key]
        setattr(figure, signal.kind, getattr(figure, signal.kind) + 1)
    return dict(counts)


@dataclass(frozen=True)
class StepRow:
    """A step of a sequence as the store knows it, with its sent e-mails and tasks."""

    sequence_id: str
    step_id: str
    variant: str | None
    channel: str
    position: int
    sent: int
    tasks: int


def assemble(
    steps: Iterable[StepRow],
    engagement: Mapping[StepKey, Counts],
    signals: Mapping[StepKey, Counts],
    sequence_id: str | None = None,
) -> list[SequenceStats]:
    """The per-sequence, per-step, per-variant figures, steps in sequence order."""
    found: dict[str, dict[str, StepStats]] = defaultdict(dict)
    before: dict[str, Counts] = defaultdict(Counts)
    for row in steps:
        stats = found[row.sequence_id].setdefault(
            row.step_id, StepStats(row.step_id, row.channel, row.position)
        )
        stats.position = min(stats.position, row.position)
        counts = stats.variants.setdefault(row.variant, Counts())
        counts.sent += row.sent
        counts.tasks += row.tasks
    for (seq, step_id, variant), figures in [*engagement.items(), *signals.items()]:
        if step_id is None:
            before[seq].add(figures)
        elif step_id in found[seq]:
            found[seq][step_id].variants.setdefault(variant, Counts()).add(figures)
    wanted = sorted(found) if sequence_id is None else [sequence_id]
    return [
        SequenceStats(
            seq,
            [
                StepStats(stats.step_id, stats.channel, stats.position, _variants(stats))
                for stats in sorted(found[seq].values(), key=lambda s: (s.position, s.step_id))
            ],
            before[seq],
        )
        for seq in wanted
    ]


def _variants(stats: StepStats) -> dict[str | None, Counts]:
    """Variants in order, None first; without the empty None of a step that has variants
    (touches planned before the variants were written, never sent)."""
    ordered = sorted(stats.variants.items(), key=lambda item: item[0] or "")
    if stats.has_variants and None in stats.variants and stats.variants[None].empty:
        ordered = [item for item in ordered if item[0] is not None]
    return dict(ordered)


def funnel_of(furthest: Mapping[str, int]) -> list[FunnelStage]:
    """The funnel from the number of prospects whose furthest stage is each stage."""
    reached = [sum(furthest.get(later, 0) for later in STAGES[index:]) for index in range(7)]
    return [
        FunnelStage(
            stage,
            reached[index],
            rate(reached[index + 1], reached[index]) if index + 1 < len(STAGES) else None,
        )
        for index, stage in enumerate(STAGES)
    ]


# --- reading the store -----------------------------------------------------------------------


def build_report(store: Store, *, now: datetime, sequence_id: str | None = None) -> Report:
    """The report of every sequence in the store, or of ``sequence_id`` only."""
    with store.reading() as connection:
        known = set(connection.execute(select(enrollments.c.sequence_id).distinct()).scalars())
        if sequence_id is not None and sequence_id not in known:
            listed = ", ".join(sorted(known)) or "none: nothing is enrolled yet"
            raise NotFoundError(f"no sequence {sequence_id!r} in the store (known: {listed})")
        steps = _step_rows(connection, sequence_id)
        engagement = _engagement(connection, sequence_id)
        signals = _signals(connection, sequence_id)
        furthest = _furthest_stages(connection, sequence_id)
    return Report(
        now,
        sequence_id,
        assemble(steps, engagement, signals, sequence_id),
        funnel_of(furthest),
    )


def _in_sequence(query: Select[Any], sequence_id: str | None) -> Select[Any]:
    return query if sequence_id is None else query.where(touchpoints.c.sequence_id == sequence_id)


def _step_rows(connection: Connection, sequence_id: str | None) -> list[StepRow]:
    went_out = touchpoints.c.status == "sent"
    query = _in_sequence(
        select(
            touchpoints.c.sequence_id,
            touchpoints.c.step_id,
            touchpoints.c.variant,
            touchpoints.c.channel,
            func.min(touchpoints.c.position),
            func.sum(case((went_out & (touchpoints.c.channel == Channel.EMAIL.value), 1), else_=0)),
            func.sum(case((went_out & touchpoints.c.channel.in_(TASK_CHANNELS), 1), else_=0)),
        )
        .where(touchpoints.c.channel != Channel.MEETING_CONFIRMATION.value)
        .group_by(
            touchpoints.c.sequence_id,
            touchpoints.c.step_id,
            touchpoints.c.variant,
            touchpoints.c.channel,
        ),
        sequence_id,
    )
    return [StepRow(*row) for row in connection.execute(query)]


def _engagement(connection: Connection, sequence_id: str | None) -> dict[StepKey, Counts]:
    found: dict[StepKey, Counts] = defaultdict(Counts)
    key_columns = (touchpoints.c.sequence_id, touchpoints.c.step_id, touchpoints.c.variant)
    for figure, kinds in ENGAGEMENT.items():
        query = _in_sequence(
            select(*key_columns, func.count(distinct(events.c.touchpoint_id)))
            .join(touchpoints, touchpoints.c.id == events.c.touchpoint_id)
            .where(
                events.c.kind.in_(kinds),
                touchpoints.c.status == "sent",
                touchpoints.c.channel == Channel.EMAIL.value,
            )
            .group_by(*key_columns),
            sequence_id,
        )
        for seq, step_id, variant, count in connection.execute(query):
            setattr(found[(seq, step_id, variant)], figure, count)
    return dict(found)


def _signals(connection: Connection, sequence_id: str | None) -> dict[StepKey, Counts]:
    involved = select(events.c.prospect_id).where(
        events.c.kind.in_(SIGNAL_KINDS), events.c.prospect_id.is_not(None)
    )
    if sequence_id is not None:
        enrolled = select(enrollments.c.prospect_id).where(enrollments.c.sequence_id == sequence_id)
        involved = involved.where(events.c.prospect_id.in_(enrolled))
    signals = [
        SignalEvent(row.id, SIGNAL_KINDS[row.kind], row.prospect_id, row.enrollment_id, row.at)
        for row in connection.execute(
            select(
                events.c.id,
                events.c.kind,
                events.c.prospect_id,
                events.c.enrollment_id,
                events.c.occurred_at.label("at"),
            ).where(events.c.kind.in_(SIGNAL_KINDS), events.c.prospect_id.in_(involved))
        )
    ]
    if not signals:
        return {}
    touches = [
        SentTouch(*row)
        for row in connection.execute(
            select(
                touchpoints.c.id,
                touchpoints.c.enrollment_id,
                enrollments.c.prospect_id,
                touchpoints.c.sequence_id,
                touchpoints.c.step_id,
                touchpoints.c.variant,
                touchpoints.c.position,
                touchpoints.c.sent_at,
                touchpoints.c.channel,
            )
            .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
            .where(
                enrollments.c.prospect_id.in_(involved),
                touchpoints.c.status == "sent",
                touchpoints.c.sent_at.is_not(None),
                touchpoints.c.channel.in_((Channel.EMAIL.value, *TASK_CHANNELS)),
            )
        )
    ]
    sequences = {
        row.id: row.sequence_id
        for row in connection.execute(
            select(enrollments.c.id, enrollments.c.sequence_id).where(
                enrollments.c.prospect_id.in_(involved)
            )
        )
    }
    attributed = attribute_signals(signals, touches, sequences)
    if sequence_id is None:
        return attributed
    return {key: counts for key, counts in attributed.items() if key[0] == sequence_id}


def _furthest_stages(connection: Connection, sequence_id: str | None) -> dict[str, int]:
    """How many prospects reached each stage as their furthest."""
    reached = union_all(
        select(prospects.c.id.label("prospect_id"), prospects.c.stage.label("stage")),
        select(stage_moves.c.prospect_id, stage_moves.c.to_stage),
        select(stage_moves.c.prospect_id, stage_moves.c.from_stage),
    ).subquery()
    rank = case({stage: index for index, stage in enumerate(STAGES)}, value=reached.c.stage)
    furthest = select(reached.c.prospect_id, func.max(rank).label("top")).group_by(
        reached.c.prospect_id
    )
    if sequence_id is not None:
        enrolled = select(enrollments.c.prospect_id).where(enrollments.c.sequence_id == sequence_id)
        furthest = furthest.where(reached.c.prospect_id.in_(enrolled))
    tops = furthest.subquery()
    rows = connection.execute(
        select(tops.c.top, func.count()).where(tops.c.top.is_not(None)).group_by(tops.c.top)
    )
    return {STAGES[top]: count for top, count in rows}
