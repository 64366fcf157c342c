"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script.

Nothing is fetched to view it (no fonts, images or scripts from elsewhere): it opens
offline, attaches to an e-mail and prints. The charts are drawn here, server-side, as
plain shapes that the Jinja2 template (``report_templates/report.html.j2``) places:

- the lifecycle funnel, one centred bar per stage (width: prospects), the conversion
  between consecutive stages on the band that joins them;
- per step of each sequence, one bar per figure (sent, delivered, opened, clicked,
  replied, booked, bounced, unsubscribed; tasks for calls and reminders), one bar per
  A/B variant side by side, all on the scale of the sequence's busiest step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import jinja2

from relance.figures import Counts, FunnelStage, Report, SequenceStats, StepStats, format_rate
from relance.spec import Channel

TEMPLATES = Path(__file__).parent / "report_templates"

EMAIL_FIGURES = (
    ("sent", "Sent", None),
    ("delivered", "Delivered", "of sent"),
    ("opened", "Opened", "of delivered"),
    ("clicked", "Clicked", "of delivered"),
    ("replied", "Replied", "of sent"),
    ("booked", "Booked", "of sent"),
    ("bounced", "Bounced", "of sent"),
    ("unsubscribed", "Unsubscribed", "of sent"),
)
"""Figure, label, what its rate is a share of (None: no rate)."""
TASK_FIGURES = (
    ("tasks", "Tasks created", None),
    ("replied", "Replied", None),
    ("booked", "Booked", None),
)

FIGURE_COLOURS = {
    "sent": "#64748b",
    "tasks": "#64748b",
    "delivered": "#7dd3fc",
    "opened": "#38bdf8",
    "clicked": "#0284c7",
    "replied": "#34d399",
    "booked": "#059669",
    "bounced": "#fb923c",
    "unsubscribed": "#f43f5e",
}
VARIANT_COLOURS = ("#4f46e5", "#f59e0b", "#14b8a6", "#db2777", "#65a30d", "#7c3aed")
STAGE_COLOURS = ("#1e3a8a", "#1d4ed8", "#2563eb", "#0891b2", "#0d9488", "#047857", "#15803d")

# Funnel geometry (SVG user units = CSS pixels at the page's width)
FUNNEL_WIDTH = 1040
FUNNEL_LABELS = 150
FUNNEL_BARS = 620
FUNNEL_BAR_HEIGHT = 44
FUNNEL_GAP = 30
FUNNEL_MIN_BAR = 8

# Step chart geometry
STEP_WIDTH = 480
STEP_LABELS = 112
STEP_BARS = 236
STEP_BAR_HEIGHT = 13
STEP_ROW_GAP = 9


@dataclass(frozen=True)
class FunnelBar:
    label: str
    count: str
    share: str
    """Prospects of this stage as a share of the first stage's."""
    x: float
    y: float
    width: float
    colour: str


@dataclass(frozen=True)
class FunnelBand:
    """The band between two stages, with the conversion from the first to the second."""

    points: str
    conversion: str
    x: float
    y: float


@dataclass(frozen=True)
class FunnelChart:
    width: int
    height: int
    bars: list[FunnelBar]
    bands: list[FunnelBand]
    label_x: int = FUNNEL_LABELS
    value_x: int = FUNNEL_LABELS + 20 + FUNNEL_BARS + 28
    bar_height: int = FUNNEL_BAR_HEIGHT


def funnel_chart(funnel: list[FunnelStage]) -> FunnelChart:
    top = max((stage.prospects for stage in funnel), default=0)
    centre = FUNNEL_LABELS + 20 + FUNNEL_BARS / 2
    bars: list[FunnelBar] = []
    for index, stage in enumerate(funnel):
        width = FUNNEL_BARS * stage.prospects / top if top else 0
        width = max(width, FUNNEL_MIN_BAR) if stage.prospects else 0.0
        bars.append(
            FunnelBar(
                stage.label,
                f"{stage.prospects:,}",
                format_rate(stage.prospects / top if top else None),
                centre - width / 2,
                index * (FUNNEL_BAR_HEIGHT + FUNNEL_GAP),
                width,
                STAGE_COLOURS[index % len(STAGE_COLOURS)],
            )
        )
    bands = []
    for upper, lower, stage in zip(bars, bars[1:], funnel, strict=False):
        if stage.conversion is None:  # nobody at this stage: nothing flows on
            continue
        top_y = upper.y + FUNNEL_BAR_HEIGHT
        bottom_y = lower.y
        points = (
            f"{upper.x:.1f},{top_y} {upper.x + upper.width:.1f},{top_y} "
            f"{lower.x + lower.width:.1f},{bottom_y} {lower.x:.1f},{bottom_y}"
        )
        bands.append(
            FunnelBand(points, format_rate(stage.conversion), centre, (top_y + bottom_y) / 2)
        )
    height = len(funnel) * (FUNNEL_BAR_HEIGHT + FUNNEL_GAP) - FUNNEL_GAP
    return FunnelChart(FUNNEL_WIDTH, max(height, 0), bars, bands)


