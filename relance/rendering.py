"""Rendering step templates with Jinja2, and checking them before anything is sent.

Templates live under ``templates/`` (``Settings.templates_path``); a step names one file
per part (subject, html, text, script, reminder), relative to that directory, where
``{locale}`` stands for the language the prospect is written to: the prospect's own
locale when the sequence has templates in it (``sequence.all_locales``), else the
sequence's default ``locale``.

The render context is a contract: every channel renders with exactly these names.

    prospect         Prospect.context(): email, first_name, last_name, company, title,
                     phone, deal_value, cycle_days, timezone, country, locale, owner,
                     full_name, and every custom field (CSV column) by its name.
    sender           {"name", "email", "company"}: Settings.sender_name, sender_email,
                     company_name (see ``Sender.from_settings``).
    sequence         {"id", "name"}
    step             {"id", "channel", "objective"}
    resource         {"title", "url"} of the step's resource, or None.
    meeting          None, except on meeting_confirmation steps:
                     {"starts_at", "ends_at"} as aware datetimes in the prospect's zone,
                     "duration_minutes", "timezone" (IANA name), "location", "join_url"
                     (both may be "" / None), and which mail this is: "reminder",
                     "rescheduled" (the meeting moved), "cancelled" (booleans).
    unsubscribe_url  The link every email carries.
    locale           The language being rendered ("fr", "en"), used by the filters.

Filters for marketers (``locale`` aware): ``money`` ("25 000 €" in French, "€25,000" in
English; ``money("USD")`` for another currency) and ``date_local`` (``"long"``,
``"date"``, ``"day"`` or ``"time"``: "jeudi 14 mars 2030 à 10h00" / "Thursday,
14 March 2030 at 10:00"; ``date_local("time", "America/New_York")`` converts first).

Templates render in Jinja's immutable sandbox (``ImmutableSandboxedEnvironment``): they
see the names above, Jinja's built-in filters and tests, ``money`` and ``date_local``, and
nothing else (none of Jinja's default globals such as ``range``, ``lipsum`` or ``cycler``);
attributes starting with ``_`` are refused, and so is any template file that resolves
outside the templates directory (a symbolic link pointing elsewhere). ``relance validate``
reports such constructs with their file and line (``relance.template_usage``).

Undefined names are errors (StrictUndefined); HTML templates (``*.html.j2``) are
autoescaped, the others are plain text. ``check_templates`` finds what ``validate``
reports about templates, with ``relance.template_usage`` reading their syntax trees.
"""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from relance.diagnostics import Finding, Loc
from relance.errors import InputError, RenderError
from relance.formatting import format_date, format_money
from relance.prospect import SAMPLE_PROSPECT, STANDARD_FIELDS, Prospect
from relance.settings import Settings
from relance.spec import Channel, Sequence, Step
from relance.template_usage import Issue, OutsideTemplatesError, TemplateUsage, outside_message

PREVIEW_UNSUBSCRIBE_URL = "https://example.com/unsubscribe/preview"
"""The unsubscribe link previews and checks render with."""


@dataclass(frozen=True)
class Sender:
    """Who the messages come from, as templates see it."""

    name: str
    email: str
    company: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Sender:
        return cls(
            name=settings.sender_name, email=settings.sender_email, company=settings.company_name
        )


@dataclass(frozen=True)
class Meeting:
    """A booked meeting. ``timezone`` is the prospect's zone, in which times are shown."""

    starts_at: datetime
    ends_at: datetime
    timezone: str
    location: str = ""
    join_url: str | None = None
    reminder: bool = False
    """True for the reminder sent before the meeting, False for the confirmation."""
    rescheduled: bool = False
    """True for the updated invitation sent when the meeting moved."""
    cancelled: bool = False
    """True for the notice that the meeting is cancelled (its invitation withdrawn)."""

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("expected aware meeting times, got naive ones")


class RenderContext(TypedDict):
    """The names every template can use (see the module docstring)."""

    prospect: dict[str, Any]
    sender: dict[str, str]
    sequence: dict[str, str]
    step: dict[str, str]
    resource: dict[str, str] | None
    meeting: dict[str, Any] | None
    unsubscribe_url: str
    locale: str


