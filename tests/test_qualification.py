"""The qualification grid, warmth and lifecycle stages: pure tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relance.errors import ProspectError
from relance.prospect import Prospect, prospect_from_row
from relance.qualification import (
    CRITERIA,
    STAGES,
    Criterion,
    Grid,
    Qualification,
    Stage,
    Warmth,
    automatic_move,
    derive_warmth,
    is_forward,
    parse_score,
    parse_stage,
    parse_warmth,
    qualification_of,
    warmth_of,
)

scores = st.one_of(st.none(), st.integers(min_value=0, max_value=3))
grids = st.builds(Grid, need=scores, budget=scores, authority=scores, timing=scores, fit=scores)


def grid(need: int, budget: int, authority: int, timing: int, fit: int) -> Grid:
    return Grid(need=need, budget=budget, authority=authority, timing=timing, fit=fit)


@pytest.mark.parametrize(
    ("scores", "warmth"),
    [
        # need, budget, authority, timing, fit
        ((3, 3, 3, 3, 3), Warmth.HOT),
        ((2, 2, 1, 3, 2), Warmth.HOT),  # the least that is hot: total 10
        ((2, 1, 1, 3, 2), Warmth.WARM),  # total 9: imminent but not enough known
        ((1, 3, 3, 3, 3), Warmth.WARM),  # need 1: not hot, whatever the rest
        ((3, 3, 3, 2, 3), Warmth.WARM),  # 3-12 months is warm at best
        ((1, 1, 1, 2, 1), Warmth.WARM),  # the least that is warm: total 6
        ((1, 1, 1, 2, 0), Warmth.COLD),  # total 5
        ((0, 3, 3, 3, 3), Warmth.COLD),  # no need
        ((3, 3, 3, 1, 3), Warmth.COLD),  # beyond 12 months
        ((3, 3, 3, 0, 3), Warmth.COLD),  # no project
    ],
)
def test_warmth_is_derived_from_timing_need_and_total(
    scores: tuple[int, int, int, int, int], warmth: Warmth
) -> None:
    assert derive_warmth(grid(*scores)) is warmth


def test_an_unassessed_grid_is_cold_and_counts_zero() -> None:
    assert derive_warmth(Grid()) is Warmth.COLD
    assert Grid(need=3, timing=3).total == 6
    assert not Grid().assessed
    assert Grid(fit=0).assessed


def test_warmth_given_wins_over_the_grid() -> None:
    hot = grid(3, 3, 3, 3, 3)
    assert warmth_of(hot, Warmth.COLD) == (Warmth.COLD, True)
    assert warmth_of(hot, None) == (Warmth.HOT, False)
    assert Qualification(hot, Warmth.WARM).describe_warmth() == "warm (given)"
    assert Qualification(hot).describe_warmth() == "hot"


def test_a_grid_describes_itself() -> None:
    assert Grid(need=3, budget=2, timing=3, fit=2).describe() == (
        "need 3, budget 2, authority -, timing 3, fit 2 = 10/15"
    )
    assert Qualification(Grid(need=1), None, Stage.MQL).describe() == (
        "need 1, budget -, authority -, timing -, fit - = 1/15; cold; stage mql"
    )


@given(grids, st.sampled_from(CRITERIA))
def test_a_better_score_never_makes_a_contact_colder(base: Grid, criterion: Criterion) -> None:
    order = list(Warmth)
    current = base.score(criterion)
    for better in range(4):
        if current is not None and better < current:
            continue
        raised = base.replace({criterion: better})
        assert order.index(derive_warmth(raised)) >= order.index(derive_warmth(base))


# --- stages -------------------------------------------------------------------------------


def test_stages_run_from_suspect_to_client() -> None:
    assert [stage.value for stage in STAGES] == [
        "suspect", "lead", "prospect", "mql", "sql", "meeting", "client",
    ]  # fmt: skip
    assert is_forward(Stage.LEAD, Stage.SQL)
    assert not is_forward(Stage.SQL, Stage.LEAD)
    assert not is_forward(Stage.SQL, Stage.SQL)


@given(st.sampled_from(STAGES), st.sampled_from(STAGES))
def test_an_automatic_move_never_goes_back(current: Stage, target: Stage) -> None:
    moved = automatic_move(current, target)
    if moved is None:
        assert STAGES.index(target) <= STAGES.index(current)
    else:
        assert moved is target
        assert STAGES.index(moved) > STAGES.index(current)


def test_an_import_over_a_known_contact_keeps_what_it_leaves_empty() -> None:
    stored = Qualification(Grid(need=2, budget=1, timing=1), Warmth.WARM, Stage.MQL)
    row = Prospect(email="a@example.com", budget=3, timing=3, stage="lead")
    merged = qualification_of(row, stored)
    assert merged.grid == Grid(need=2, budget=3, timing=3)
    assert merged.given_warmth is Warmth.WARM
    assert merged.stage is Stage.MQL  # never back
    assert qualification_of(Prospect(email="a@example.com", stage="sql"), stored).stage is (
        Stage.SQL
    )
    assert qualification_of(Prospect(email="a@example.com")).stage is Stage.LEAD
    assert qualification_of(Prospect(email="a@example.com", stage="suspect")).stage is (
        Stage.SUSPECT
    )


# --- reading what people write ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "score"), [("0", 0), ("3", 3), (" 2 ", 2), ("2.0", 2), ("", None), (None, None)]
)
def test_scores_read(text: str | None, score: int | None) -> None:
    assert parse_score(text) == score


@pytest.mark.parametrize("text", ["4", "-1", "1.5", "high", True])
def test_scores_out_of_the_grid_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="expected a score from 0 to 3"):
        parse_score(text)


@pytest.mark.parametrize(
    ("text", "warmth"),
    [("hot", Warmth.HOT), ("Warm", Warmth.WARM), ("froid", Warmth.COLD), ("Tiède", Warmth.WARM),
     ("chaud", Warmth.HOT), ("", None)],
)  # fmt: skip
def test_warmth_reads_english_and_french(text: str, warmth: Warmth | None) -> None:
    assert parse_warmth(text) is warmth


@pytest.mark.parametrize(
    ("text", "stage"),
    [("SQL", Stage.SQL), ("Marketing qualified lead", Stage.MQL), ("rendez-vous", Stage.MEETING),
     ("Customer", Stage.CLIENT), ("suspect", Stage.SUSPECT), (" ", None)],
)  # fmt: skip
def test_stages_read_as_crms_write_them(text: str, stage: Stage | None) -> None:
    assert parse_stage(text) is stage


def test_a_csv_row_carries_the_grid_and_a_bad_cell_names_its_column() -> None:
    prospect = prospect_from_row(
        {"email": "a@example.com", "need": "3", "authority": "2", "stage": "MQL", "warmth": ""}
    )
    assert (prospect.need, prospect.authority, prospect.budget) == (3, 2, None)
    assert (prospect.stage, prospect.warmth) == (Stage.MQL, None)
    assert "need" not in prospect.context()  # the grid picks the sequence, not the words
    with pytest.raises(ProspectError) as error:
        prospect_from_row({"email": "a@example.com", "need": "5", "warmth": "lukewarm"})
    assert str(error.value) == (
        "column need: expected a score from 0 to 3, got '5'; "
        "column warmth: expected cold, warm or hot, got 'lukewarm'"
    )
