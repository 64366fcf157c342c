"""The SDR page end to end in headless Chromium, over real HTTP: log in, see today's calls,
log an outcome with one click and see the task disappear, pause a prospect from the
timeline. Screenshots are kept in test-artifacts/ (sdr-*.png) for a person to look at.

Without chromium the test is skipped, and fails under CI=true (``make browser`` installs it).
"""

from __future__ import annotations

import json

from browser import Browser, require_chromium
from sdr_support import ADELE, BRUNO, TOKEN, open_task_ids
from sqlalchemy import select
from web_support import ROOT, WebProject

from relance.tables import enrollments, tasks

ARTIFACTS = ROOT / "test-artifacts"


def text_of(browser: Browser, selector: str) -> str:
    return str(browser.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''"))


def test_log_an_outcome_and_see_the_task_disappear(sdr: WebProject) -> None:
    require_chromium()
    ids = open_task_ids(sdr.store)
    adele, bruno = ids[ADELE.email], ids[BRUNO.email]
    with Browser(size=(1280, 900)) as browser:
        browser.navigate(f"{sdr.server.url}/sdr")
        assert browser.url == f"{sdr.server.url}/sdr/login?next=/sdr"
        browser.screenshot(ARTIFACTS / "sdr-login.png")

        browser.evaluate(f"document.querySelector('#token').value = {json.dumps(TOKEN)}")
        browser.act("document.querySelector('form[action=\"/sdr/login\"] button').click()")
        assert browser.url == f"{sdr.server.url}/sdr"
        assert browser.evaluate("document.querySelectorAll('[data-task]').length") == 2
        card = text_of(browser, f"#task-{adele}")
        assert "Adèle Martin" in card
        assert "Directrice des opérations · Acme Industrie" in card
        assert "+33 1 23 45 67 89" in card
        assert "due Mon 2026-03-02 09:00 CET · outbound-2w / call-intro" in card
        assert "Catch attention and qualify in two minutes" in card  # the step's objective
        assert "APPEL 1 — PREMIER CONTACT" in card  # the rendered call script
        browser.screenshot(ARTIFACTS / "sdr-today.png")

        browser.act(f"document.querySelector('#task-{adele} button[value=no_answer]').click()")
        assert browser.url == f"{sdr.server.url}/sdr?done={adele}&owner=all"
        assert browser.evaluate(f"document.querySelector('#task-{adele}') === null") is True
        assert browser.evaluate(f"document.querySelector('#task-{bruno}') !== null") is True
        assert text_of(browser, ".flash.ok") == (
            "No answer logged for Adèle Martin: the sequence goes on."
        )
        browser.screenshot(ARTIFACTS / "sdr-after-outcome.png")

        browser.act(f"document.querySelector('#task-{bruno} a.who').click()")
        assert browser.url.endswith("/sdr/prospects/2")
        browser.act("document.querySelector('form[action$=\"/pause\"] button').click()")
        assert text_of(browser, ".flash.ok").startswith("Paused")
        assert text_of(browser, "#enrollment-2 h3 .badge") == "paused"
        browser.screenshot(ARTIFACTS / "sdr-prospect.png")

    with sdr.store.reading() as connection:
        task = connection.execute(select(tasks).where(tasks.c.id == adele)).one()
        status = connection.execute(
            select(enrollments.c.status).where(enrollments.c.id == 2)
        ).scalar_one()
    assert (task.status, task.outcome) == ("done", "no_answer")
    assert status == "paused"
