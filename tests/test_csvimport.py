"""Reading CRM exports: delimiters, BOM, aliases, numbers, line numbers, every problem."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relance.csvimport import (
    ContactReader,
    check_mapping,
    column_name,
    count_lines,
    detect_delimiter,
    detect_preset,
    file_lines,
    map_columns,
    read_contacts,
    read_text,
    snake_case,
)
from relance.errors import ProspectError

FIXTURES = Path(__file__).parent / "fixtures" / "csv"


def errors_of(text: str, **options: object) -> list[str]:
    contacts = read_contacts(text, "contacts.csv", **options)  # type: ignore[arg-type]
    return [error.format("contacts.csv") for error in contacts.errors]


def test_a_french_export_with_bom_semicolons_and_decimal_commas_reads_whole() -> None:
    contacts = read_contacts(read_text(FIXTURES / "contacts.csv"), "contacts.csv")
    assert contacts.errors == []
    assert contacts.columns == [
        "email", "first_name", "last_name", "company", "phone", "deal_value", "cycle_days",
        "timezone", "country", "locale", "industry", "secteur_d_activite",
    ]  # fmt: skip
    claire, john, ana = contacts.prospects
    assert claire.email == "claire.martin@example.com"
    assert (claire.first_name, claire.last_name, claire.company) == (
        "Claire",
        "Martin",
        "Acme Industrie",
    )
    assert (claire.deal_value, claire.cycle_days) == (25000.5, 90)
    assert (claire.timezone, claire.country, claire.locale) == ("Europe/Paris", "FR", "fr")
    assert claire.fields == {"industry": "automotive", "secteur_d_activite": "Usinage"}
    assert john.email == "john.doe@example.com"
    assert (ana.last_name, ana.deal_value, ana.timezone) == ("López", 0, None)
    assert [row.line for row in contacts.rows] == [2, 3, 4]


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("COURRIEL", "email"),
        ("First Name", "first_name"),
        ("Prénom", "first_name"),
        ("Société", "company"),
        ("Company Name", "company"),
        ("Deal value", "deal_value"),
        ("Amount", "deal_value"),
        ("Montant", "deal_value"),
        ("Cycle days", "cycle_days"),
        ("Time zone", "timezone"),
        ("Téléphone", "phone"),
        ("Job Title", "title"),
        ("Contact Owner", "owner"),
        ("State/Region", "region"),
        ("Bundesland", "region"),
        ("Canton", "region"),
        ("Province", "region"),
        ("Département", "region"),
        ("Secteur d'activité", "secteur_d_activite"),
        ("  Annual Revenue (k€) ", "annual_revenue_k"),
    ],
)
def test_headers_are_matched_loosely(header: str, field: str) -> None:
    assert column_name(header) == field


def test_snake_case_strips_accents_and_punctuation() -> None:
    assert snake_case("Numéro de SIRET") == "numero_de_siret"


@pytest.mark.parametrize(
    ("line", "delimiter"),
    [("email,name", ","), ("email;name;company", ";"), ("email\tname", "\t"), ("email", ",")],
)
def test_the_delimiter_is_the_one_that_splits_the_header(line: str, delimiter: str) -> None:
    assert detect_delimiter(line) == delimiter


def test_every_problem_is_listed_with_its_line_as_in_the_file_and_its_column() -> None:
    text = (FIXTURES / "errors.csv").read_text(encoding="utf-8")
    assert errors_of(text, required=["industry"], sequence_id="outbound-2w") == [
        "contacts.csv:4 column email: expected an email address, got 'not-an-email'",
        'contacts.csv:6 column timezone: expected an IANA time zone such as "Europe/Paris", '
        "got 'Mars/Olympus'",
        "contacts.csv:6 column industry: expected a value (the templates of outbound-2w use it), "
        "got an empty cell",
        "contacts.csv:7 column email: duplicate: a@example.com is already on line 2",
        "contacts.csv:8 expected at most 7 cells as in the header, got 8 "
        "(quote the cells that contain the separator)",
    ]


def test_a_bad_number_names_the_column_as_the_file_calls_it() -> None:
    text = "Email;Montant\na@example.com;abc\n"
    assert errors_of(text) == [
        "contacts.csv:2 column deal_value ('Montant' in the file): "
        "expected a number such as 25000, got 'abc'"
    ]


def test_regions_are_read_and_checked_with_their_country() -> None:
    text = (
        "Email,Country,State/Region\n"
        "a@example.com,US,CA\n"
        "b@example.com,DE,Bayern\n"
        "c@example.com,US,Califrnia\n"
        "d@example.com,XX,\n"
    )
    contacts = read_contacts(text, "contacts.csv")
    assert [(r.prospect.region, r.prospect.timezone) for r in contacts.rows] == [
        ("US-CA", "America/Los_Angeles"),
        ("DE-BY", "Europe/Berlin"),
    ]
    assert [error.format("contacts.csv") for error in contacts.errors] == [
        "contacts.csv:4 column region ('State/Region' in the file): expected a region of US "
        "such as US-AK, US-AL, US-AR, US-AS, US-AZ, US-CA, US-CO, US-CT, ..., "
        "got 'Califrnia' (did you mean 'US-CA' or 'US-VA'?)",
        'contacts.csv:5 column country: expected a country such as "FR", "France" or '
        "\"Frankreich\", got 'XX'",
    ]


def test_valid_rows_are_kept_beside_the_invalid_ones() -> None:
    contacts = read_contacts((FIXTURES / "one-bad-row.csv").read_text(), "one-bad-row.csv")
    assert [row.prospect.email for row in contacts.rows] == ["a@example.com", "c@example.com"]
    assert contacts.invalid_lines == [3]
    assert contacts.total == 3


def test_a_column_the_templates_use_must_be_in_the_file() -> None:
    with pytest.raises(ProspectError) as error:
        read_contacts(
            "email,first_name\nx@example.com,X\n",
            "contacts.csv",
            required=["industry"],
            sequence_id="outbound-2w",
        )
    assert str(error.value) == (
        "column 'industry' is used by the templates of outbound-2w but missing from contacts.csv"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "empty.csv",
            "empty.csv: the file is empty; expected a header line such as "
            "email,first_name,last_name,company then one line per prospect",
        ),
        (
            "no-email.csv",
            "no-email.csv:1: no email column (expected a column named email, E-mail, "
            "Email Address or Courriel), got columns 'Name', 'Company', 'Industry'",
        ),
        (
            "no-header.csv",
            "no-header.csv:1: expected a header line naming the columns (email, first_name, "
            "...), got a line of data: 'a@example.com,Ann,Acme,retail'",
        ),
    ],
)
def test_a_file_without_a_usable_header_is_refused_clearly(name: str, message: str) -> None:
    with pytest.raises(ProspectError) as error:
        read_contacts(read_text(FIXTURES / name), name, required=["industry"])
    assert str(error.value) == message


def test_two_columns_for_one_field_are_refused() -> None:
    with pytest.raises(ProspectError, match="columns 'Email' and 'E-mail' both give email"):
        read_contacts("Email,E-mail\na@example.com,b@example.com\n", "contacts.csv")


def test_a_file_that_is_not_utf8_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,first_name\nx@example.com,Zoé\n".encode("latin-1"))
    with pytest.raises(ProspectError) as error:
        read_text(path)
    assert str(error.value) == (
        "latin1.csv:2: expected UTF-8 text, got byte 0xe9 "
        "(save the file as 'CSV UTF-8' from your spreadsheet or CRM)"
    )


def test_short_rows_and_blank_lines_are_read_as_empty_cells() -> None:
    contacts = read_contacts("email,first_name,company\n\na@example.com\n\n", "contacts.csv")
    assert contacts.errors == []
    assert contacts.total == 1
    assert contacts.rows[0].line == 3
    assert contacts.rows[0].prospect.company == ""


def test_progress_is_reported_while_reading() -> None:
    text = "email\n" + "".join(f"p{i}@example.com\n" for i in range(250))
    seen: list[int] = []
    read_contacts(text, "contacts.csv", on_row=seen.append)
    assert seen == [100, 200]


cell = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + " ,;'\"\n-éà€"), max_size=12
)


@given(
    rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=8),
    delimiter=st.sampled_from([",", ";"]),
)
def test_whatever_a_spreadsheet_writes_reads_back_cell_for_cell(
    rows: list[tuple[str, str]], delimiter: str
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(["email", "note", "comment"])
    for index, (note, comment) in enumerate(rows):
        writer.writerow([f"p{index}@example.com", note, comment])
    contacts = read_contacts(buffer.getvalue(), "contacts.csv")
    assert contacts.errors == []
    assert [(r.prospect.fields["note"], r.prospect.fields["comment"]) for r in contacts.rows] == [
        (note.strip(), comment.strip()) for note, comment in rows
    ]


def test_a_file_read_as_it_comes_names_the_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"email,company\na@example.com,Acme\n" * 3 + "b@x.com,Soci\u00e9t\u00e9\n".encode("latin-1")
    )
    with pytest.raises(ProspectError) as raised:
        list(ContactReader(file_lines(path), path.name))
    assert str(raised.value) == (
        "latin1.csv:7: expected UTF-8 text, got byte 0xe9 "
        "(save the file as 'CSV UTF-8' from your spreadsheet or CRM)"
    )
    assert count_lines(path) == 7
    assert count_lines(tmp_path / "missing.csv") == 0
    with pytest.raises(ProspectError, match="cannot read"):
        list(file_lines(tmp_path / "missing.csv"))


def test_presets_are_recognised_by_two_of_their_headers() -> None:
    assert detect_preset(["Email", "Record ID", "Country/Region"]) == "HubSpot"
    assert detect_preset(["Email", "Country/Region"]) is None
    columns, preset = map_columns(["Person - Email - Work", "Organization - Name", "Notes"])
    assert preset == "Pipedrive"
    assert [(c.field, c.source) for c in columns] == [
        ("email", "Pipedrive"),
        ("company", "Pipedrive"),
        ("notes", "template field"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"Notes": 3}, "map.yaml: 'Notes': expected a header and a field name, got 3"),
        ({}, "map.yaml: expected a mapping of CSV headers to fields"),
    ],
)
def test_a_map_must_name_fields(data: object, message: str) -> None:
    with pytest.raises(ProspectError) as raised:
        check_mapping(data, "map.yaml")
    assert str(raised.value).startswith(message)


def test_past_the_lines_kept_a_duplicate_is_still_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("relance.csvimport.LINES_KEPT", 1)
    text = "email\na@example.com\nb@example.com\nb@example.com\na@example.com\n"
    contacts = read_contacts(text, "contacts.csv")
    assert [error.format("contacts.csv") for error in contacts.errors] == [
        "contacts.csv:4 column email: duplicate: b@example.com is already earlier in the file",
        "contacts.csv:5 column email: duplicate: a@example.com is already on line 2",
    ]
