"""Attacks on the SDR page, over real HTTP: guessing the token, ids out of range, markup and
Jinja in prospect fields, a NUL stored before enrollment refused it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdr_support import ADELE, TOKEN, csrf_in, login
from sqlalchemy import select, update
from web_support import WebProject

from relance.tables import prospects
from relance.web.attempts import LoginAttempts

BEARER = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 10  # RELANCE_SDR_LOGIN_FAILURES_PER_MINUTE's default


def adele_id(sdr: WebProject) -> int:
    with sdr.store.reading() as connection:
        return int(
            connection.execute(
                select(prospects.c.id).where(prospects.c.email == ADELE.email)
            ).scalar_one()
        )


# Guessing the token ---------------------------------------------------------------------------


def test_wrong_bearer_tokens_get_429_after_ten_a_minute(sdr: WebProject) -> None:
    answers = [
        sdr.client.get("/sdr", headers={"Authorization": f"Bearer guess-{n}"}).status_code
        for n in range(LIMIT + 5)
    ]
    assert answers == [401] * LIMIT + [429] * 5
    refused = sdr.client.get("/sdr", headers=BEARER)  # even the right token, for now
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert TOKEN not in refused.text


def test_wrong_logins_get_429_after_ten_a_minute(sdr: WebProject) -> None:
    statuses = []
    for n in range(LIMIT + 3):
        form = sdr.client.get("/sdr/login")
        answer = sdr.client.post(
            "/sdr/login",
            data={"token": f"guess-{n}", "next": "/sdr", "csrf": csrf_in(form.text)},
        )
        statuses.append(answer.status_code)
    assert statuses == [401] * LIMIT + [429] * 3
    assert "Retry-After" in answer.headers
    assert login(sdr.client).status_code == 429  # the right token waits too
    assert "relance_sdr" not in sdr.client.cookies


def test_the_count_is_per_client_address_and_ends_with_the_window() -> None:
    attempts = LoginAttempts(3)
    for _ in range(3):
        assert attempts.wait("203.0.113.7") is None
        attempts.failed("203.0.113.7")
    wait = attempts.wait("203.0.113.7")
    assert wait is not None and 1 <= wait <= 60
    assert attempts.wait("198.51.100.2") is None


def test_right_tokens_are_not_counted(sdr: WebProject) -> None:
    for _ in range(LIMIT * 2):
        assert sdr.client.get("/sdr", headers=BEARER).status_code == 200


# Ids out of range ------------------------------------------------------------------------------

OUT_OF_RANGE = ["2147483648", "9223372036854775808", "0", "-1"]


@pytest.mark.parametrize("number", OUT_OF_RANGE)
def test_ids_out_of_range_answer_422_not_500(sdr: WebProject, number: str) -> None:
    client = sdr.client
    assert client.get(f"/sdr?done={number}", headers=BEARER).status_code == 422
    assert client.get(f"/sdr/prospects/{number}", headers=BEARER).status_code == 422
    posted = client.post(
        f"/sdr/tasks/{number}/outcome", data={"outcome": "connected"}, headers=BEARER
    )
    assert posted.status_code == 422
    assert client.post(f"/sdr/prospects/{number}/pause", headers=BEARER).status_code == 422


def test_the_largest_id_is_a_404(sdr: WebProject) -> None:
    assert sdr.client.get("/sdr/prospects/2147483647", headers=BEARER).status_code == 404


def test_the_cli_says_no_such_prospect_for_a_huge_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli_support import make_cli

    cli = make_cli(tmp_path, monkeypatch)
    assert cli.fails("status", "99999999999999999999") == (
        "error: no prospect '99999999999999999999' (give an email address or a prospect id)\n"
    )
    result = cli.run("task", "done", "9223372036854775808", "--outcome", "connected")
    assert result.exit_code == 2 and "Traceback" not in result.output


# What prospects write shows as text ------------------------------------------------------------


@pytest.fixture
def hostile(sdr: WebProject) -> Iterator[WebProject]:
    with sdr.store.transaction() as connection:
        connection.execute(
            update(prospects)
            .where(prospects.c.email == ADELE.email)
            .values(
                first_name="<script>alert(1)</script>",
                last_name="{{ 7*7 }}{% if true %}x{% endif %}",
                company="Acme\x00 Industrie",
            )
        )
    yield sdr


def test_markup_jinja_and_nul_in_prospect_fields_are_shown_as_text(hostile: WebProject) -> None:
    for path in ("/sdr?owner=all", f"/sdr/prospects/{adele_id(hostile)}"):
        page = hostile.client.get(path, headers=BEARER)
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "{{ 7*7 }}" in page.text and ">49<" not in page.text
        assert "\x00" not in page.text