CONTEXT_NAMES: frozenset[str] = frozenset(RenderContext.__annotations__)


@dataclass(frozen=True)
class RenderedStep:
    """What one step says to one prospect: only the parts the step has are set."""

    locale: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    script: str | None = None
    reminder: str | None = None

    def parts(self) -> dict[str, str]:
        """The rendered parts, in display order."""
        return {
            f.name: value
            for f in fields(self)
            if f.name != "locale" and (value := getattr(self, f.name)) is not None
        }


# --- filters -------------------------------------------------------------------------


def _render_locale(context: Any, locale: str | None) -> str:
    return locale or str(context.get("locale") or "en")


@jinja2.pass_context
def _money_filter(
    context: Any, value: Any, currency: str = "EUR", locale: str | None = None
) -> str:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"money expected a number, got {value!r}") from None
    return format_money(amount, _render_locale(context, locale), currency)


@jinja2.pass_context
def _date_filter(context: Any, value: Any, style: str = "long", zone: str | None = None) -> str:
    if not isinstance(value, date):
        raise ValueError(f"date_local expected a date or datetime, got {value!r}")
    if zone is not None and isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(zone))
    return format_date(value, _render_locale(context, None), style)


# --- environment ---------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html.j2")


def template_environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja2 environment for a templates directory, built once per directory."""
    return _environment(templates_dir.resolve())


class ContainedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that refuses files whose real path is outside its directories,
    and does not list them."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
        source, filename, uptodate = super().get_source(environment, template)
        if not _contained(Path(filename), self.searchpath):
            raise OutsideTemplatesError(template)
        return source, filename, uptodate

    def list_templates(self) -> list[str]:
        return [
            name
            for name in super().list_templates()
            if any(_contained(Path(root) / name, [root]) for root in self.searchpath)
        ]


def _contained(path: Path, roots: list[str]) -> bool:
    real = path.resolve()
    return any(real.is_relative_to(Path(root).resolve()) for root in roots)


@functools.cache
def _environment(templates_dir: Path) -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        loader=ContainedLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace: not documented
    env.filters["money"] = _money_filter
    env.filters["date_local"] = _date_filter
    return env


# --- context and rendering -----------------------------------------------------------


def template_locale(sequence: Sequence, prospect: Prospect) -> str:
    """The prospect's locale when the sequence has templates in it, else the first of the
    sequence's ``fallback_locales``, else its default ``locale``."""
    return choose_locale(sequence, prospect.locale)[0]


def choose_locale(sequence: Sequence, wanted: str | None) -> tuple[str, str]:
    """The language written to a prospect whose language is ``wanted``, and why."""
    if wanted in sequence.all_locales:
        return str(wanted), f"the prospect's language ({wanted})"
    if wanted is None:
        return (
            sequence.locale,
            f"no language known for the prospect: the default ({sequence.locale})",
        )
    if sequence.fallback_locales:
        chosen = sequence.fallback_locales[0]
        return chosen, (
            f"the prospect's language ({wanted}) has no templates: first fallback ({chosen})"
        )
    return sequence.locale, (
        f"the prospect's language ({wanted}) has no templates and the sequence has no "
        f"fallback_locales: the default ({sequence.locale})"
    )


def template_name(path: str, locale: str) -> str:
    """A step's template path with ``{locale}`` filled in: "a/{locale}/x.j2" -> "a/fr/x.j2"."""
    return path.replace("{locale}", locale)


def meeting_context(meeting: Meeting) -> dict[str, Any]:
    """What templates see as ``meeting``: times shown in the prospect's zone."""
    zone = ZoneInfo(meeting.timezone)
    starts_at = meeting.starts_at.astimezone(zone)
    ends_at = meeting.ends_at.astimezone(zone)
    return {
        "starts_at": starts_at,
        "ends_at": ends_at,
        "duration_minutes": round((ends_at - starts_at).total_seconds() / 60),
        "timezone": meeting.timezone,
        "location": meeting.location,
        "join_url": meeting.join_url,
        "reminder": meeting.reminder,
        "rescheduled": meeting.rescheduled,
        "cancelled": meeting.cancelled,
    }


