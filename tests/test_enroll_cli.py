"""``relance enroll`` (one prospect or a CSV export) and ``relance status``: exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import FIXTURES, NOW, Cli, enroll_claire, make_cli
from sqlalchemy import select

from relance.tables import enrollments, prospects


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return make_cli(tmp_path, monkeypatch)


def csv_enroll(cli: Cli, name: str, *extra: str) -> list[str]:
    return ["enroll", "outreach", "--csv", str(FIXTURES / name), "--now", NOW, *extra]


def test_enrolling_one_prospect_prints_the_enrollment_and_its_first_touch(cli: Cli) -> None:
    assert enroll_claire(cli) == (
        "enrolled claire.martin@example.com in outreach (version 1): "
        "enrollment 1, 3 touches planned\n"
        "first touch: call-intro on Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC)\n"
    )
    assert cli.count("touchpoints") == 3


def test_a_prospect_already_active_is_not_enrolled_twice(cli: Cli) -> None:
    enroll_claire(cli)
    assert enroll_claire(cli) == (
        "claire.martin@example.com is already active in outreach: not enrolled twice\n"
    )
    assert cli.count("enrollments") == 1


def test_a_stopped_prospect_is_not_enrolled_again_but_what_is_new_is_kept(cli: Cli) -> None:
    enroll_claire(cli)
    cli.ok("stop", "claire.martin@example.com", "--now", NOW)
    assert cli.fails("enroll", "outreach", "--email", "claire.martin@example.com", "--field",
                     "industry=aerospace", "--now", NOW) == (
        "error: claire.martin@example.com is not enrolled in outreach: stopped: in outreach\n"
    )  # fmt: skip
    with cli.store.reading() as connection:
        row = connection.execute(select(prospects)).one()
    assert (row.first_name, row.company, row.timezone) == (
        "Claire",
        "Acme Industrie",
        "Europe/Paris",
    )
    assert row.fields == {"industry": "aerospace"}
    assert cli.count("enrollments") == 1


def test_a_suppressed_address_is_refused(cli: Cli) -> None:
    cli.ok("suppress", "add", "claire.martin@example.com", "--reason", "asked-by-phone")
    result = cli.run("enroll", "outreach", "--email", "claire.martin@example.com",
                     "--field", "industry=x", "--now", NOW)  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: claire.martin@example.com is on the suppression list: not enrolled\n"
    )
    assert cli.count("enrollments") == 0


def test_a_field_the_templates_use_is_required_for_one_prospect(cli: Cli) -> None:
    error = cli.fails("enroll", "outreach", "--email", "ana@example.com", "--now", NOW)
    assert error == (
        "error: field 'industry' is used by the templates of outreach: "
        "give it with --field industry=...\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--deal-value", "lots"], "--deal-value: expected a number such as 25000, got 'lots'"),
        (["--timezone", "Paris"], "--timezone: expected an IANA time zone such as "
         "\"Europe/Paris\", got 'Paris'"),
        (["--field", "industry"], "--field: expected key=value such as industry=retail, "
         "got 'industry'"),
        (["--field", "company=Acme"], "--field company=Acme: use --company for company"),
        (["--start", "monday"], "--start: expected a time such as 2026-03-02T09:00+01:00, "
         "got 'monday'"),
        (["--now", "2026-03-02T09:00"], "--now: expected a time with its UTC offset such as "
         "2026-03-02T09:00+01:00 (or Z for UTC), got '2026-03-02T09:00'"),
    ],
)  # fmt: skip
def test_bad_options_are_explained_without_a_traceback(
    cli: Cli, args: list[str], message: str
) -> None:
    base = ["enroll", "outreach", "--email", "ana@example.com", "--field", "industry=x"]
    assert cli.fails(*base, *args) == f"error: {message}\n"
    assert cli.count("prospects") == 0


def test_email_or_csv_but_not_both(cli: Cli) -> None:
    assert cli.fails("enroll", "outreach") == (
        "error: give either --email (one prospect) or --csv FILE (a CRM export)\n"
    )
    both = cli.fails(*csv_enroll(cli, "contacts.csv"), "--email", "a@example.com")
    assert both == "error: give either --email (one prospect) or --csv FILE (a CRM export)\n"


def test_an_unknown_sequence_is_an_error(cli: Cli) -> None:
    error = cli.fails("enroll", "nope", "--email", "a@example.com")
    assert error.startswith("error: no sequence 'nope' in ")
    assert error.endswith("(known: outreach)\n")


def test_a_date_as_start_means_midnight_in_the_sequence_zone(cli: Cli) -> None:
    output = enroll_claire(cli, "--start", "2026-03-09")
    assert output.endswith(
        "first touch: call-intro on Mon 2026-03-09 09:00 Europe/Paris (08:00 UTC)\n"
    )


# --- CSV -------------------------------------------------------------------------------


def test_a_crm_export_is_enrolled_with_a_summary(cli: Cli) -> None:
    assert cli.ok(*csv_enroll(cli, "contacts.csv")) == (
        "contacts.csv: 3 rows checked\n"
        "enrolled 3 in outreach (version 1): 9 touches planned\n"
        "language: 1 prospect in fr written to in en (no fr templates)\n"
        "first touch: call-intro for claire.martin@example.com on "
        "Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC)\n"
    )
    with cli.store.reading() as connection:
        claire = connection.execute(
            select(prospects).where(prospects.c.email == "claire.martin@example.com")
        ).one()
        deal = connection.execute(
            select(enrollments.c.deal_value).where(enrollments.c.prospect_id == claire.id)
        ).scalar_one()
    assert claire.fields == {"industry": "automotive", "secteur_d_activite": "Usinage"}
    assert deal == 25000.5


def test_already_active_and_suppressed_rows_are_reported_not_enrolled(cli: Cli) -> None:
    enroll_claire(cli)
    cli.ok("suppress", "add", "ana.lopez@example.com")
    assert cli.ok(*csv_enroll(cli, "contacts.csv")) == (
        "contacts.csv: 3 rows checked\n"
        "enrolled 1 in outreach (version 1): 3 touches planned\n"
        "contacts.csv:2 claire.martin@example.com not enrolled: already active\n"
        "contacts.csv:4 ana.lopez@example.com not enrolled: suppressed\n"
        "not enrolled 2: already active 1, suppressed 1\n"
        "first touch: call-intro for john.doe@example.com on "
        "Mon 2026-03-02 09:00 America/New_York (14:00 UTC)\n"
    )
    assert cli.count("enrollments") == 2


def test_one_bad_row_writes_nothing(cli: Cli) -> None:
    result = cli.run(*csv_enroll(cli, "one-bad-row.csv"))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr == (
        "one-bad-row.csv:3 column deal_value: expected a number such as 25000, got 'abc'\n"
        "error: 1 row of one-bad-row.csv has problems: nothing enrolled "
        "(fix them, or use --skip-invalid to enroll the 2 valid rows)\n"
    )
    for table in ("prospects", "enrollments", "touchpoints", "sequence_versions"):
        assert cli.count(table) == 0, table


def test_every_row_error_is_listed_before_anything_is_written(cli: Cli) -> None:
    assert cli.fails(*csv_enroll(cli, "errors.csv")) == (
        "errors.csv:4 column email: expected an email address, got 'not-an-email'\n"
        'errors.csv:6 column timezone: expected an IANA time zone such as "Europe/Paris", '
        "got 'Mars/Olympus'\n"
        "errors.csv:6 column industry: expected a value (the templates of outreach use it), "
        "got an empty cell\n"
        "errors.csv:7 column email: duplicate: a@example.com is already on line 2\n"
        "errors.csv:8 expected at most 7 cells as in the header, got 8 "
        "(quote the cells that contain the separator)\n"
        "error: 4 rows of errors.csv have problems: nothing enrolled "
        "(fix them, or use --skip-invalid to enroll the 1 valid row)\n"
    )
    assert cli.count("prospects") == 0


def test_skip_invalid_enrolls_the_valid_rows_and_lists_the_others(cli: Cli) -> None:
    result = cli.run(*csv_enroll(cli, "one-bad-row.csv", "--skip-invalid"))
    assert result.exit_code == 0
    assert result.stderr == (
        "one-bad-row.csv:3 column deal_value: expected a number such as 25000, got 'abc'\n"
    )
    assert result.stdout == (
        "one-bad-row.csv: 3 rows checked, 1 invalid row skipped\n"
        "enrolled 2 in outreach (version 1): 6 touches planned\n"
        "first touch: call-intro for a@example.com on "
        "Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC)\n"
    )
    with cli.store.reading() as connection:
        emails = connection.execute(select(prospects.c.email).order_by(prospects.c.email))
        assert list(emails.scalars()) == ["a@example.com", "c@example.com"]


def test_a_column_the_templates_use_is_required(cli: Cli) -> None:
    assert cli.fails(*csv_enroll(cli, "missing-industry.csv", "--skip-invalid")) == (
        "error: column 'industry' is used by the templates of outreach "
        "but missing from missing-industry.csv\n"
    )


@pytest.mark.parametrize("name", ["empty.csv", "no-email.csv", "no-header.csv"])
def test_files_without_a_usable_header_fail_cleanly(cli: Cli, name: str) -> None:
    error = cli.fails(*csv_enroll(cli, name))
    assert error.startswith(f"error: {name}")
    assert error.count("\n") == 1


def test_a_missing_file_fails_cleanly(cli: Cli, tmp_path: Path) -> None:
    error = cli.fails("enroll", "outreach", "--csv", str(tmp_path / "nope.csv"))
    assert error == f"error: cannot read {tmp_path / 'nope.csv'}: No such file or directory\n"


def test_a_dry_run_checks_everything_and_writes_nothing(cli: Cli) -> None:
    enroll_claire(cli)
    before = {t: cli.count(t) for t in ("prospects", "enrollments", "touchpoints")}
    assert cli.ok(*csv_enroll(cli, "contacts.csv", "--dry-run")) == (
        "contacts.csv: 3 rows checked\n"
        "columns:\n"
        "  'E-mail' -> email (alias)\n"
        "  'Prénom' -> first_name (alias)\n"
        "  'Nom' -> last_name (alias)\n"
        "  'Société' -> company (alias)\n"
        "  'Téléphone' -> phone (alias)\n"
        "  'Montant' -> deal_value (alias)\n"
        "  'Cycle days' -> cycle_days\n"
        "  'Time zone' -> timezone (alias)\n"
        "  'Pays' -> country (alias)\n"
        "  'Langue' -> locale (alias)\n"
        "  'Industry' -> industry (template field)\n"
        '  "Secteur d\'activité" -> secteur_d_activite (template field)\n'
        "dry run, nothing written: would enroll 2 in outreach\n"
        "contacts.csv:2 claire.martin@example.com not enrolled: already active\n"
        "not enrolled 1: already active 1\n"
    )
    assert {t: cli.count(t) for t in before} == before


def test_json_output_for_scripts(cli: Cli) -> None:
    report = json.loads(cli.ok(*csv_enroll(cli, "one-bad-row.csv", "--skip-invalid", "--json")))
    assert report["enrolled"] == [
        {"email": "a@example.com", "enrollment_id": 1},
        {"email": "c@example.com", "enrollment_id": 2},
    ]
    assert report["invalid"] == [
        {"line": 3, "column": "deal_value", "message": "expected a number such as 25000, got 'abc'"}
    ]
    assert report["first_touch"]["due_at"] == "2026-03-02T08:00:00Z"


# --- status ----------------------------------------------------------------------------


def test_status_shows_the_timeline(cli: Cli) -> None:
    enroll_claire(cli)
    cli.dispatch("call-intro")
    cli.ok("reply", "claire.martin@example.com", "--note", "call me in May",
           "--now", "2026-03-02T10:30:00Z")  # fmt: skip
    assert cli.ok("status", "claire.martin@example.com") == (
        "Claire Martin <claire.martin@example.com> · prospect 1\n"
        "Acme Industrie · +33 1 23 45 67 89 · owner sdr@example.com · "
        "zone Europe/Paris (given) · FR\n"
        "\n"
        "outreach v1 · enrollment 1 · paused (replied)\n"
        "enrolled Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC)\n"
        "written in en: no language known for the prospect: the default (en)\n"
        "step            channel   due (Europe/Paris)    UTC               status   note\n"
        "call-intro      call      Mon 2026-03-02 09:00  2026-03-02 08:00  sent\n"
        "email-guide     email     Tue 2026-03-03 09:00  2026-03-03 08:00  planned\n"
        "reminder-slots  reminder  Thu 2026-03-05 09:00  2026-03-05 08:00  planned\n"
        "\n"
        "Tasks\n"
        "id  due (Europe/Paris)    UTC               kind  sequence  status  note\n"
        "1   Mon 2026-03-02 09:00  2026-03-02 08:00  call  outreach  open    "
        "objective of call-intro\n"
        "\n"
        "Events\n"
        "when (Europe/Paris)   UTC               event    source  sequence  details\n"
        "Mon 2026-03-02 11:30  2026-03-02 10:30  replied  cli     outreach  call me in May\n"
    )


def test_a_region_gives_its_zone_and_status_says_where_it_came_from(cli: Cli) -> None:
    cli.ok("enroll", "outreach", "--email", "sam@example.com", "--country", "US-CA",
           "--field", "industry=x", "--now", NOW)  # fmt: skip
    header = cli.ok("status", "sam@example.com").splitlines()[1]
    assert header == "zone America/Los_Angeles (from the region) · US-CA"
    data = json.loads(cli.ok("status", "sam@example.com", "--json"))["prospect"]
    assert (data["region"], data["timezone"], data["timezone_source"]) == (
        "US-CA", "America/Los_Angeles", "region",
    )  # fmt: skip


def test_an_unknown_region_is_refused_with_a_suggestion(cli: Cli) -> None:
    error = cli.fails("enroll", "outreach", "--email", "sam@example.com", "--country", "DE",
                      "--region", "Bayrn", "--field", "industry=x", "--now", NOW)  # fmt: skip
    assert error.endswith("got 'Bayrn' (did you mean 'DE-BY'?)\n")
    assert error.startswith("error: --region: expected a region of DE such as DE-BB")
    assert cli.count("prospects") == 0


def test_status_by_id_as_json(cli: Cli) -> None:
    enroll_claire(cli)
    data = json.loads(cli.ok("status", "1", "--json"))
    assert data["prospect"]["email"] == "claire.martin@example.com"
    (enrollment,) = data["enrollments"]
    assert (enrollment["sequence_id"], enrollment["version"], enrollment["status"]) == (
        "outreach", 1, "active",
    )  # fmt: skip
    assert [t["step_id"] for t in enrollment["touchpoints"]] == [
        "call-intro", "email-guide", "reminder-slots",
    ]  # fmt: skip
    assert enrollment["touchpoints"][0]["due_at"] == "2026-03-02T08:00:00Z"
    assert data["events"] == []


def test_status_of_an_unknown_prospect_is_an_error(cli: Cli) -> None:
    assert cli.fails("status", "nobody@example.com") == (
        "error: no prospect 'nobody@example.com' (give an email address or a prospect id)\n"
    )
