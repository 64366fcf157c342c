"""Every shipped sequence and template: loads, checks clean, and renders in every language."""

from __future__ import annotations

from pathlib import Path

import pytest

from relance.catalog import resolve_sequence
from relance.prospect import SAMPLE_PROSPECT
from relance.rendering import (
    Sender,
    check_templates,
    render_step,
    sample_meeting,
    sample_prospect,
    template_environment,
    template_name,
)
from relance.settings import Settings
from relance.spec import Channel, Sequence, WaitUnit
from relance.template_usage import TemplateUsage

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = Settings(home=ROOT, sequences_dir=None, templates_dir=None)
SEQUENCE_FILES = sorted((ROOT / "sequences").glob("*.yaml"))
SEQUENCE_IDS = [path.stem for path in SEQUENCE_FILES]
UNSUBSCRIBE = "https://example.com/u/shipped-content-test"
SENDER = Sender(name="Camille Durand", email="camille@example.com", company="Exemple SAS")
SCHEMA_LINE = "# yaml-language-server: $schema=../schema/sequence.schema.json"


def load(sequence_id: str) -> Sequence:
    return resolve_sequence(sequence_id, SETTINGS)


def test_the_three_shipped_sequences_are_there() -> None:
    assert {"outbound-2w", "nurture-warm", "nurture-cold-12m"} <= set(SEQUENCE_IDS)


@pytest.mark.parametrize("path", SEQUENCE_FILES, ids=SEQUENCE_IDS)
def test_each_file_names_the_schema_on_its_first_line(path: Path) -> None:
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE


@pytest.mark.parametrize("sequence_id", SEQUENCE_IDS)
def test_each_sequence_is_french_and_english_and_checks_clean(sequence_id: str) -> None:
    sequence = load(sequence_id)
    assert sequence.all_locales == ["fr", "en"]
    assert check_templates(sequence, SETTINGS.templates_path) == []


@pytest.mark.parametrize("sequence_id", SEQUENCE_IDS)
def test_every_step_renders_in_every_locale_for_the_sample_prospect(sequence_id: str) -> None:
    sequence = load(sequence_id)
    env = template_environment(SETTINGS.templates_path)
    prospect = sample_prospect(sequence)
    for step in sequence.steps:
        for locale in sequence.all_locales:
            rendered = render_step(
                env,
                sequence,
                step,
                prospect,
                sender=SENDER,
                meeting=sample_meeting("Europe/Paris"),
                unsubscribe_url=UNSUBSCRIBE,
                locale=locale,
            )
            where = f"{sequence_id}/{step.id}/{locale}"
            if step.channel in (Channel.EMAIL, Channel.MEETING_CONFIRMATION):
                assert rendered.subject, where
                assert len(rendered.subject) <= 78, where
                assert rendered.html is not None and rendered.text is not None, where
                assert f'href="{UNSUBSCRIBE}"' in rendered.html, where
                assert UNSUBSCRIBE in rendered.text, where
                assert f'<html lang="{locale}">' in rendered.html, where
                assert "http" not in rendered.html.replace("https://", ""), where
            if rendered.script is not None:
                _heading, who, phone = rendered.script.splitlines()[:3]
                assert who.startswith("Claire Martin, Directrice"), where
                assert phone.startswith(("Phone: +33", "Téléphone : +33")), where
            if step.resource is not None:
                assert step.resource.url in (rendered.text or ""), where
            for text in rendered.parts().values():
                assert "\n\n\n" not in text, where
                assert text.strip(), where


@pytest.mark.parametrize("sequence_id", SEQUENCE_IDS)
def test_steps_render_for_a_bare_prospect(sequence_id: str) -> None:
    """Only an email address and the declared columns, all empty: nothing breaks."""
    sequence = load(sequence_id)
    bare = SAMPLE_PROSPECT.model_validate(
        {"email": "x@example.com", "fields": dict.fromkeys(sequence.prospect_fields, "")}
    )
    env = template_environment(SETTINGS.templates_path)
    for step in sequence.steps:
        for locale in sequence.all_locales:
            rendered = render_step(
                env,
                sequence,
                step,
                bare,
                sender=SENDER,
                meeting=sample_meeting("Europe/Paris"),
                locale=locale,
            )
            for text in rendered.parts().values():
                assert " ," not in text and "None" not in text, f"{step.id}/{locale}"


def test_outbound_is_a_two_week_multichannel_sequence() -> None:
    sequence = load("outbound-2w")
    channels = [step.channel for step in sequence.timed_steps]
    assert channels.count(Channel.CALL) + channels.count(Channel.REMINDER) >= 3
    assert channels.count(Channel.EMAIL) >= 3
    assert Channel.REMINDER in channels
    assert sum(1 for step in sequence.timed_steps if step.resource) >= 2
    waits = [step.wait for step in sequence.timed_steps]
    assert all(wait.unit in (WaitUnit.BUSINESS_DAYS, WaitUnit.DAYS) for wait in waits)
    assert 8 <= sum(wait.amount for wait in waits) <= 12
    confirmation = sequence.steps[-1]
    assert confirmation.channel is Channel.MEETING_CONFIRMATION
    assert confirmation.remind_before is not None
    assert sequence.cadence.reference_deal_value == 15000


def test_warm_nurturing_sends_weekly_content_then_a_personal_relance() -> None:
    sequence = load("nurture-warm")
    content = [step for step in sequence.timed_steps if step.resource is not None]
    assert 4 <= len(content) <= 6
    days = 0.0
    for step in sequence.timed_steps:
        days += step.wait.amount * (7 / 5 if step.wait.unit is WaitUnit.BUSINESS_DAYS else 1)
        if step.id == "owner-email":
            assert step.resource is None
            assert 28 <= days <= 32
    assert any(step.channel is Channel.CALL for step in sequence.timed_steps)
    assert sequence.steps[-1].channel is Channel.MEETING_CONFIRMATION


def test_cold_nurturing_spans_a_year_with_calls_at_six_and_twelve_months() -> None:
    sequence = load("nurture-cold-12m")
    weeks = 0.0
    call_weeks = []
    for step in sequence.timed_steps:
        weeks += step.wait.amount / 7
        if step.channel is Channel.CALL:
            call_weeks.append(weeks)
    assert 48 <= weeks <= 56
    assert len(call_weeks) == 2
    assert 24 <= call_weeks[0] <= 28 and 48 <= call_weeks[1] <= 56
    assert sequence.steps[-1].channel is Channel.MEETING_CONFIRMATION


def test_every_template_file_is_used_by_a_shipped_sequence() -> None:
    env = template_environment(SETTINGS.templates_path)
    used: set[str] = set()
    for sequence_id in SEQUENCE_IDS:
        sequence = load(sequence_id)
        for step in sequence.steps:
            named = [step.templates.parts(), *(v.templates.parts() for v in step.variants)]
            for path in (path for parts in named for path in parts.values()):
                for locale in sequence.all_locales:
                    usage = TemplateUsage(env, locale)
                    usage.scan(template_name(path, locale))
                    used |= usage.scanned
    assert sorted(set(env.list_templates()) - used) == []
