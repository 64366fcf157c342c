"""Rendering step templates, the marketer filters, and the template check of ``validate``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from relance.diagnostics import Finding
from relance.errors import InputError, RenderError
from relance.formatting import format_date, format_money
from relance.prospect import SAMPLE_PROSPECT, Prospect
from relance.rendering import (
    Meeting,
    RenderedStep,
    Sender,
    check_templates,
    render_step,
    template_environment,
    template_locale,
)
from relance.spec import Sequence

NBSP = "\u00a0"
SENDER = Sender(name="Camille Durand", email="camille@example.com", company="Exemple SAS")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def email_step(step_id: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "channel": "email",
        "objective": "Say hello.",
        "templates": {
            "subject": f"{step_id}/{{locale}}/subject.j2",
            "html": f"{step_id}/{{locale}}/body.html.j2",
            "text": f"{step_id}/{{locale}}/body.text.j2",
        },
        **extra,
    }


def make_sequence(*steps: dict[str, Any], **extra: Any) -> Sequence:
    return Sequence.model_validate(
        {"id": "demo", "name": "Demo", "locales": ["en"], "steps": list(steps), **extra}
    )


def email_files(
    step_id: str = "hello", body: str = "Hello {{ prospect.first_name }}"
) -> dict[str, str]:
    files = {}
    for locale in ("fr", "en"):
        files[f"{step_id}/{locale}/subject.j2"] = "Hi\n  {{ prospect.company }}  \n"
        files[f"{step_id}/{locale}/body.html.j2"] = f"<p>{body}</p> {{{{ unsubscribe_url }}}}"
        files[f"{step_id}/{locale}/body.text.j2"] = f"{body}\n\n\n\nbye {{{{ unsubscribe_url }}}}\n"
    return files


# --- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "locale", "currency", "expected"),
    [
        (25_000, "fr", "EUR", f"25{NBSP}000{NBSP}€"),
        (25_000, "en", "EUR", "€25,000"),
        (1_234.5, "fr", "EUR", f"1{NBSP}234,50{NBSP}€"),
        (1_234.5, "en", "EUR", "€1,234.50"),
        (1_000_000, "en", "USD", "$1,000,000"),
        (950, "en", "CHF", "CHF 950"),
        (-80, "fr", "GBP", f"-80{NBSP}£"),
        (25_000, "de", "EUR", f"25.000{NBSP}€"),
        (25_000, "pt", "EUR", "€25,000"),
    ],
)
def test_money_is_written_the_way_the_reader_expects(
    amount: float, locale: str, currency: str, expected: str
) -> None:
    assert format_money(amount, locale, currency) == expected


def test_dates_are_written_in_words_in_their_own_zone() -> None:
    moment = datetime(2030, 3, 14, 10, 5, tzinfo=ZoneInfo("Europe/Paris"))
    assert format_date(moment, "fr") == "jeudi 14 mars 2030 à 10h05"
    assert format_date(moment, "en") == "Thursday, 14 March 2030 at 10:05"
    assert format_date(moment, "fr", "day") == "jeudi 14 mars"
    assert format_date(moment, "en", "time") == "10:05"
    assert format_date(date(2030, 3, 1), "fr", "date") == "vendredi 1er mars 2030"
    with pytest.raises(ValueError, match="date and time"):
        format_date(date(2030, 3, 1), "fr", "time")
    with pytest.raises(ValueError, match="date style"):
        format_date(moment, "fr", "short")


def test_filters_follow_the_rendered_locale(tmp_path: Path) -> None:
    write(tmp_path, {"f.j2": "{{ 25000 | money }} / {{ when | date_local('day') }}"})
    template = template_environment(tmp_path).get_template("f.j2")
    when = datetime(2030, 3, 14, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert template.render(locale="fr", when=when) == f"25{NBSP}000{NBSP}€ / jeudi 14 mars"
    assert template.render(locale="en", when=when) == "€25,000 / Thursday, 14 March"


# --- rendering -----------------------------------------------------------------------


def test_environment_is_built_once_per_directory(tmp_path: Path) -> None:
    assert template_environment(tmp_path) is template_environment(tmp_path / "." / "")
    assert template_environment(tmp_path) is not template_environment(tmp_path / "other")


@pytest.mark.parametrize(
    ("prospect_locale", "expected"), [("en", "en"), ("fr", "fr"), ("de", "fr"), (None, "fr")]
)
def test_template_locale_is_the_prospects_when_the_sequence_has_it(
    prospect_locale: str | None, expected: str
) -> None:
    prospect = SAMPLE_PROSPECT.model_copy(update={"locale": prospect_locale})
    assert template_locale(make_sequence(email_step()), prospect) == expected


def test_render_step_fills_only_the_parts_the_step_has(tmp_path: Path) -> None:
    write(tmp_path, email_files())
    sequence = make_sequence(email_step())
    prospect = Prospect(email="ana@example.com", first_name="<Ana>", company="Globex", locale="en")

    rendered = render_step(
        template_environment(tmp_path),
        sequence,
        sequence.steps[0],
        prospect,
        sender=SENDER,
        unsubscribe_url="https://u.example.com/x?a=1&b=2",
    )

    assert rendered == RenderedStep(
        locale="en",
        subject="Hi Globex",
        text="Hello <Ana>\n\nbye https://u.example.com/x?a=1&b=2\n",
        html="<p>Hello &lt;Ana&gt;</p> https://u.example.com/x?a=1&amp;b=2",
    )
    assert list(rendered.parts()) == ["subject", "text", "html"]


def test_render_step_rejects_a_locale_the_sequence_does_not_have(tmp_path: Path) -> None:
    write(tmp_path, email_files())
    sequence = make_sequence(email_step())
    with pytest.raises(InputError, match=r"no locale 'de' in sequence demo \(locales: fr, en\)"):
        render_step(
            template_environment(tmp_path),
            sequence,
            sequence.steps[0],
            SAMPLE_PROSPECT,
            sender=SENDER,
            locale="de",
        )


def test_an_undefined_name_is_a_render_error_naming_the_file_and_line(tmp_path: Path) -> None:
    files = email_files(body="Hello\n{{ prospect.nickname }}")
    write(tmp_path, files)
    sequence = make_sequence(email_step())
    with pytest.raises(RenderError) as caught:
        render_step(
            template_environment(tmp_path),
            sequence,
            sequence.steps[0],
            SAMPLE_PROSPECT,
            sender=SENDER,
        )
    assert str(caught.value) == (
        "templates/hello/fr/body.html.j2:2: 'dict object' has no attribute 'nickname'"
    )


def test_meeting_is_given_only_to_meeting_confirmations_in_the_prospects_zone(
    tmp_path: Path,
) -> None:
    parts = {"subject": "m/subject.j2", "html": "m/body.html.j2", "text": "m/body.text.j2"}
    write(
        tmp_path,
        {
            "m/subject.j2": "{{ meeting.starts_at | date_local }} ({{ meeting.timezone }})",
            "m/body.html.j2": "{{ meeting.duration_minutes }} min {{ meeting.join_url }}",
            "m/body.text.j2": "{{ meeting is none }}",
            **email_files(body="{{ meeting is none }}"),
        },
    )
    sequence = make_sequence(
        email_step(),
        {
            "id": "booked",
            "channel": "meeting_confirmation",
            "objective": "Confirm.",
            "templates": parts,
        },
    )
    starts_at = datetime(2030, 3, 14, 9, 0, tzinfo=ZoneInfo("UTC"))
    meeting = Meeting(
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=45),
        timezone="America/New_York",
        join_url="https://meet.example.com/x",
    )
    env = template_environment(tmp_path)
    hello, booked = sequence.steps

    confirmation = render_step(
        env, sequence, booked, SAMPLE_PROSPECT, sender=SENDER, meeting=meeting
    )
    email = render_step(env, sequence, hello, SAMPLE_PROSPECT, sender=SENDER, meeting=meeting)

    assert confirmation.subject == "jeudi 14 mars 2030 à 05h00 (America/New_York)"
    assert confirmation.html == "45 min https://meet.example.com/x"
    assert confirmation.text == "False\n"
    assert email.text == "True\n\nbye https://example.com/unsubscribe/preview\n"


def test_meeting_times_must_be_aware() -> None:
    naive = datetime(2030, 3, 14, 9, 0)
    with pytest.raises(ValueError, match="aware"):
        Meeting(starts_at=naive, ends_at=naive, timezone="Europe/Paris")


# --- checking ------------------------------------------------------------------------


def messages(findings: list[Finding]) -> list[tuple[tuple[str | int, ...], str, str | None]]:
    return [(f.loc, f.message, f.hint) for f in findings]


def test_shipped_style_sequence_has_no_findings(tmp_path: Path) -> None:
    write(tmp_path, email_files())
    assert check_templates(make_sequence(email_step()), tmp_path) == []


def test_a_missing_template_is_found_with_close_names(tmp_path: Path) -> None:
    files = email_files()
    del files["hello/en/body.text.j2"]
    files["hello/en/body.txt.j2"] = "Hello"
    write(tmp_path, files)

    findings = check_templates(make_sequence(email_step()), tmp_path)

    assert messages(findings) == [
        (
            ("steps", 0, "templates", "text"),
            "expected a template file at templates/hello/en/body.text.j2, got none",
            "did you mean templates/hello/en/body.txt.j2, templates/hello/fr/body.text.j2 "
            "or templates/hello/en/body.html.j2?",
        )
    ]


def test_a_syntax_error_is_found_with_its_line(tmp_path: Path) -> None:
    files = email_files()
    files["hello/fr/body.text.j2"] = "Hello\n{% if prospect.company %}\nno end\n"
    write(tmp_path, files)

    findings = check_templates(make_sequence(email_step()), tmp_path)

    assert len(findings) == 1
    assert findings[0].loc == ("steps", 0, "templates", "text")
    assert findings[0].message.startswith("template templates/hello/fr/body.text.j2 line 3: ")
    assert "endif" in findings[0].message


@pytest.mark.parametrize(
    "body",
    [
        "{{ prospect.industry }}",
        "{% if prospect.company %}{% else %}{{ prospect.industry | upper }}{% endif %}",
        "{{ prospect['industry'] }}",
        "{{ prospect.get('industry', 'your sector') }}",
        "{% for x in [1] %}{% if x > 5 %}{{ prospect.industry }}{% endif %}{% endfor %}",
    ],
)
def test_an_undeclared_prospect_field_is_found_anywhere_in_the_template(
    tmp_path: Path, body: str
) -> None:
    write(tmp_path, email_files(body=body))

    findings = check_templates(make_sequence(email_step()), tmp_path)

    assert {f.loc[-1] for f in findings} == {"html", "text"}
    assert findings[0].message == (
        "template templates/hello/fr/body.html.j2 uses prospect.industry, "
        "which no prospect field provides"
    )
    assert findings[0].hint == (
        "declare it under prospect_fields: [industry] so that imports must provide it, "
        "or fix the name"
    )
    declared = make_sequence(email_step(), prospect_fields=["industry"])
    assert check_templates(declared, tmp_path) == []


def test_a_misspelled_field_gets_a_suggestion(tmp_path: Path) -> None:
    write(tmp_path, email_files(body="{{ prospect.firstname }}"))
    findings = check_templates(make_sequence(email_step()), tmp_path)
    assert findings[0].hint is not None
    assert findings[0].hint.endswith("or fix the name (did you mean first_name?)")


def test_fields_used_in_includes_imports_and_layouts_count(tmp_path: Path) -> None:
    files = email_files(body='{% include "_partials/" ~ locale ~ "/sign.j2" %}')
    files["_partials/fr/sign.j2"] = "{{ prospect.industry }}"
    files["_partials/en/sign.j2"] = "{{ prospect.territory }}"
    files["hello/fr/body.html.j2"] = (
        '{% extends "_partials/layout.html.j2" %}'
        '{% from "_partials/macros.html.j2" import hi %}'
        "{% block body %}{{ hi() }}{% endblock %}"
    )
    files["_partials/layout.html.j2"] = "{% block body %}{% endblock %}{{ prospect.segment }}"
    files["_partials/macros.html.j2"] = "{% macro hi() %}{{ prospect.sector }}{% endmacro %}"
    write(tmp_path, files)

    findings = check_templates(make_sequence(email_step()), tmp_path)

    assert sorted({f.message.split(" uses ")[1].split(",")[0] for f in findings}) == [
        "prospect.industry",
        "prospect.sector",
        "prospect.segment",
        "prospect.territory",
    ]
    assert [(f.loc[-1], f.message) for f in findings if "territory" in f.message] == [
        (
            part,
            "template templates/_partials/en/sign.j2 uses prospect.territory, "
            "which no prospect field provides",
        )
        for part in ("html", "text")
    ]


def test_a_missing_include_names_the_template_using_it(tmp_path: Path) -> None:
    write(tmp_path, email_files(body='{% include "_partials/footer.j2" %}'))
    findings = check_templates(make_sequence(email_step()), tmp_path)
    assert findings[0].message == (
        "expected a template file at templates/_partials/footer.j2, got none "
        "(used by templates/hello/fr/body.html.j2)"
    )


def test_names_outside_the_render_context_are_found(tmp_path: Path) -> None:
    write(tmp_path, email_files(body="{{ sendr.name }} {{ unsubscribe_url }} {{ [1, 2] | list }}"))
    findings = check_templates(make_sequence(email_step()), tmp_path)
    assert findings[0].message == (
        "template templates/hello/fr/body.html.j2 uses sendr, which is not in the render context"
    )
    assert findings[0].hint == (
        "did you mean sender? templates can use locale, meeting, prospect, resource, sender, "
        "sequence, step, unsubscribe_url"
    )


def test_meeting_outside_a_meeting_confirmation_is_found(tmp_path: Path) -> None:
    write(tmp_path, email_files(body="{% if meeting %}{{ meeting.join_url }}{% endif %}"))
    findings = check_templates(make_sequence(email_step()), tmp_path)
    assert messages(findings)[0] == (
        ("steps", 0, "templates", "html"),
        "template templates/hello/fr/body.html.j2 uses meeting, which only "
        "meeting_confirmation steps have",
        "this is a email step: remove the meeting details, "
        "or move them to the meeting_confirmation step",
    )


def test_a_resource_on_a_step_without_one_is_found_by_rendering(tmp_path: Path) -> None:
    write(tmp_path, email_files(body="{{ resource.title }}"))

    findings = check_templates(make_sequence(email_step()), tmp_path)

    assert messages(findings)[0] == (
        ("steps", 0, "templates", "html"),
        "template templates/hello/fr/body.html.j2 does not render: "
        "templates/hello/fr/body.html.j2:1: 'None' has no attribute 'title'",
        "step hello has no resource: add one (title, url) to the step, "
        "or wrap its use in {% if resource %}...{% endif %}",
    )
    with_resource = make_sequence(
        email_step(resource={"title": "Guide", "url": "https://example.com/guide"})
    )
    assert check_templates(with_resource, tmp_path) == []