def render_context(
    sequence: Sequence,
    step: Step,
    prospect: Prospect,
    *,
    sender: Sender,
    locale: str,
    meeting: Meeting | None = None,
    unsubscribe_url: str = PREVIEW_UNSUBSCRIBE_URL,
) -> RenderContext:
    """The names a step's templates render with; ``meeting`` only on meeting_confirmation."""
    resource = step.resource
    person = prospect.context()
    for name, default in sequence.field_defaults.items():
        if not person.get(name):
            person[name] = default
    return {
        "prospect": person,
        "sender": {"name": sender.name, "email": sender.email, "company": sender.company},
        "sequence": {"id": sequence.id, "name": sequence.name},
        "step": {"id": step.id, "channel": step.channel.value, "objective": step.objective},
        "resource": None if resource is None else {"title": resource.title, "url": resource.url},
        "meeting": (
            meeting_context(meeting)
            if meeting is not None and step.channel is Channel.MEETING_CONFIRMATION
            else None
        ),
        "unsubscribe_url": unsubscribe_url,
        "locale": locale,
    }


def render_step(
    env: jinja2.Environment,
    sequence: Sequence,
    step: Step,
    prospect: Prospect,
    *,
    sender: Sender,
    meeting: Meeting | None = None,
    unsubscribe_url: str = PREVIEW_UNSUBSCRIBE_URL,
    locale: str | None = None,
    variant: str | None = None,
) -> RenderedStep:
    """Render every part of ``step`` for ``prospect``; RenderError says which file failed.

    ``variant`` names one of the step's A/B variants, whose templates replace the step's
    (None: the step's own templates).
    """
    try:
        templates = step.templates_for(variant)
    except KeyError:
        known = ", ".join(v.id for v in step.variants) or "none"
        raise RenderError(
            f"no variant {variant!r} in step {step.id} of {sequence.id} (variants: {known})"
        ) from None
    if locale is None:
        locale = template_locale(sequence, prospect)
    elif locale not in sequence.all_locales:
        raise InputError(
            f"no locale {locale!r} in sequence {sequence.id} "
            f"(locales: {', '.join(sequence.all_locales)})"
        )
    context = render_context(
        sequence,
        step,
        prospect,
        sender=sender,
        locale=locale,
        meeting=meeting,
        unsubscribe_url=unsubscribe_url,
    )
    rendered = {
        part: render_template(env, template_name(path, locale), context)
        for part, path in templates.parts().items()
    }
    if "subject" in rendered:
        rendered["subject"] = " ".join(rendered["subject"].split())
    return RenderedStep(locale=locale, **rendered)