@dataclass(frozen=True)
class Bar:
    y: float
    width: float
    colour: str
    text: str
    variant: str | None


@dataclass(frozen=True)
class FigureRow:
    label: str
    y: float
    """Middle of the row's bars."""
    bars: list[Bar]


@dataclass(frozen=True)
class StepChart:
    step_id: str
    channel: str
    width: int
    height: int
    rows: list[FigureRow]
    legend: list[tuple[str, str]]
    """(variant, colour) when the step has variants."""
    label_x: int = STEP_LABELS - 10
    bar_x: int = STEP_LABELS
    bar_height: int = STEP_BAR_HEIGHT


def step_chart(step: StepStats, scale: int) -> StepChart:
    """The bars of one step; ``scale`` is the count that fills a whole bar."""
    figures = EMAIL_FIGURES if step.channel == Channel.EMAIL.value else TASK_FIGURES
    variants = list(step.variants.items()) if step.has_variants else [(None, step.total)]
    rows: list[FigureRow] = []
    y = 0.0
    for name, label, share_of in figures:
        bars: list[Bar] = []
        for index, (variant, counts) in enumerate(variants):
            value = getattr(counts, name)
            colour = (
                VARIANT_COLOURS[index % len(VARIANT_COLOURS)] if step.has_variants
                else FIGURE_COLOURS[name]
            )  # fmt: skip
            rate = counts.rates().get(name) if share_of else None
            text = f"{value:,}" + (f" · {format_rate(rate)}" if rate is not None else "")
            width = STEP_BARS * value / scale if scale else 0
            bars.append(Bar(y + index * STEP_BAR_HEIGHT, max(width, 2), colour, text, variant))
        rows.append(FigureRow(label, y + len(bars) * STEP_BAR_HEIGHT / 2, bars))
        y += len(bars) * STEP_BAR_HEIGHT + STEP_ROW_GAP
    legend = [
        (str(variant), VARIANT_COLOURS[index % len(VARIANT_COLOURS)])
        for index, (variant, _) in enumerate(variants)
        if step.has_variants
    ]
    return StepChart(step.step_id, step.channel, STEP_WIDTH, int(y - STEP_ROW_GAP), rows, legend)


def sequence_charts(sequence: SequenceStats) -> list[StepChart]:
    scale = max(
        (max(c.sent, c.tasks) for step in sequence.steps for c in step.variants.values()),
        default=0,
    )
    return [step_chart(step, scale) for step in sequence.steps]


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    note: str


def headline(report: Report) -> list[Tile]:
    total = report.total
    rates = total.rates()
    top = report.funnel[0].prospects if report.funnel else 0
    clients = report.funnel[-1].prospects if report.funnel else 0
    delivered = Tile("Delivered", format_rate(rates["delivered"]), f"{total.delivered:,} e-mails")
    if total.sent and not total.delivered:  # no provider events at all: not tracked, not 0%
        delivered = Tile("Delivered", "–", "no delivery events received")
    booked = format_rate(rates["booked"])
    return [
        Tile("E-mails sent", f"{total.sent:,}", f"+ {total.tasks:,} SDR tasks"),
        delivered,
        Tile("Opened", format_rate(rates["opened"]), f"{total.opened:,} of delivered"),
        Tile("Replied", format_rate(rates["replied"]), f"{total.replied:,} prospects replied"),
        Tile("Meetings booked", f"{total.booked:,}", f"{booked} of e-mails sent"),
        Tile("Clients", f"{clients:,}", f"of {top:,} in the funnel"),
    ]


def table_cells(counts: Counts) -> list[tuple[str, str]]:
    """(count, rate) per table column, in the order of EMAIL_FIGURES then tasks."""
    rates = counts.rates()
    cells = [
        (f"{getattr(counts, name):,}", format_rate(rates[name]) if share_of else "")
        for name, _, share_of in EMAIL_FIGURES
    ]
    return [*cells, (f"{counts.tasks:,}", "")]


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        table_cells=table_cells, format_rate=format_rate, figure_columns=EMAIL_FIGURES
    )
    return environment


def render_html(report: Report) -> str:
    """The whole page, as text."""
    scope = f"sequence {report.sequence_id}" if report.sequence_id else "all sequences"
    generated = report.generated_at.astimezone(UTC)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            scope=scope,
            generated=f"{generated:%a %d %b %Y, %H:%M} UTC",
            tiles=headline(report),
            funnel=funnel_chart(report.funnel),
            sequences=[(sequence, sequence_charts(sequence)) for sequence in report.sequences],
        )
    )
