"""The figures of the report: the counting rules on hand-made facts (pure), then on a
store with a known history (report_support.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from report_support import at, build_history
from store_support import T0

from relance.analytics import (
    SentTouch,
    SignalEvent,
    StepKey,
    StepRow,
    assemble,
    attribute_signals,
    build_report,
    funnel_of,
)
from relance.errors import NotFoundError
from relance.figures import Counts, FunnelStage, Report, SequenceStats, format_rate
from relance.report_html import FUNNEL_BARS, Tile, funnel_chart, headline, render_html
from relance.store import Store

FIGURES = ("sent", "delivered", "opened", "clicked", "replied", "booked", "bounced",
           "unsubscribed", "tasks")  # fmt: skip


def figures(counts: Counts) -> tuple[int, ...]:
    return tuple(getattr(counts, name) for name in FIGURES)


def touch(
    touchpoint_id: int, step_id: str, hours: float, *, enrollment_id: int = 1,
    prospect_id: int = 1, sequence_id: str = "s", variant: str | None = None,
) -> SentTouch:  # fmt: skip
    return SentTouch(
        touchpoint_id, enrollment_id, prospect_id, sequence_id, step_id, variant,
        touchpoint_id, T0 + timedelta(hours=hours),
        "call" if step_id.startswith("call") else "email",
    )  # fmt: skip


def signal(
    event_id: int, kind: str, hours: float, *, enrollment_id: int | None = 1, prospect_id: int = 1
) -> SignalEvent:
    return SignalEvent(event_id, kind, prospect_id, enrollment_id, T0 + timedelta(hours=hours))


# --- pure rules ---------------------------------------------------------------------------


def test_a_signal_goes_to_the_last_touch_sent_at_or_before_it() -> None:
    touches = [touch(1, "call-1", 0), touch(2, "email-1", 24, variant="B"), touch(3, "email-2", 72)]
    counts = attribute_signals(
        [signal(1, "replied", 23), signal(2, "booked", 24), signal(3, "unsubscribed", 80)],
        touches,
        {1: "s"},
    )
    assert {key: figures(value) for key, value in counts.items()} == {
        ("s", "call-1", None): (0, 0, 0, 0, 1, 0, 0, 0, 0),
        ("s", "email-1", "B"): (0, 0, 0, 0, 0, 1, 0, 0, 0),
        ("s", "email-2", None): (0, 0, 0, 0, 0, 0, 0, 1, 0),
    }


def test_bounces_and_unsubscribes_go_to_the_last_email_not_to_a_later_call() -> None:
    touches = [touch(1, "email-1", 0), touch(2, "call-1", 24), touch(3, "email-2", 48)]
    counts = attribute_signals(
        [
            signal(1, "bounced", 30),
            signal(2, "unsubscribed", 30),
            signal(3, "booked", 30),
            signal(4, "replied", 50),
        ],
        touches,
        {1: "s"},
    )
    assert {key: figures(value)[4:8] for key, value in counts.items()} == {
        ("s", "email-1", None): (0, 0, 1, 1),
        ("s", "call-1", None): (0, 1, 0, 0),
        ("s", "email-2", None): (1, 0, 0, 0),
    }
    only_calls = attribute_signals([signal(1, "bounced", 30)], [touch(2, "call-1", 24)], {1: "s"})
    assert {key: value.bounced for key, value in only_calls.items()} == {("s", None, None): 1}


def test_an_enrollment_counts_once_per_kind_at_its_first_event() -> None:
    touches = [touch(1, "email-1", 0), touch(2, "email-2", 48)]
    counts = attribute_signals(
        [signal(2, "replied", 50), signal(1, "replied", 10), signal(3, "replied", 60)],
        touches,
        {1: "s"},
    )
    assert {key: value.replied for key, value in counts.items()} == {("s", "email-1", None): 1}


def test_an_event_without_enrollment_goes_to_the_prospects_last_touch_in_any_sequence() -> None:
    touches = [
        touch(1, "welcome", 0, enrollment_id=1, sequence_id="nurture"),
        touch(2, "email-1", 5, enrollment_id=2, sequence_id="outbound"),
        touch(3, "other", 1, enrollment_id=3, prospect_id=2, sequence_id="outbound"),
    ]
    counts = attribute_signals(
        [signal(1, "replied", 6, enrollment_id=None), signal(2, "bounced", 3, enrollment_id=None)],
        touches,
        {1: "nurture", 2: "outbound", 3: "outbound"},
    )
    assert {key: figures(value)[4:8] for key, value in counts.items()} == {
        ("outbound", "email-1", None): (1, 0, 0, 0),
        ("nurture", "welcome", None): (0, 0, 1, 0),
    }


def test_a_signal_before_any_touch_counts_on_its_sequence_or_nowhere() -> None:
    counts = attribute_signals(
        [
            signal(1, "replied", 1, enrollment_id=7),  # enrolled, nothing sent yet
            signal(2, "replied", 1, enrollment_id=None, prospect_id=9),  # no touch, no enrollment
            signal(3, "bounced", 1, enrollment_id=8),  # an enrollment this report does not know
        ],
        [touch(1, "email-1", 2, enrollment_id=7)],
        {7: "s"},
    )
    assert {key: figures(value) for key, value in counts.items()} == {
        ("s", None, None): (0, 0, 0, 0, 1, 0, 0, 0, 0)
    }


def test_the_funnel_counts_a_prospect_in_every_stage_up_to_its_furthest() -> None:
    funnel = funnel_of({"suspect": 2, "lead": 4, "mql": 3, "meeting": 1})
    assert [(stage.stage, stage.prospects) for stage in funnel] == [
        ("suspect", 10), ("lead", 8), ("prospect", 4), ("mql", 4), ("sql", 1), ("meeting", 1),
        ("client", 0),
    ]  # fmt: skip
    assert [stage.conversion for stage in funnel] == [0.8, 0.5, 1.0, 0.25, 1.0, 0.0, None]
    assert funnel[3].label == "MQL"
    assert [stage.conversion for stage in funnel_of({})] == [None] * 7


def test_rates_have_their_denominators_and_none_without_one() -> None:
    counts = Counts(sent=20, delivered=16, opened=8, clicked=2, replied=3, booked=1, bounced=4)
    assert counts.rates() == {
        "delivered": 0.8, "opened": 0.5, "clicked": 0.125, "replied": 0.15, "booked": 0.05,
        "bounced": 0.2, "unsubscribed": 0.0,
    }  # fmt: skip
    assert set(Counts(tasks=3).rates().values()) == {None}
    assert [format_rate(v) for v in (None, 0.0, 0.025, 0.0999, 0.1, 2 / 3, 1.0)] == [
        "–", "0%", "2.5%", "10.0%", "10%", "67%", "100%",
    ]  # fmt: skip


def test_steps_come_in_sequence_order_with_their_variants() -> None:
    rows = [
        StepRow("s", "email-2", None, "email", 2, 3, 0),
        StepRow("s", "email-1", "B", "email", 1, 4, 0),
        StepRow("s", "email-1", None, "email", 1, 0, 0),  # planned before the variants existed
        StepRow("s", "email-1", "A", "email", 1, 5, 0),
        StepRow("s", "call", None, "call", 0, 0, 6),
    ]
    engagement: dict[StepKey, Counts] = {("s", "email-1", "A"): Counts(delivered=5)}
    signals: dict[StepKey, Counts] = {
        ("s", None, None): Counts(replied=1),
        ("s", "email-2", None): Counts(booked=1),
    }
    [sequence] = assemble(rows, engagement, signals)
    assert [(s.step_id, list(s.variants)) for s in sequence.steps] == [
        ("call", [None]), ("email-1", ["A", "B"]), ("email-2", [None]),
    ]  # fmt: skip
    assert figures(sequence.total) == (12, 5, 0, 0, 1, 1, 0, 0, 6)
    assert figures(sequence.before_first_touch) == (0, 0, 0, 0, 1, 0, 0, 0, 0)


# --- a store with a known history ------------------------------------------------------------


@pytest.fixture
def history_store(store: Store, tmp_path: Path) -> Store:
    build_history(store, tmp_path)
    return store


def rows_of(report_sequences: list[SequenceStats]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for sequence in report_sequences:
        for step in sequence.steps:
            for variant, counts in step.variants.items():
                rows.append((sequence.sequence_id, step.step_id, variant, *figures(counts)))
        rows.append((sequence.sequence_id, "before", None, *figures(sequence.before_first_touch)))
    return rows


def test_the_report_of_a_known_history(history_store: Store) -> None:
    report = build_report(history_store, now=at(days=6))
    assert rows_of(report.sequences) == [
        # sequence   step          variant sent del open click repl book bounce unsub tasks
        ("nurture", "welcome", None, 2, 1, 1, 0, 0, 0, 0, 0, 0),
        ("nurture", "before", None, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        ("outreach", "call-intro", None, 0, 0, 0, 0, 1, 0, 0, 0, 10),
        ("outreach", "email-1", "A", 5, 4, 2, 0, 1, 0, 1, 1, 0),
        ("outreach", "email-1", "B", 4, 4, 2, 2, 0, 1, 0, 0, 0),
        ("outreach", "email-2", None, 4, 2, 0, 0, 2, 0, 0, 1, 0),
        ("outreach", "before", None, 0, 0, 0, 0, 1, 0, 0, 0, 0),
    ]
    assert figures(report.total) == (15, 11, 5, 2, 5, 1, 1, 2, 10)
    assert [(stage.stage, stage.prospects) for stage in report.funnel] == [
        ("suspect", 13), ("lead", 12), ("prospect", 5), ("mql", 5), ("sql", 3), ("meeting", 2),
        ("client", 1),
    ]  # fmt: skip
    assert [stage.conversion for stage in report.funnel] == [
        12 / 13, 5 / 12, 1.0, 3 / 5, 2 / 3, 1 / 2, None,
    ]  # fmt: skip


def test_the_report_of_one_sequence_and_its_prospects(history_store: Store) -> None:
    report = build_report(history_store, now=at(days=6), sequence_id="outreach")
    assert [sequence.sequence_id for sequence in report.sequences] == ["outreach"]
    assert figures(report.total) == (13, 10, 4, 2, 5, 1, 1, 2, 10)
    assert [stage.prospects for stage in report.funnel] == [11, 11, 4, 4, 3, 2, 1]
    data = report.as_dict()
    assert data["sequence_id"] == "outreach"
    assert data["generated_at"] == "2026-03-08T08:00:00Z"
    email_1 = data["sequences"][0]["steps"][1]
    assert (email_1["step_id"], email_1["sent"], email_1["rates"]["delivered"]) == (
        "email-1", 9, 8 / 9,
    )  # fmt: skip
    assert [(v["variant"], v["clicked"], v["rates"]["clicked"]) for v in email_1["variants"]] == [
        ("A", 0, 0.0), ("B", 2, 0.5),
    ]  # fmt: skip
    assert data["funnel"][-2] == {"stage": "meeting", "prospects": 2, "conversion": 0.5}


def test_an_unknown_sequence_is_named_with_the_known_ones(history_store: Store) -> None:
    with pytest.raises(NotFoundError) as error:
        build_report(history_store, now=T0, sequence_id="outbound")
    assert str(error.value) == "no sequence 'outbound' in the store (known: nurture, outreach)"


def test_an_empty_store_gives_an_empty_report(store: Store) -> None:
    report = build_report(store, now=T0)
    assert report.sequences == []
    stages = ("suspect", "lead", "prospect", "mql", "sql", "meeting", "client")
    assert report.funnel == [FunnelStage(stage, 0, None) for stage in stages]
    with pytest.raises(NotFoundError, match=r"known: none: nothing is enrolled yet"):
        build_report(store, now=T0, sequence_id="outreach")
    assert "Nothing enrolled yet" in render_html(report)


# --- the HTML page ----------------------------------------------------------------------------


def test_funnel_bars_are_as_wide_as_their_stage_and_bands_carry_the_conversion() -> None:
    chart = funnel_chart(funnel_of({"lead": 6, "sql": 3, "client": 1}))
    assert [round(bar.width) for bar in chart.bars] == [FUNNEL_BARS, 620, 248, 248, 248, 62, 62]
    assert [bar.count for bar in chart.bars] == ["10", "10", "4", "4", "4", "1", "1"]
    assert [band.conversion for band in chart.bands] == ["100%", "40%", "100%", "100%", "25%",
                                                          "100%"]  # fmt: skip
    tiny = funnel_chart(funnel_of({"lead": 1000, "client": 1}))
    assert [bar.width for bar in tiny.bars][-3:] == [8, 8, 8]  # one client still shows
    empty = funnel_chart(funnel_of({"lead": 3}))
    assert [bar.width for bar in empty.bars] == [FUNNEL_BARS, FUNNEL_BARS, 0, 0, 0, 0, 0]
    assert [band.conversion for band in empty.bands] == ["100%", "0%"]  # nothing flows on


def test_the_page_is_self_contained_and_shows_every_figure(history_store: Store) -> None:
    page = render_html(build_report(history_store, now=at(days=6)))
    for outside in ("http:", "https:", "//", "<script", "@import", "url(", "<link", "<img"):
        assert outside not in page.replace("<!doctype html>", ""), outside
    assert page.count('<g class="stage"') == 7
    assert '<g class="stage" data-stage="Client" data-prospects="1">' in page
    assert "↓ 42%" in page  # lead → prospect
    assert '<section class="card sequence" id="sequence-outreach">' in page
    assert "Variant A" in page and "Variant B" in page
    assert "<td>before the first touch</td>" in page


def test_without_any_provider_event_delivery_is_not_tracked_rather_than_zero() -> None:
    sequences = assemble([StepRow("s", "email-1", None, "email", 0, 5, 0)], {}, {})
    tiles = headline(Report(T0, None, sequences, funnel_of({"lead": 5})))
    assert tiles[:2] == [
        Tile("E-mails sent", "5", "+ 0 SDR tasks"),
        Tile("Delivered", "–", "no delivery events received"),
    ]
    sequences[0].steps[0].variants[None].delivered = 4
    tiles = headline(Report(T0, None, sequences, funnel_of({"lead": 5})))
    assert tiles[1] == Tile("Delivered", "80%", "4 e-mails")
