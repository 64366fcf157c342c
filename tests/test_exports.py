"""CRM exports enrolled as they come (``tests/fixtures/exports``): HubSpot, Pipedrive,
Salesforce and lemlist headers recognised without a mapping file, a --map for the rest,
countries and languages by name, and the language each prospect is written to.

The sequence ``welcome`` is written in French and English, English being the fallback:

    opening  email  at enrollment   subject "Bonjour {first_name}" / "Hello {first_name}"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from store_support import ALWAYS_OPEN, T0, Project, RecordingSender, dispatcher_for, tick
from typer.testing import CliRunner, Result

import relance.cli  # noqa: F401 - registers every command
from relance.cli.app import app
from relance.rendering import check_templates
from relance.spec import Sequence
from relance.store import Store
from relance.tables import enrollments, prospects

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
NOW = "2026-03-02T08:00:00Z"
SUBJECTS = {"fr": "Bonjour {{ prospect.first_name }}", "en": "Hello {{ prospect.first_name }}"}
TEXT = "{% if prospect.trade_show %}{{ prospect.trade_show }}{% endif %}\n{{ unsubscribe_url }}"


def welcome(root: Path, **fields: Any) -> Project:
    spec: dict[str, Any] = {
        "id": "welcome",
        "name": "Welcome",
        "locale": "fr",
        "locales": ["en"],
        "fallback_locales": ["en"],
        "timezone": "UTC",
        "send_window": ALWAYS_OPEN,
        "holidays": {"country": False},
        "prospect_fields": [{"name": "trade_show", "optional": True}],
        "steps": [
            {
                "id": "opening",
                "channel": "email",
                "wait": "0d",
                "objective": "open",
                "templates": {
                    "subject": "welcome/{locale}/subject.j2",
                    "html": "welcome/{locale}/html.j2",
                    "text": "welcome/{locale}/text.j2",
                },
            }
        ],
        **fields,
    }
    for locale, subject in SUBJECTS.items():
        folder = root / "templates" / "welcome" / locale
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "subject.j2").write_text(subject, encoding="utf-8")
        (folder / "text.j2").write_text(TEXT, encoding="utf-8")
        (folder / "html.j2").write_text(f"<p>{TEXT}</p>", encoding="utf-8")
    (root / "sequences").mkdir(parents=True, exist_ok=True)
    (root / "sequences" / "welcome.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return Project(root, Sequence.model_validate(spec))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("RELANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path / "project"))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    return welcome(tmp_path / "project")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def enroll(name: str, *extra: str) -> str:
    result = invoke("enroll", "welcome", "--csv", str(EXPORTS / name), "--now", NOW, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def stored(project: Project) -> dict[str, Any]:
    store = Store(f"sqlite:///{(project.root.parent / 'data' / 'relance.db').as_posix()}")
    with store.reading() as connection:
        rows = {row.email: row for row in connection.execute(select(prospects))}
        deals = dict(
            connection.execute(
                select(prospects.c.email, enrollments.c.deal_value).join(
                    enrollments, enrollments.c.prospect_id == prospects.c.id
                )
            ).all()
        )
    store.dispose()
    return {"rows": rows, "deals": deals}


@pytest.mark.parametrize(
    ("name", "preset", "count"),
    [
        ("hubspot-contacts.csv", "HubSpot", 3),
        ("pipedrive-persons.csv", "Pipedrive", 2),
        ("salesforce-contacts.csv", "Salesforce", 2),
        ("lemlist-leads.csv", "lemlist", 2),
    ],
)
def test_each_crm_export_is_recognised_and_enrolled_without_a_mapping(
    project: Project, name: str, preset: str, count: int
) -> None:
    dry = enroll(name, "--dry-run")
    assert f"columns ({preset} export):" in dry.splitlines()
    assert f"dry run, nothing written: would enroll {count} in welcome" in dry
    assert f"enrolled {count} in welcome (version 1)" in enroll(name)


def test_the_columns_of_a_hubspot_export_land_in_their_fields(project: Project) -> None:
    out = enroll("hubspot-contacts.csv", "--dry-run")
    assert out.splitlines()[1:8] == [
        "columns (HubSpot export):",
        "  'Record ID' -> record_id (template field)",
        "  'First Name' -> first_name",
        "  'Last Name' -> last_name",
        "  'Email' -> email",
        "  'Phone Number' -> phone (HubSpot)",
        "  'Company Name' -> company (HubSpot)",
    ]
    assert "  'Country/Region' -> country (HubSpot)" in out
    assert "  'Preferred language' -> locale (HubSpot)" in out
    enroll("hubspot-contacts.csv")
    lena = stored(project)["rows"]["lena.fischer@example.de"]
    assert (lena.country, lena.locale, lena.company, lena.title, lena.owner) == (
        "DE", "de", "Fischer Maschinenbau GmbH", "Einkaufsleiterin", "sdr@example.com",
    )  # fmt: skip
    assert lena.fields == {"record_id": "51234", "create_date": "2026-02-11 10:42"}


def test_semicolons_quotes_and_french_decimals_of_a_pipedrive_export(project: Project) -> None:
    enroll("pipedrive-persons.csv")
    data = stored(project)
    jonas, lucie = data["rows"]["jonas.weber@example.de"], data["rows"]["lucie.bernard@example.fr"]
    assert (jonas.first_name, jonas.company, jonas.country, jonas.owner) == (
        "Jonas", "Weber Logistik AG", "DE", "Camille Durand",
    )  # fmt: skip
    assert jonas.fields["person_email_home"] == "jonas@example.net"
    assert (lucie.company, lucie.country) == ("Bernard; Fils & Cie", "FR")
    assert data["deals"] == {"jonas.weber@example.de": 25000.5, "lucie.bernard@example.fr": 12500}


def test_countries_and_languages_are_read_by_name_in_several_languages(project: Project) -> None:
    enroll("salesforce-contacts.csv")
    enroll("lemlist-leads.csv")
    rows = stored(project)["rows"]
    assert {email: (row.country, row.locale) for email, row in rows.items()} == {
        "sofia.rossi@example.it": ("IT", "it"),
        "max.mueller@example.at": ("AT", "de"),
        "ana.garcia@example.es": ("ES", "es"),
        "hans.becker@example.ch": ("CH", "de"),
    }
    assert rows["ana.garcia@example.es"].fields["icebreaker"] == "Vu votre talk à Madrid, bravo"


def test_a_german_prospect_in_a_french_and_english_sequence_gets_english(
    project: Project,
) -> None:
    out = enroll("hubspot-contacts.csv")
    assert "language: 1 prospect in de written to in en (no de templates)" in out
    store = Store(f"sqlite:///{(project.root.parent / 'data' / 'relance.db').as_posix()}")
    sender = RecordingSender()
    tick(store, dispatcher_for(store, project, sender, data_dir=project.root.parent / "data"), T0)
    store.dispose()
    assert sorted((m.to_email, m.subject) for m in sender.sent) == [
        ("claire.martin@example.fr", "Bonjour Claire"),
        ("lena.fischer@example.de", "Hello Lena"),
        ("tom.baker@example.co.uk", "Hello Tom"),
    ]
    status = invoke("status", "lena.fischer@example.de")
    assert (
        "written in en: the prospect's language (de) has no templates: first fallback (en)"
        in status.stdout
    )
    data = json.loads(invoke("status", "claire.martin@example.fr", "--json").stdout)
    assert data["enrollments"][0]["language"] == "fr"


def test_without_a_fallback_status_says_the_default_was_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path / "project"))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    welcome(tmp_path / "project", fallback_locales=[])
    enroll("hubspot-contacts.csv")
    assert (
        "written in fr: the prospect's language (de) has no templates and the sequence has "
        "no fallback_locales: the default (fr)"
    ) in invoke("status", "lena.fischer@example.de").stdout


def test_a_map_file_names_the_columns_no_preset_knows(project: Project, tmp_path: Path) -> None:
    mapping = tmp_path / "salon.yaml"
    mapping.write_text("Sujet salon: trade_show\nMontant: '-'\n", encoding="utf-8")
    dry = enroll("french-export.csv", "--map", str(mapping), "--dry-run")
    assert "  'Sujet salon' -> trade_show (--map)" in dry
    assert "  'Montant' -> left out (--map)" in dry
    enroll("french-export.csv", "--map", str(mapping))
    data = stored(project)
    marie, karl = data["rows"]["marie.dupont@example.fr"], data["rows"]["karl.schmidt@example.de"]
    assert marie.fields == {"trade_show": "Salon de l’Industrie"}
    assert (karl.country, karl.locale, karl.fields) == ("DE", "de", {"trade_show": ""})
    assert data["deals"] == {"marie.dupont@example.fr": 0, "karl.schmidt@example.de": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a\n- b\n", "error: map.yaml: expected a mapping of CSV headers to fields"),
        ("Sujet salon: Trade Show\n", "error: map.yaml: 'Sujet salon': expected a field name"),
        ("a: [b\n", "error: map.yaml:2: expected YAML such as 'Sujet salon: trade_show'"),
    ],
)
def test_a_bad_map_file_is_explained(
    project: Project, tmp_path: Path, content: str, message: str
) -> None:
    mapping = tmp_path / "map.yaml"
    mapping.write_text(content, encoding="utf-8")
    result = invoke("enroll", "welcome", "--csv", str(EXPORTS / "french-export.csv"),
                    "--map", str(mapping), "--now", NOW)  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.output


def test_errors_quote_countries_and_languages_as_written(project: Project, tmp_path: Path) -> None:
    export = tmp_path / "bad.csv"
    export.write_text(
        "Email,Country,Language\nlena@example.de,Germania del Sud,Klingonisch\n",
        encoding="utf-8",
    )
    result = invoke("enroll", "welcome", "--csv", str(export), "--now", NOW)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        'bad.csv:2 column country: expected a country such as "FR", '
        '"France" or "Frankreich", got \'Germania del Sud\'',
        "bad.csv:2 column locale ('Language' in the file): expected a language such as \"fr\", "
        '"French" or "français", got \'Klingonisch\'',
    ]


def test_validate_wants_optional_fields_guarded_or_defaulted(project: Project) -> None:
    root = project.root
    (root / "templates" / "welcome" / "en" / "text.j2").write_text(
        "Seen at {{ prospect.trade_show }}\n{{ unsubscribe_url }}", encoding="utf-8"
    )
    findings = check_templates(project.sequence, root / "templates")
    assert [(f.message, f.hint) for f in findings] == [
        (
            "template templates/welcome/en/text.j2 uses prospect.trade_show unguarded, but "
            "trade_show is optional with no default",
            "wrap it in {% if prospect.trade_show %}...{% endif %}, or give trade_show a "
            "default under prospect_fields",
        )
    ]
    defaulted = Sequence.model_validate(
        {
            **project.sequence.model_dump(),
            "prospect_fields": [{"name": "trade_show", "optional": True, "default": "x"}],
        }
    )
    assert check_templates(defaulted, root / "templates") == []
