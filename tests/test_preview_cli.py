"""``relance preview`` and the CSV-row prospect reader it shares with ``enroll --csv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app
from relance.errors import ProspectError
from relance.prospect import Prospect, prospect_from_row

SEQUENCE = """\
id: demo
name: Demo
locales: [en]
prospect_fields: [industry]
steps:
  - id: hello
    channel: email
    objective: Say hello.
    resource: {title: Guide, url: "https://example.com/guide"}
    templates:
      subject: "{locale}/hello.subject.j2"
      html: "{locale}/hello.html.j2"
      text: "{locale}/hello.text.j2"
  - id: ring
    channel: call
    wait: "1 business day"
    objective: Call them.
    templates:
      script: "{locale}/ring.script.j2"
"""

TEMPLATES = {
    "fr/hello.subject.j2": "Bonjour {{ prospect.first_name }}\n",
    "en/hello.subject.j2": "Hello\n{{ prospect.first_name }}\n",
    "fr/hello.text.j2": "{{ prospect.industry }} : {{ resource.url }}\n",
    "en/hello.text.j2": "{{ prospect.industry }}: {{ resource.url }}\n"
    "{{ sender.name }} {{ unsubscribe_url }}\n",
    "fr/hello.html.j2": "<p>{{ prospect.first_name }}</p>\n",
    "en/hello.html.j2": "<p>{{ prospect.first_name }}</p>\n",
    "fr/ring.script.j2": "Appeler {{ prospect.full_name }} ({{ prospect.deal_value | money }})\n",
    "en/ring.script.j2": "Call {{ prospect.full_name }} ({{ prospect.deal_value | money }})\n",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "demo.yaml").write_text(SEQUENCE, encoding="utf-8")
    for name, text in TEMPLATES.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name in ("SEQUENCES_DIR", "TEMPLATES_DIR", "COMPANY_NAME", "SENDER_EMAIL"):
        monkeypatch.delenv(f"RELANCE_{name}", raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path))
    monkeypatch.setenv("RELANCE_SENDER_NAME", "Camille")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def preview(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["preview", *args])
    return result.exit_code, result.stdout, result.stderr


def test_preview_prints_each_part_under_its_heading(project: Path) -> None:
    prospect = {
        "email": "ana@example.com",
        "first_name": "Ana",
        "locale": "en",
        "industry": "retail",
    }

    code, out, err = preview("demo", "hello", "--prospect", json.dumps(prospect))

    assert (code, err) == (0, "")
    assert out == (
        "demo / hello (email, en)\n"
        "Objective: Say hello.\n"
        "\n"
        "Subject\n"
        "-------\n"
        "Hello Ana\n"
        "\n"
        "Text\n"
        "----\n"
        "retail: https://example.com/guide\n"
        "Camille https://example.com/unsubscribe/preview\n"
        "\n"
        "HTML\n"
        "----\n"
        "<p>Ana</p>\n"
    )


def test_preview_uses_the_sample_prospect_by_default(project: Path) -> None:
    code, out, _ = preview("demo", "ring")
    assert code == 0
    assert out == (
        "demo / ring (call, fr)\n"
        "Objective: Call them.\n"
        "\n"
        "Call script\n"
        "-----------\n"
        "Appeler Claire Martin (25\u00a0000\u00a0€)\n"
    )


def test_preview_reads_a_csv_row_inline_or_from_a_file(project: Path) -> None:
    row = 'email,First Name,deal_value,industry\nana@example.com,Ana,"48,000",retail\n'
    (project / "one.csv").write_text(row + "bob@example.com,Bob,1,food\n", encoding="utf-8")

    for option in (row, "@one.csv", "email,first_name,deal_value\nana@example.com,Ana,48000"):
        code, out, err = preview("demo", "ring", "--prospect", option, "--locale", "en")
        assert (code, err) == (0, ""), option
        assert out.splitlines()[-1] == "Call Ana (€48,000)"


def test_preview_reads_a_json_file(project: Path) -> None:
    people = [{"email": "ana@example.com", "first_name": "Ana", "industry": None}]
    (project / "people.json").write_text(json.dumps(people), encoding="utf-8")

    code, out, _ = preview("demo", "hello", "--prospect", "@people.json")

    assert code == 0
    assert "Bonjour Ana\n" in out
    assert "\n: https://example.com/guide\n" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "bye"], "error: no step 'bye' in sequence demo (steps: hello, ring)\n"),
        (
            ["demo", "hello", "--locale", "de"],
            "error: no locale 'de' in sequence demo (locales: fr, en)\n",
        ),
        (
            ["demo", "hello", "--prospect", '{"email": "ana@example.com", "deal_value": "lots"}'],
            "error: column deal_value: expected a number such as 25000, got 'lots'\n",
        ),
        (
            ["demo", "hello", "--prospect", '{"email": "ana@example.com", "tags": ["a"]}'],
            "error: column tags: expected a text or a number, got a JSON list\n",
        ),
        (
            ["demo", "hello", "--prospect", "{not json"],
            "error: expected a JSON object, got invalid JSON (Expecting property name "
            "enclosed in double quotes)\n",
        ),
        (
            ["demo", "hello", "--prospect", "email\n"],
            "error: expected a CSV header line and one row, got no row\n",
        ),
        (
            ["demo", "hello", "--prospect", "@missing.csv"],
            "error: cannot read missing.csv: No such file or directory\n",
        ),
    ],
)
def test_preview_reports_bad_input_without_a_traceback(
    project: Path, args: list[str], message: str
) -> None:
    code, out, err = preview(*args)
    assert (code, out, err) == (1, "", message)


def test_preview_reports_a_template_that_does_not_render(project: Path) -> None:
    (project / "templates" / "fr" / "hello.html.j2").write_text("<p>\n{{ prospect.nickname }}</p>")

    code, _, err = preview("demo", "hello")

    assert code == 1
    assert err == (
        "error: templates/fr/hello.html.j2:2: 'dict object' has no attribute 'nickname'\n"
    )


def test_declared_columns_the_prospect_lacks_show_as_placeholders(project: Path) -> None:
    code, out, _ = preview("demo", "hello", "--prospect", '{"email": "ana@example.com"}')
    assert code == 0
    assert "\n[industry] : https://example.com/guide\n" in out


# --- prospect_from_row ---------------------------------------------------------------


def test_a_row_becomes_a_typed_prospect_with_custom_fields() -> None:
    prospect = prospect_from_row(
        {
            " Email ": "Ana@Example.com ",
            "First Name": "Ana",
            "deal-value": "25 000",
            "cycle_days": "",
            "Country": "fr",
            "industry": "retail",
            "Annual Budget": "",
            None: "extra cell",  # type: ignore[dict-item]
        }
    )
    assert prospect == Prospect(
        email="ana@example.com",
        first_name="Ana",
        deal_value=25_000,
        country="FR",
        fields={"industry": "retail", "annual_budget": ""},
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("48000", 48_000),
        ("48,000", 48_000),
        ("48.000,50", 48_000.5),
        ("1500,5", 1_500.5),
        ("12 500 €", 12_500),
        ("1,234,567.89", 1_234_567.89),
        ("0.5", 0.5),
    ],
)
def test_deal_values_are_read_in_the_usual_notations(text: str, value: float) -> None:
    assert prospect_from_row({"email": "a@example.com", "deal_value": text}).deal_value == value


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"first_name": "Ana"}, "column email: expected a value, got none"),
        ({"email": "ana"}, "column email: expected an email address, got 'ana'"),
        (
            {"email": "a@example.com", "cycle_days": "3 months"},
            "column cycle_days: expected a number such as 25000, got '3 months'",
        ),
        (
            {"email": "a@example.com", "deal_value": "inf"},
            "column deal_value: expected a number such as 25000, got 'inf'",
        ),
        (
            {"email": "a@example.com", "deal_value": "-5"},
            "column deal_value: input should be greater than or equal to 0, got -5.0",
        ),
        (
            {"email": "a@example.com", "timezone": "Paris", "country": "Atlantis"},
            'column country: expected a country such as "FR", "France" or "Frankreich", '
            "got 'Atlantis' (did you mean 'AL'?); "
            "column timezone: expected an IANA time zone such as \"Europe/Paris\", got 'Paris'",
        ),
    ],
)
def test_a_bad_row_names_every_bad_column(row: dict[str, str], message: str) -> None:
    with pytest.raises(ProspectError) as caught:
        prospect_from_row(row)
    assert str(caught.value) == message
