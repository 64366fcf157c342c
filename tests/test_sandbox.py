"""Marketer templates render in a sandbox: no secrets, no commands, no files from elsewhere.

``relance validate`` reports the same constructs with their file and line
(tests/fixtures/bad/unsafe-template.expected holds the exact text).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relance.errors import RenderError
from relance.prospect import SAMPLE_PROSPECT
from relance.rendering import (
    SAMPLE_SENDER,
    check_templates,
    render_context,
    render_step,
    render_template,
    template_environment,
)
from tests.test_rendering import email_files, email_step, make_sequence, write

ATTACKS = {
    "secret": "{{ lipsum.__globals__.os.environ.SENDGRID_API_KEY }}",
    "command": '{{ cycler.__init__.__globals__.os.popen("id").read() }}',
    "class": "{{ prospect.__class__.__mro__ }}",
    "attr-filter": '{{ (prospect|attr("__class__")) }}',
    "item": '{{ prospect["__class__"] }}',
    "str-format": '{{ "{0.__class__}".format(prospect) }}',
    "mutation": "{{ prospect.update({'email': 'x@evil.example'}) }}",
}


def context() -> dict[str, object]:
    sequence = make_sequence(email_step())
    return dict(
        render_context(
            sequence, sequence.steps[0], SAMPLE_PROSPECT, sender=SAMPLE_SENDER, locale="en"
        )
    )


@pytest.mark.parametrize("body", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_attack_in_a_template_does_not_render(
    body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.secret-never-rendered")
    write(tmp_path, {"attack.subject.j2": body})
    with pytest.raises(RenderError) as caught:
        render_template(template_environment(tmp_path), "attack.subject.j2", context())
    assert "SG.secret" not in str(caught.value)
    assert str(caught.value).startswith("templates/attack.subject.j2")


@pytest.mark.parametrize("body", list(ATTACKS.values())[:5], ids=list(ATTACKS)[:5])
def test_check_templates_reports_the_attack_with_its_line(body: str, tmp_path: Path) -> None:
    write(tmp_path, email_files(body=f"Hello\n{body}"))
    findings = check_templates(make_sequence(email_step()), tmp_path)
    assert findings
    assert findings[0].message.startswith("template templates/hello/fr/body.html.j2 line 2: ")


def test_jinja_globals_are_gone(tmp_path: Path) -> None:
    env = template_environment(tmp_path)
    assert dict(env.globals) == {}
    assert set(env.filters) >= {"money", "date_local", "upper", "join"}


def test_a_link_out_of_the_templates_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secrets.txt"
    outside.write_text("SENDGRID_API_KEY=SG.outside\n", encoding="utf-8")
    templates = write(tmp_path / "templates", email_files(body='{% include "leak.j2" %}'))
    (templates / "leak.j2").symlink_to(outside)
    (templates / "hello" / "fr" / "subject.j2").unlink()
    (templates / "hello" / "fr" / "subject.j2").symlink_to(outside)
    env = template_environment(templates)
    assert "leak.j2" not in env.list_templates()
    with pytest.raises(RenderError) as caught:
        render_template(env, "leak.j2", context())
    assert str(caught.value) == (
        "template templates/leak.j2 resolves outside the templates directory: refused"
    )
    sequence = make_sequence(email_step())
    with pytest.raises(RenderError):
        render_step(env, sequence, sequence.steps[0], SAMPLE_PROSPECT, sender=SAMPLE_SENDER)
    messages = {f.message for f in check_templates(sequence, templates)}
    assert messages == {
        "template templates/hello/fr/subject.j2 resolves outside the templates directory: refused",
        "template templates/leak.j2 resolves outside the templates directory: refused",
    }


def test_a_link_inside_the_templates_directory_still_works(tmp_path: Path) -> None:
    templates = write(tmp_path, {"real.j2": "Hi {{ prospect.first_name }}"})
    (templates / "alias.j2").symlink_to(templates / "real.j2")
    env = template_environment(templates)
    assert render_template(env, "alias.j2", context()) == "Hi Claire\n"


def test_path_traversal_in_a_template_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.j2").write_text("outside", encoding="utf-8")
    templates = write(tmp_path / "templates", {"in.j2": '{% include "../outside.j2" %}'})
    with pytest.raises(RenderError) as caught:
        render_template(template_environment(templates), "in.j2", context())
    assert "outside" not in str(caught.value).replace("../outside.j2", "")


def test_jinja_in_a_prospect_field_is_shown_as_written(tmp_path: Path) -> None:
    write(tmp_path, email_files())
    sequence = make_sequence(email_step())
    prospect = SAMPLE_PROSPECT.model_copy(
        update={"first_name": "{{ 7*7 }}{% for x in [1] %}x{% endfor %}", "company": "<b>A</b>"}
    )
    rendered = render_step(
        template_environment(tmp_path), sequence, sequence.steps[0], prospect, sender=SAMPLE_SENDER
    )
    assert rendered.text is not None and rendered.html is not None
    literal = "{{ 7*7 }}{% for x in [1] %}x{% endfor %}"
    assert literal in rendered.text and literal in rendered.html
    assert "49" not in rendered.text + rendered.html
    assert rendered.subject == "Hi <b>A</b>"  # plain text, never rendered a second time
