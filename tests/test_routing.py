"""Routing: the shipped routing.yaml, ``route`` as a table, and what an author sees.

Each ``tests/fixtures/routing/<name>.yaml`` has ``<name>.expected``, the exact output of
``relance validate --routing tests/fixtures/routing/<name>.yaml`` run from the repository
root (the shipped sequences are the known ones). Regenerate after a deliberate change
of wording with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_routing.py

and review the diff. After a change to the routing models, regenerate the schema:

    .venv/bin/relance schema --routing > schema/routing.schema.json
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from typer.testing import CliRunner

import relance.cli  # noqa: F401  (registers every command)
from relance.cli.app import app
from relance.csvimport import read_contacts
from relance.errors import RoutingError
from relance.qualification import Grid, Qualification, Stage, Warmth
from relance.routing import NO_RULE, Route, Routing, load_routing_text, resolve_routing, route
from relance.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "routing"
BAD_FILES = sorted(FIXTURES.glob("*.yaml"))
SHIPPED = [p.stem for p in (ROOT / "sequences").glob("*.yaml")]

runner = CliRunner()


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in list(os.environ):
        if name.startswith("RELANCE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def shipped() -> Routing:
    return resolve_routing(ROOT / "routing.yaml", Settings(home=ROOT))


def grid(need: int, budget: int, authority: int, timing: int, fit: int) -> Grid:
    return Grid(need=need, budget=budget, authority=authority, timing=timing, fit=fit)


# --- the shipped routing.yaml, as a table -------------------------------------------------


@pytest.mark.parametrize(
    ("qualification", "sequence", "stage", "reason"),
    [
        (
            Qualification(grid(3, 3, 3, 3, 3)),
            "outbound-2w",
            Stage.SQL,
            "hot and qualified: hot, score 15 >= 10, authority 3 >= 2",
        ),
        (
            Qualification(grid(2, 1, 3, 2, 2), Warmth.HOT),
            "outbound-2w",
            Stage.SQL,
            "hot and qualified: hot (given), score 10 >= 10, authority 3 >= 2",
        ),
        (  # hot, but nobody who decides: nurtured until the decision maker is found
            Qualification(grid(3, 2, 1, 3, 2)),
            "nurture-warm",
            Stage.MQL,
            "warm, or hot but not qualified: hot",
        ),
        (
            Qualification(grid(2, 2, 2, 2, 3)),
            "nurture-warm",
            Stage.MQL,
            "warm, or hot but not qualified: warm",
        ),
        (Qualification(), "nurture-cold-12m", Stage.PROSPECT, "cold or poorly qualified"),
        (
            Qualification(grid(3, 3, 3, 0, 3)),
            "nurture-cold-12m",
            Stage.PROSPECT,
            "cold or poorly qualified",
        ),
        (
            Qualification(grid(3, 3, 3, 3, 3), Warmth.COLD),
            "nurture-cold-12m",
            Stage.PROSPECT,
            "cold or poorly qualified",
        ),
        (Qualification(grid(3, 3, 3, 3, 0)), None, None, "not a fit: fit 0 <= 0"),
        (
            Qualification(grid(3, 3, 3, 3, 3), None, Stage.CLIENT),
            None,
            None,
            "already in a conversation: stage client",
        ),
    ],
)
def test_the_shipped_rules_route_by_warmth_and_qualification(
    shipped: Routing,
    qualification: Qualification,
    sequence: str | None,
    stage: Stage | None,
    reason: str,
) -> None:
    assert route(qualification, shipped) == Route(sequence, reason, reason.split(":")[0], stage)


def test_every_row_of_the_bundled_leads_goes_where_the_articles_say(shipped: Routing) -> None:
    text = resources.files("relance").joinpath("samples/leads.csv").read_text("utf-8")
    contacts = read_contacts(text, "leads.csv")
    assert contacts.errors == []
    routed = {
        person.email.split("@")[0]: route(
            Qualification(Grid.of(person), person.warmth, person.stage or Stage.LEAD), shipped
        ).sequence_id
        for person in contacts.prospects
    }
    by_sequence: dict[str | None, list[str]] = {}
    for who, sequence in routed.items():
        by_sequence.setdefault(sequence, []).append(who)
    assert by_sequence == {
        "outbound-2w": [
            "lea.fontaine", "mathis.girard", "ines.marchand", "sarah.keller", "thibault.renard",
        ],
        "nurture-warm": [
            "julie.bonnet", "oscar.lindqvist", "nadia.cherif", "victor.lambert",
            "claire.dumont", "paul.moreau",
        ],
        "nurture-cold-12m": [
            "emma.wright", "hugo.perrin", "alice.roux", "benoit.leclerc", "marie.collin",
            "antoine.vidal", "tom.evans",
        ],
        None: ["david.cohen", "laura.schmitt"],
    }  # fmt: skip


# --- conditions ------------------------------------------------------------------------------


def rules(text: str) -> Routing:
    loaded = load_routing_text(text, "routing.yaml", known_sequences=["a", "b"])
    assert loaded.problems == []
    assert loaded.value is not None
    return loaded.value


def test_a_criterion_not_assessed_meets_no_bound() -> None:
    routing = rules(
        "rules:\n"
        "  - {name: low fit, when: {at_most: {fit: 1}}, sequence: a}\n"
        "  - {name: decider, when: {at_least: {authority: 0}}, sequence: b}\n"
    )
    assert route(Qualification(Grid()), routing) == Route(None, NO_RULE)
    assert route(Qualification(Grid(fit=1)), routing).reason == "low fit: fit 1 <= 1"
    assert route(Qualification(Grid(authority=0)), routing).reason == ("decider: authority 0 >= 0")


def test_score_bounds_and_stages_together() -> None:
    routing = rules(
        "rules:\n"
        "  - name: middle\n"
        "    when: {min_score: 5, max_score: 9, stage: [lead, prospect], warmth: [cold, warm]}\n"
        "    sequence: a\n"
    )
    middle = Qualification(Grid(need=2, fit=3))
    assert route(middle, routing) == Route(
        "a", "middle: cold, score 5 >= 5, score 5 <= 9, stage lead", "middle", Stage.PROSPECT
    )
    assert route(Qualification(Grid(need=2, fit=3), None, Stage.MQL), routing).sequence_id is None
    assert route(Qualification(Grid(need=3, fit=3, budget=3, authority=1)), routing) == Route(
        None, NO_RULE
    )


# --- golden errors ----------------------------------------------------------------------------


def test_there_are_golden_files_for_every_bad_routing_file() -> None:
    assert len(BAD_FILES) >= 10
    assert {p.stem for p in BAD_FILES} == {p.stem for p in FIXTURES.glob("*.expected")}


@pytest.mark.parametrize("bad", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_validate_routing_prints_the_golden_text(bad: Path, at_root: None) -> None:
    result = runner.invoke(app, ["validate", "--routing", f"tests/fixtures/routing/{bad.name}"])
    golden = bad.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(result.stdout, encoding="utf-8")
    assert result.stdout == golden.read_text(encoding="utf-8")
    assert result.exit_code == 1


def test_a_misspelled_key_gets_a_suggestion(at_root: None) -> None:
    result = runner.invoke(
        app, ["validate", "--routing", "tests/fixtures/routing/unknown-key.yaml"]
    )
    assert result.stdout.startswith(
        "tests/fixtures/routing/unknown-key.yaml:3:12 rules[0].when.warmt: unknown key\n"
        "  hint: did you mean 'warmth'?\n"
    )


def test_enrolling_with_a_bad_routing_file_lists_its_problems(at_root: None) -> None:
    with pytest.raises(RoutingError) as error:
        resolve_routing(FIXTURES / "unknown-sequence.yaml", Settings())
    assert [p.path for p in error.value.problems] == ["rules[1].sequence", "rules[2].sequence"]


def test_validate_checks_the_project_routing_file_with_the_sequences(at_root: None) -> None:
    result = runner.invoke(app, ["validate"])
    assert (result.exit_code, result.stdout) == (0, "3 sequences ok, routing.yaml ok\n")
    result = runner.invoke(app, ["validate", "routing.yaml"])
    assert (result.exit_code, result.stdout) == (0, "routing.yaml ok\n")
    result = runner.invoke(app, ["validate", "sequences/outbound-2w.yaml"])
    assert (result.exit_code, result.stdout) == (0, "1 sequence ok\n")


def test_a_project_without_routing_file_validates_its_sequences_only(
    at_root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "outbound-2w.yaml").write_bytes(
        (ROOT / "sequences" / "outbound-2w.yaml").read_bytes()
    )
    monkeypatch.setenv("RELANCE_HOME", str(tmp_path))
    monkeypatch.setenv("RELANCE_TEMPLATES_DIR", str(ROOT / "templates"))
    result = runner.invoke(app, ["validate"])
    assert (result.exit_code, result.stdout) == (0, "1 sequence ok\n")


# --- schema -------------------------------------------------------------------------------------


@pytest.fixture
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (ROOT / "schema" / "routing.schema.json").read_text(encoding="utf-8")
    )
    return document


def test_the_committed_routing_schema_is_what_the_command_prints() -> None:
    result = runner.invoke(app, ["schema", "--routing"])
    assert result.exit_code == 0
    committed = (ROOT / "schema" / "routing.schema.json").read_text(encoding="utf-8")
    assert result.stdout == committed, (
        "schema/routing.schema.json is stale: run "
        "`.venv/bin/relance schema --routing > schema/routing.schema.json`"
    )


def test_the_schema_accepts_the_shipped_file_and_rejects_a_typo(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    shipped = yaml.safe_load((ROOT / "routing.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(shipped, schema)
    shipped["rules"][0]["when"]["warmt"] = "hot"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(shipped, schema)


def test_the_shipped_file_names_its_schema_and_only_shipped_sequences(shipped: Routing) -> None:
    first = (ROOT / "routing.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=schema/routing.schema.json"
    assert set(shipped.sequence_ids()) == set(SHIPPED)
