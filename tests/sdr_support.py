"""Test support for the SDR page: the shipped project served over real HTTP with an SDR
token set, two prospects enrolled in outbound-2w whose first call is due (one task each),
and a login helper.

    def test_x(sdr: WebProject) -> None:
        login(sdr.client)                  # the cookie stays in sdr.client
        page = sdr.client.get("/sdr")
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from web_support import ROOT, FixedClock, LiveServer, WebProject

from relance.dispatcher import Dispatcher
from relance.prospect import Prospect
from relance.rendering import template_environment
from relance.runtime import email_sender
from relance.settings import Settings
from relance.store import Store
from relance.tables import prospects, tasks
from relance.web.app import create_app
from tests.fakes.sendgrid_server import FakeSendGrid

TOKEN = "sdr-token-7f3a9c1e5b"
OWNER = "sdr@relance.example"

ADELE = Prospect(
    email="adele.martin@acme.example",
    first_name="Adèle",
    last_name="Martin",
    company="Acme Industrie",
    title="Directrice des opérations",
    phone="+33 1 23 45 67 89",
    owner=OWNER,
    fields={"industry": "Métallurgie"},
)
BRUNO = Prospect(
    email="bruno.petit@bolt.example",
    first_name="Bruno",
    last_name="Petit",
    company="Bolt SA",
    title="COO",
    phone="+33 4 98 76 54 32",
    owner="other@relance.example",
    fields={"industry": "Plasturgie"},
)


def sdr_settings(tmp_path: Path, sendgrid: FakeSendGrid, token: str | None = TOKEN) -> Settings:
    return Settings(
        home=ROOT,
        data_dir=tmp_path / "data",
        sendgrid_api_key=sendgrid.api_key,
        sendgrid_host=sendgrid.url,
        public_url="https://relance.example.com",
        sdr_token=token,
    )


@pytest.fixture
def sdr(tmp_path: Path) -> Iterator[WebProject]:
    """``relance serve`` with RELANCE_SDR_TOKEN set; Adèle's and Bruno's first calls due."""
    with FakeSendGrid() as sendgrid:
        settings = sdr_settings(tmp_path, sendgrid)
        store = Store(settings.store_url)
        clock = FixedClock()
        dispatcher = Dispatcher(
            store, settings, email_sender(settings), template_environment(settings.templates_path)
        )
        with LiveServer(create_app(settings, store=store, clock=clock)) as server:
            project = WebProject(settings, store, sendgrid, clock, server, dispatcher)
            project.enroll("outbound-2w", [ADELE, BRUNO])
            project.tick()
            yield project
            project.client.close()


def csrf_in(html: str) -> str:
    """The first CSRF token of a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def login(client: httpx.Client, owner: str = "", token: str = TOKEN) -> httpx.Response:
    """Log in through the form, as a browser does; the session cookie stays in the client."""
    form = client.get("/sdr/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/sdr/login",
        data={"token": token, "owner": owner, "next": "/sdr", "csrf": csrf_in(form.text)},
    )


def open_task_ids(store: Store) -> dict[str, int]:
    """Open task id by prospect email."""
    with store.reading() as connection:
        rows = connection.execute(
            select(prospects.c.email, tasks.c.id)
            .join(prospects, prospects.c.id == tasks.c.prospect_id)
            .where(tasks.c.status == "open")
        )
        return {row.email: row.id for row in rows}