def render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Render one template file; HTML is stripped, text keeps at most one blank line."""
    try:
        output = env.get_template(name).render(context)
    except OutsideTemplatesError as error:
        raise RenderError(outside_message(str(error.name))) from None
    except jinja2.TemplateNotFound as error:
        raise RenderError(f"expected a template file at templates/{error.name}, got none") from None
    except jinja2.TemplateSyntaxError as error:
        where = f"templates/{error.name or name}:{error.lineno}"
        raise RenderError(f"{where}: {error.message}") from None
    except SecurityError as error:
        raise RenderError(
            f"{_error_place(error, env, name)}: refused by the sandbox: {error}"
        ) from None
    except (jinja2.TemplateError, ValueError, TypeError, ArithmeticError) as error:
        raise RenderError(f"{_error_place(error, env, name)}: {error}") from None
    if _autoescape(name):
        return output.strip()
    return re.sub(r"\n{3,}", "\n\n", output).strip() + "\n"


def _error_place(error: Exception, env: jinja2.Environment, name: str) -> str:
    """templates/<file>:<line> of the innermost template frame of a render error."""
    loader = env.loader
    roots = (
        [Path(p).resolve() for p in loader.searchpath]
        if isinstance(loader, jinja2.FileSystemLoader)
        else []
    )
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        for root in roots:
            if path.is_relative_to(root):
                return f"templates/{path.relative_to(root).as_posix()}:{frame.lineno}"
    return f"templates/{name}"


# --- checking ------------------------------------------------------------------------

SAMPLE_MEETING_START = datetime(2030, 3, 14, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


def sample_meeting(zone: str) -> Meeting:
    """The 30-minute meeting previews and checks render meeting confirmations with."""
    return Meeting(
        starts_at=SAMPLE_MEETING_START,
        ends_at=SAMPLE_MEETING_START + timedelta(minutes=30),
        timezone=zone,
        join_url="https://meet.example.com/relance-demo",
    )


SAMPLE_SENDER = Sender(name="Camille Durand", email="camille@example.com", company="Exemple SAS")
"""The sender checks render with."""


def sample_prospect(sequence: Sequence, base: Prospect = SAMPLE_PROSPECT) -> Prospect:
    """``base`` with every custom field the sequence declares filled with "[name]"."""
    missing = {name: f"[{name}]" for name in sequence.field_names if name not in base.fields}
    return base.model_copy(update={"fields": {**base.fields, **missing}}) if missing else base


def check_templates(sequence: Sequence, templates_dir: Path) -> list[Finding]:
    """Every problem in the templates of ``sequence``, located at the step part naming them.

    For each step, part and locale, and each part an A/B variant writes instead (located
    at the variant): the file exists and parses (and so do the templates it includes,
    imports or extends); every ``prospect.<field>`` it uses is a standard field or declared
    in ``prospect_fields``; it uses no name outside the render context (``meeting`` only on
    meeting_confirmation steps); and it renders for the sample prospect, so that nothing
    else is undefined.
    """
    env = template_environment(templates_dir)
    findings: list[Finding] = []
    for index, step in enumerate(sequence.steps):
        named: list[tuple[Loc, dict[str, str]]] = [
            (("steps", index, "templates"), step.templates.parts()),
            *(
                (("steps", index, "variants", number, "templates"), variant.templates.parts())
                for number, variant in enumerate(step.variants)
            ),
        ]
        for where, parts in named:
            for part, path in parts.items():
                loc: Loc = (*where, part)
                for locale in sequence.all_locales:
                    name = template_name(path, locale)
                    issues = _check_template(env, sequence, step, name, locale)
                    findings.extend(Finding(loc, message, hint) for message, hint in issues)
    return list(dict.fromkeys(findings))


def _check_template(
    env: jinja2.Environment, sequence: Sequence, step: Step, name: str, locale: str
) -> list[Issue]:
    usage = TemplateUsage(env, locale)
    usage.scan(name)
    allowed = {*CONTEXT_NAMES, *env.globals}
    if step.channel is not Channel.MEETING_CONFIRMATION:
        allowed.discard("meeting")
    known_fields = {*STANDARD_FIELDS, "full_name", *sequence.field_names}
    optional = [f.name for f in sequence.fields if f.optional and f.default is None]
    issues = [
        *usage.issues,
        *usage.field_issues(known_fields),
        *(
            (
                f"template templates/{usage.unguarded[name]} uses prospect.{name} unguarded, "
                f"but {name} is optional with no default",
                f"wrap it in {{% if prospect.{name} %}}...{{% endif %}}, or give {name} a "
                "default under prospect_fields",
            )
            for name in optional
            if name in usage.unguarded
        ),
        *usage.name_issues(allowed, CONTEXT_NAMES, step.channel.value),
    ]
    if issues:
        return issues
    prospect = sample_prospect(sequence)
    context = render_context(
        sequence,
        step,
        prospect,
        sender=SAMPLE_SENDER,
        locale=locale,
        meeting=sample_meeting(prospect.timezone or sequence.timezone),
    )
    try:
        render_template(env, name, context)
    except RenderError as error:
        return [(f"template templates/{name} does not render: {error}", _render_hint(usage, step))]
    return []


def _render_hint(usage: TemplateUsage, step: Step) -> str | None:
    if step.resource is None and usage.attributes.get("resource"):
        return (
            f"step {step.id} has no resource: add one (title, url) to the step, "
            "or wrap its use in {% if resource %}...{% endif %}"
        )
    return None
