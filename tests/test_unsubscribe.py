"""One-click unsubscribe (RFC 8058): the link in List-Unsubscribe shows a page on GET,
unsubscribes on POST, once, and the address is never emailed again."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from store_support import T0, step, write_project

from relance.engine import Signal
from relance.enrollments import enroll
from relance.errors import NotFoundError
from relance.prospect import Prospect
from relance.store import Store
from relance.tables import enrollments, events, suppressions
from relance.unsubscribes import Subscriber, find_subscriber, unsubscribe_token
from relance.web.unsubscribe import language
from tests.web_support import MONDAY, WebProject

ADA = "ada@example.com"
ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def token_of(store: Store) -> str:
    with store.reading() as connection:
        token: str = connection.execute(select(enrollments.c.reply_token)).scalars().first()
    return token


# --- the core, on SQLite and PostgreSQL ---------------------------------------------------


def test_a_token_unsubscribes_its_prospect_once(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("hello", "email"), step("again", "email", "2d")])
    (_, enrollment_id), *_ = enroll(
        store, project.sequence, [Prospect(email=ADA)], start=T0, now=T0
    ).enrolled
    token = token_of(store)

    outcome = unsubscribe_token(store, token.upper(), now=T0, source="unsubscribe_link")
    again = unsubscribe_token(store, token, now=T0 + timedelta(hours=1), source="inbound")

    assert outcome.signal is Signal.UNSUBSCRIBED
    assert outcome.changed == [(enrollment_id, "active", "stopped")]
    assert (outcome.suppressed, outcome.duplicate) == (True, False)
    assert again.duplicate is True
    assert find_subscriber(store, token).unsubscribed is True
    with store.reading() as connection:
        recorded = connection.execute(select(events.c.kind, events.c.external_id)).all()
    assert [tuple(row) for row in recorded if row.kind == "unsubscribed"] == [
        ("unsubscribed", f"unsubscribe:{token}")
    ]


@pytest.mark.parametrize("token", ["0" * 24, "not-a-token", "", "../../etc/passwd"])
def test_an_unknown_token_is_not_found(store: Store, token: str) -> None:
    with pytest.raises(NotFoundError, match="no enrollment has this unsubscribe token"):
        unsubscribe_token(store, token, now=T0, source="unsubscribe_link")


@pytest.mark.parametrize(
    ("locale", "accept", "expected"),
    [
        ("fr", None, "fr"),
        ("en", "fr-FR,fr;q=0.9", "en"),
        (None, "de, fr;q=0.5", "fr"),
        (None, None, "en"),
    ],
)
def test_the_page_speaks_the_prospects_language(
    locale: str | None, accept: str | None, expected: str
) -> None:
    assert language(Subscriber(1, 1, locale, False), accept) == expected


# --- over real HTTP -------------------------------------------------------------------


def emailed_link(web: WebProject, locale: str = "fr") -> str:
    """Enroll Ada, send the first email; the https target of its List-Unsubscribe header."""
    web.enroll(
        "outbound-2w", [Prospect(email=ADA, locale=locale, fields={"industry": "packaging"})]
    )
    web.tick(MONDAY)
    web.clock.now = MONDAY + timedelta(days=1, hours=4)
    web.tick()
    (sent,) = web.sent_to(ADA)
    assert sent["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", sent["headers"]["List-Unsubscribe"])
    assert url is not None
    return url.group(1).removeprefix(web.settings.public_url)


def state(web: WebProject) -> tuple[str, list[str], int]:
    with web.store.reading() as connection:
        status = connection.execute(select(enrollments.c.status)).scalar_one()
        listed = connection.execute(select(suppressions.c.email)).scalars().all()
        recorded = connection.execute(
            select(events.c.id).where(events.c.kind == "unsubscribed")
        ).all()
    return status, list(listed), len(recorded)


def test_get_shows_a_confirmation_and_unsubscribes_nobody(web: WebProject) -> None:
    path = emailed_link(web)
    for _ in range(3):  # link scanners and previews fetch it, sometimes more than once
        page = web.client.get(path)
        assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Me désinscrire" in page.text
    assert '<form method="post">' in page.text
    assert "<script" not in page.text and "http" not in page.text.split("</title>")[1]
    assert state(web) == ("active", [], 0)


def test_one_click_post_unsubscribes_and_a_second_one_is_harmless(web: WebProject) -> None:
    path = emailed_link(web, locale="en")

    first = web.post(path, **ONE_CLICK)  # type: ignore[arg-type]
    second = web.post(path, **ONE_CLICK)  # type: ignore[arg-type]

    assert (first.status_code, second.status_code) == (200, 200)
    assert "You are unsubscribed" in first.text
    assert state(web) == ("stopped", [ADA], 1)
    assert "already unsubscribed" in web.client.get(path).text
    for day in range(2, 20):
        web.tick(MONDAY + timedelta(days=day, hours=4))
    assert len(web.sent_to(ADA)) == 1


def test_the_pages_button_unsubscribes_too(web: WebProject) -> None:
    path = emailed_link(web)
    response = web.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "Désinscription confirmée" in response.text
    assert state(web) == ("stopped", [ADA], 1)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_link_is_a_404_page(web: WebProject, method: str) -> None:
    response = web.client.request(
        method, "/unsubscribe/" + "f" * 24, headers={"Accept-Language": "fr-CA"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Ce lien de désinscription n’est pas valide" in response.text
    assert "Traceback" not in response.text
    english = web.client.request(method, "/unsubscribe/%3Cscript%3E")
    assert english.status_code == 404
    assert "This unsubscribe link is not valid" in english.text
    assert "<script>" not in english.text
