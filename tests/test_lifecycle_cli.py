"""Stages in the store and on the command line: ``relance enroll --route``, ``relance stage``,
``relance qualify``, and the moves that imports, routing and bookings make by themselves.

The CLI tests run on the shipped project (sequences, templates, routing.yaml) with a store
in a temporary directory.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from store_support import T0, people
from typer.testing import CliRunner, Result

import relance.cli  # noqa: F401 - registers every command
from relance.catalog import resolve_sequence
from relance.cli.app import app
from relance.enrollments import enroll, enroll_groups
from relance.intake import route_and_enroll
from relance.lifecycle import move_stage, stage_history
from relance.prospect import Prospect
from relance.qualification import Stage
from relance.settings import Settings
from relance.signals import book, find_prospect
from relance.store import Store
from relance.tables import enrollments, prospects, stage_moves

ROOT = Path(__file__).resolve().parent.parent
LEADS = ROOT / "relance" / "samples" / "leads.csv"
NOW = "2026-03-02T08:00:00Z"
LEA = "lea.fontaine@altura-energie.example"
ANTOINE = "antoine.vidal@quartz-logistique.example"


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args))

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def fails(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return result.stderr

    @property
    def store(self) -> Store:
        return Store(f"sqlite:///{(self.data_dir / 'relance.db').as_posix()}")

    def moves(self, email: str) -> list[tuple[str | None, str, str, str | None]]:
        with self.store.reading() as connection:
            prospect_id = find_prospect(connection, email).id
            return [
                (m.from_stage, m.to_stage, m.source, m.note)
                for m in stage_history(connection, prospect_id)
            ]

    def count(self, table: Any) -> int:
        with self.store.reading() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in ("RELANCE_DATABASE_URL", "RELANCE_SEQUENCES_DIR", "RELANCE_TEMPLATES_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(ROOT))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("relance.cli.work.emit_prospect_event", lambda *args, **kwargs: True)
    return Cli(tmp_path / "data")


def route_leads(cli: Cli, *extra: str) -> str:
    return cli.ok("enroll", "--route", "--csv", str(LEADS), "--now", NOW, *extra)


ROUTED = """\
leads.csv: 20 rows checked, routed by routing.yaml
email                                     grid   warmth        sequence          stage     why
lea.fontaine@altura-energie.example       15/15  hot           outbound-2w       sql       hot and qualified: hot, score 15 >= 10, authority 3 >= 2
mathis.girard@brevia-pack.example         13/15  hot           outbound-2w       sql       hot and qualified: hot, score 13 >= 10, authority 3 >= 2
ines.marchand@corvus-metal.example        11/15  hot           outbound-2w       sql       hot and qualified: hot, score 11 >= 10, authority 2 >= 2
sarah.keller@dorado-tools.example         12/15  hot           outbound-2w       sql       hot and qualified: hot, score 12 >= 10, authority 2 >= 2
thibault.renard@elbaz-froid.example       10/15  hot (given)   outbound-2w       sql       hot and qualified: hot (given), score 10 >= 10, authority 3 >= 2
julie.bonnet@fenwick-textiles.example     11/15  hot           nurture-warm      mql       warm, or hot but not qualified: hot
oscar.lindqvist@granite-labs.example      8/15   warm          nurture-warm      mql       warm, or hot but not qualified: warm
nadia.cherif@helix-composites.example     11/15  warm          nurture-warm      mql       warm, or hot but not qualified: warm
victor.lambert@isotherm-batiment.example  8/15   warm          nurture-warm      mql       warm, or hot but not qualified: warm
claire.dumont@jura-precision.example      -      warm (given)  nurture-warm      mql       warm, or hot but not qualified: warm (given)
paul.moreau@kestrel-mobilier.example      8/15   warm          nurture-warm      mql       warm, or hot but not qualified: warm
emma.wright@lumiere-optics.example        5/15   cold          nurture-cold-12m  prospect  cold or poorly qualified
hugo.perrin@montblanc-plasturgie.example  -      cold          nurture-cold-12m  prospect  cold or poorly qualified
alice.roux@nexa-pharma.example            9/15   cold          nurture-cold-12m  prospect  cold or poorly qualified
benoit.leclerc@orion-robotique.example    12/15  cold          nurture-cold-12m  prospect  cold or poorly qualified
marie.collin@pyrene-agro.example          9/15   cold          nurture-cold-12m  prospect  cold or poorly qualified
antoine.vidal@quartz-logistique.example   10/15  cold (given)  nurture-cold-12m  mql       cold or poorly qualified
david.cohen@riviera-events.example        6/15   warm          none              lead      not a fit: fit 0 <= 0
laura.schmitt@saar-antriebe.example       15/15  hot           none              client    already in a conversation: stage client
tom.evans@tidewater-foods.example         8/15   cold          nurture-cold-12m  prospect  cold or poorly qualified
"""  # noqa: E501


def test_routing_the_bundled_leads_prints_a_line_per_row_then_enrolls_each_group(
    cli: Cli,
) -> None:
    assert route_leads(cli) == ROUTED + (
        "enrolled 5 in outbound-2w (version 1): 30 touches planned\n"
        "first touch: call-intro for lea.fontaine@altura-energie.example on "
        "Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC)\n"
        "enrolled 6 in nurture-warm (version 1): 42 touches planned\n"
        "first touch: guide-mistakes for julie.bonnet@fenwick-textiles.example on "
        "Tue 2026-03-03 09:00 Europe/Paris (08:00 UTC)\n"
        "enrolled 7 in nurture-cold-12m (version 1): 84 touches planned\n"
        "first touch: trends-report for hugo.perrin@montblanc-plasturgie.example on "
        "Thu 2026-03-19 09:00 Europe/Paris (08:00 UTC)\n"
        "not enrolled 2 (no sequence): david.cohen@riviera-events.example, "
        "laura.schmitt@saar-antriebe.example\n"
        "stages moved: 5 to sql, 6 to mql, 6 to prospect\n"
    )
    with cli.store.reading() as connection:
        by_sequence = {
            row.sequence_id: row.n
            for row in connection.execute(
                select(enrollments.c.sequence_id, func.count().label("n")).group_by(
                    enrollments.c.sequence_id
                )
            )
        }
        stored = connection.execute(
            select(prospects.c.need, prospects.c.warmth, prospects.c.stage).where(
                prospects.c.email == "thibault.renard@elbaz-froid.example"
            )
        ).one()
    assert by_sequence == {"outbound-2w": 5, "nurture-warm": 6, "nurture-cold-12m": 7}
    assert tuple(stored) == (2, "hot", "sql")
    assert cli.count(prospects) == 18  # the contacts routed to no sequence are not saved


def test_every_stage_move_is_kept_with_its_date_and_source(cli: Cli) -> None:
    route_leads(cli)
    assert cli.moves(LEA) == [
        (None, "lead", "import", None),
        ("lead", "sql", "routing", "hot and qualified"),
    ]
    assert cli.moves("nadia.cherif@helix-composites.example") == [
        (None, "suspect", "import", None),
        ("suspect", "mql", "routing", "warm, or hot but not qualified"),
    ]
    # Given at mql and routed to the cold sequence: routing never moves a contact back.
    assert cli.moves(ANTOINE) == [(None, "mql", "import", None)]
    with cli.store.reading() as connection:
        dates = set(connection.execute(select(stage_moves.c.moved_at)).scalars())
    assert dates == {datetime(2026, 3, 2, 8, 0, tzinfo=UTC)}


def test_routing_the_same_file_again_enrolls_nobody_twice_and_moves_nothing(cli: Cli) -> None:
    route_leads(cli)
    again = route_leads(cli)
    assert "already active 5: lea.fontaine@altura-energie.example" in again
    assert "stages moved" not in again
    assert cli.count(enrollments) == 18
    assert len(cli.moves(LEA)) == 2


def test_a_dry_run_routes_and_writes_nothing(cli: Cli) -> None:
    output = route_leads(cli, "--dry-run")
    assert output == ROUTED + (
        "dry run, nothing written: would enroll 5 in outbound-2w\n"
        "dry run, nothing written: would enroll 6 in nurture-warm\n"
        "dry run, nothing written: would enroll 7 in nurture-cold-12m\n"
        "not enrolled 2 (no sequence): david.cohen@riviera-events.example, "
        "laura.schmitt@saar-antriebe.example\n"
    )
    assert cli.count(prospects) == 0


def test_a_row_missing_what_its_sequence_needs_stops_the_whole_file(
    cli: Cli, tmp_path: Path
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,industry,need,timing,fit\n"
        "hot@a.example,retail,3,3,3\n"
        "cold@b.example,,0,0,2\n"
        "nofit@c.example,,3,3,0\n",
        encoding="utf-8",
    )
    error = cli.fails("enroll", "--route", "--csv", str(leads), "--now", NOW)
    assert error == (
        "leads.csv:3 column industry: expected a value (routed to nurture-cold-12m, whose "
        "templates use it), got an empty cell\n"
        "error: 1 row of leads.csv has problems: nothing enrolled (fix them, or use "
        "--skip-invalid to enroll the 2 valid rows)\n"
    )
    assert cli.count(prospects) == 0
    output = cli.ok("enroll", "--route", "--csv", str(leads), "--now", NOW, "--skip-invalid")
    assert output.startswith("leads.csv: 3 rows checked, 1 invalid row skipped, routed by")
    assert "enrolled 1 in nurture-warm (version 1)" in output  # 9/15, need 3: warm
    assert cli.count(enrollments) == 1


def test_the_routed_enrollment_in_json(cli: Cli) -> None:
    data = json.loads(route_leads(cli, "--json"))
    assert [s["sequence"] for s in data["enrollments"]] == [
        "outbound-2w", "nurture-warm", "nurture-cold-12m",
    ]  # fmt: skip
    assert data["contacts"][4] == {
        "line": 6,
        "email": "thibault.renard@elbaz-froid.example",
        "grid": {"need": 2, "budget": 1, "authority": 3, "timing": 2, "fit": 2},
        "total": 10,
        "warmth": "hot",
        "warmth_given": True,
        "stage": "sql",
        "sequence": "outbound-2w",
        "rule": "hot and qualified",
        "reason": "hot and qualified: hot (given), score 10 >= 10, authority 3 >= 2",
    }
    assert data["not_enrolled"] == [
        "david.cohen@riviera-events.example", "laura.schmitt@saar-antriebe.example",
    ]  # fmt: skip
    assert len(data["stage_moves"]) == 17


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["outbound-2w", "--route", "--csv", str(LEADS)], "--route chooses each row's sequence: "
         "give no SEQUENCE"),
        (["--route", "--email", "a@b.example"], "--route routes the rows of a CRM export: give "
         "--csv FILE"),
        (["outbound-2w", "--csv", str(LEADS), "--routing", "routing.yaml"],
         "--routing goes with --route"),
        (["--csv", str(LEADS)], "give the SEQUENCE to enroll in, or --route to let routing.yaml "
         "choose"),
        (["--route", "--csv", str(LEADS), "--company", "Acme"], "--company: give prospect details "
         "in the CSV file"),
    ],
)  # fmt: skip
def test_route_option_mistakes_are_explained(cli: Cli, args: list[str], message: str) -> None:
    assert cli.fails("enroll", *args, "--now", NOW) == f"error: {message}\n"


def test_a_bad_routing_file_is_listed_and_nothing_is_enrolled(cli: Cli) -> None:
    bad = ROOT / "tests" / "fixtures" / "routing" / "unknown-key.yaml"
    error = cli.fails("enroll", "--route", "--routing", str(bad), "--csv", str(LEADS))
    assert error.startswith(f"error: {bad}:3:12 rules[0].when.warmt: unknown key\n")
    assert error.endswith("2 problems found\n")
    assert cli.count(prospects) == 0


# --- relance stage / relance qualify ---------------------------------------------------------


def test_a_stage_moves_by_hand_forward_and_back_with_a_note(cli: Cli) -> None:
    route_leads(cli)
    assert cli.ok("stage", LEA, "--to", "meeting", "--now", "2026-03-04T10:00:00Z") == (
        f"{LEA}: sql -> meeting (by hand)\n"
    )
    assert cli.fails("stage", LEA, "--to", "lead", "--now", "2026-03-05T10:00:00Z") == (
        f"error: moving {LEA} back from meeting to lead needs a note saying why (--note)\n"
    )
    cli.ok("stage", LEA, "--to", "Lead", "--note", "no budget after all",
           "--now", "2026-03-05T10:00:00Z")  # fmt: skip
    assert cli.fails("stage", LEA, "--to", "lead") == f"error: {LEA} is already at stage lead\n"
    assert cli.ok("stage", LEA) == (
        f"{LEA}: stage lead\n"
        "moved at              from     to       source   note\n"
        "2026-03-02 08:00 UTC  -        lead     import\n"
        "2026-03-02 08:00 UTC  lead     sql      routing  hot and qualified\n"
        "2026-03-04 10:00 UTC  sql      meeting  cli\n"
        "2026-03-05 10:00 UTC  meeting  lead     cli      no budget after all\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "won"], "--to: expected one of suspect, lead, prospect, mql, sql, meeting, "
         "client, got 'won'"),
        (["--note", "why"], "--note goes with --to: a note explains a move"),
    ],
)  # fmt: skip
def test_stage_mistakes_are_explained(cli: Cli, args: list[str], message: str) -> None:
    route_leads(cli)
    assert cli.fails("stage", LEA, *args) == f"error: {message}\n"
    assert cli.fails("stage", "nobody@x.example") == (
        "error: no prospect 'nobody@x.example' (give an email address or a prospect id)\n"
    )


def test_qualify_sets_the_grid_and_the_warmth(cli: Cli) -> None:
    route_leads(cli)
    assert cli.ok("qualify", ANTOINE, "--timing", "3", "--need", "3", "--now", NOW) == (
        f"{ANTOINE}: need 3, budget 2, authority 2, timing 3, fit 2 = 12/15; cold (given); "
        "stage mql\n"
    )
    assert cli.ok("qualify", ANTOINE, "--warmth", "derived", "--fit", "-", "--now", NOW) == (
        f"{ANTOINE}: need 3, budget 2, authority 2, timing 3, fit - = 10/15; hot; stage mql\n"
    )
    assert cli.ok("qualify", ANTOINE, "--warmth", "tiède", "--now", NOW).endswith(
        "warm (given); stage mql\n"
    )
    assert cli.fails("qualify", ANTOINE, "--budget", "5") == (
        "error: --budget: expected a score from 0 to 3, got '5'\n"
    )
    assert cli.fails("qualify", ANTOINE, "--warmth", "boiling") == (
        "error: --warmth: expected cold, warm or hot, got 'boiling', or derived\n"
    )
    data = json.loads(cli.ok("qualify", ANTOINE, "--json"))
    assert (data["total"], data["warmth"], data["warmth_given"]) == (10, "warm", True)


def test_a_booking_moves_the_stage_to_meeting(cli: Cli) -> None:
    route_leads(cli)
    cli.ok("book", LEA, "--at", "2026-03-10T10:00:00+01:00", "--now", "2026-03-03T10:00:00Z")
    assert cli.moves(LEA)[-1] == ("sql", "meeting", "booking", None)
    assert cli.ok("stage", LEA).startswith(f"{LEA}: stage meeting\n")


# --- in the store (SQLite and PostgreSQL) ------------------------------------------------------


def project_settings() -> Settings:
    return Settings(home=ROOT, data_dir=ROOT / "var" / "unused")


def stage_of(store: Store, email: str) -> str:
    with store.reading() as connection:
        return str(find_prospect(connection, email).stage)


def test_route_and_enroll_is_one_call_for_the_demo(store: Store) -> None:
    text = resources.files("relance").joinpath("samples/leads.csv").read_text("utf-8")
    report = route_and_enroll(store, project_settings(), text, start=T0, now=T0)
    assert {sid: len(r.enrolled) for sid, r in report.results.items()} == {
        "outbound-2w": 5, "nurture-warm": 6, "nurture-cold-12m": 7,
    }  # fmt: skip
    assert len(report.moves) == 17
    assert stage_of(store, LEA) == "sql"


def test_all_groups_are_enrolled_in_one_transaction(store: Store) -> None:
    settings = project_settings()
    outbound = resolve_sequence("outbound-2w", settings)
    warm = resolve_sequence("nurture-warm", settings)
    groups = [
        (outbound, people(2, prefix="o", fields={"industry": "x"})),
        (warm, people(2, prefix="w")),
    ]

    def fail(*_: object) -> None:
        raise RuntimeError("the stage moves failed")

    with pytest.raises(RuntimeError):
        enroll_groups(store, groups, start=T0, now=T0, after=fail)
    with store.reading() as connection:
        assert connection.execute(select(func.count()).select_from(prospects)).scalar() == 0
    results = enroll_groups(store, groups, start=T0, now=T0)
    assert [len(result.enrolled) for result in results] == [2, 2]


def test_automatic_moves_never_go_back_but_a_person_may(store: Store) -> None:
    sequence = resolve_sequence("nurture-warm", project_settings())
    ada = "ada@example.com"
    enroll(store, sequence, [Prospect(email=ada)], start=T0, now=T0)
    again = enroll(store, sequence, [Prospect(email=ada, stage="client")], start=T0, now=T0)
    assert [str(why) for _, why in again.refused] == ["client"]  # moved, not chased again
    enroll(store, sequence, [Prospect(email=ada, stage="lead")], start=T0, now=T0)  # ignored
    book(store, ada, starts_at=T0 + timedelta(days=3), duration=timedelta(minutes=30), now=T0)
    assert stage_of(store, ada) == "client"
    later = T0 + timedelta(days=1)
    move = move_stage(store, ada, Stage.SQL, now=later, note="the contract ended")
    assert (move.from_stage, move.to_stage, move.moved_at) == (Stage.CLIENT, Stage.SQL, later)
    with store.reading() as connection:
        history = stage_history(connection, find_prospect(connection, ada).id)
    assert [(m.from_stage, m.to_stage, m.source) for m in history] == [
        (None, Stage.LEAD, "import"),
        (Stage.LEAD, Stage.CLIENT, "import"),
        (Stage.CLIENT, Stage.SQL, "cli"),
    ]


def test_an_import_moves_a_known_contact_forward(store: Store) -> None:
    sequence = resolve_sequence("nurture-warm", project_settings())
    ada = "ada@example.com"
    enroll(store, sequence, [Prospect(email=ada, need=2)], start=T0, now=T0)
    later = T0 + timedelta(hours=1)
    sequence_b = resolve_sequence("outbound-2w", project_settings())
    grace = Prospect(email=ada, stage="mql", fit=3, fields={"industry": "x"})
    enroll(store, sequence_b, [grace], start=later, now=later)
    with store.reading() as connection:
        row = find_prospect(connection, ada)
        history = stage_history(connection, row.id)
    assert (row.stage, row.need, row.fit) == ("mql", 2, 3)
    assert [(m.to_stage, m.source, m.moved_at) for m in history] == [
        (Stage.LEAD, "import", T0),
        (Stage.MQL, "import", later),
    ]


def test_one_prospect_enrolled_by_hand_may_carry_its_grid(cli: Cli) -> None:
    cli.ok("enroll", "nurture-warm", "--email", "ada@example.com", "--field", "need=3",
           "--field", "stage=MQL", "--now", NOW)  # fmt: skip
    assert cli.ok("qualify", "ada@example.com") == (
        "ada@example.com: need 3, budget -, authority -, timing -, fit - = 3/15; cold; stage mql\n"
    )
    assert cli.fails("enroll", "nurture-warm", "--email", "bob@example.com", "--field",
                     "need=9", "--now", NOW) == (
        "error: --field need: expected a score from 0 to 3, got '9'\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["qualify"], "Example: relance qualify claire.martin@example.com --need 3"),
        (["stage"], "Example: relance stage claire.martin@example.com --to sql"),
        (["enroll"], "Example: relance enroll --route --csv leads.csv --dry-run"),
        (["schema"], "--routing"),
        (["validate"], "Example: relance validate --routing routing.yaml"),
    ],
)
def test_help_shows_an_example(cli: Cli, command: list[str], example: str) -> None:
    assert example in " ".join(cli.ok(*command, "--help").split())
