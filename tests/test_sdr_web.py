"""The SDR page over real HTTP (``relance serve``'s app on loopback), and its login in
process: the token, the session cookie, CSRF tokens, today's tasks with their context,
one-click outcomes, a prospect's timeline with pause, resume and snooze."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sdr_support import ADELE, BRUNO, OWNER, TOKEN, csrf_in, login, open_task_ids
from sqlalchemy import select
from web_support import MONDAY, WebProject

from integrations.inbound_parse import InboundEmail
from relance.replies import record_inbound
from relance.settings import Settings
from relance.store import Store
from relance.tables import enrollments, events, meetings, tasks, touchpoints
from relance.web.app import create_app
from relance.web.auth import read_session, safe_next, session_cookie

PERSONAL = (ADELE.email, "Adèle", "Martin", ADELE.phone, BRUNO.email, "Bruno", "Petit")


def task_row(web: WebProject, task_id: int) -> tuple[str, str | None, str | None]:
    with web.store.reading() as connection:
        row = connection.execute(select(tasks).where(tasks.c.id == task_id)).one()
    return row.status, row.outcome, row.note


def enrollment_of(web: WebProject, prospect_id: int) -> tuple[str, datetime | None]:
    with web.store.reading() as connection:
        row = connection.execute(
            select(enrollments).where(enrollments.c.prospect_id == prospect_id)
        ).one()
    return row.status, row.snoozed_until


def flip(mac: str) -> str:
    """The same MAC with its first digit changed."""
    return ("1" if mac[0] == "0" else "0") + mac[1:]


def page_csrf(web: WebProject, path: str = "/sdr") -> str:
    page = web.client.get(path)
    assert page.status_code == 200, page.text
    return csrf_in(page.text)


def post_outcome(web: WebProject, task_id: int, **fields: str) -> httpx.Response:
    data = {"csrf": page_csrf(web), "owner": "all", **fields}
    return web.client.post(f"/sdr/tasks/{task_id}/outcome", data=data)


# --- the token and the session -------------------------------------------------------


def test_without_a_token_every_sdr_page_answers_403(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sdr_token=None)
    client = TestClient(create_app(settings, store=Store(settings.store_url)))
    bearer = {"Authorization": "Bearer anything"}
    for response in (
        client.get("/sdr", follow_redirects=False),
        client.get("/sdr/login"),
        client.post("/sdr/login", data={"token": ""}),
        client.get("/sdr/prospects/1", headers=bearer),
        client.post("/sdr/tasks/1/outcome", data={"outcome": "connected"}, headers=bearer),
    ):
        assert response.status_code == 403
        assert "set RELANCE_SDR_TOKEN" in response.text


def test_a_session_cookie_is_signed_with_the_token_and_lasts_twelve_hours() -> None:
    session, cookie = session_cookie(TOKEN, OWNER, MONDAY)
    assert TOKEN not in cookie
    assert read_session(TOKEN, cookie, MONDAY + timedelta(hours=12)) == session
    assert read_session(TOKEN, cookie, MONDAY + timedelta(hours=12, seconds=1)) is None
    assert read_session("another-token", cookie, MONDAY) is None
    payload, mac = cookie.split(".")
    _, forged = session_cookie("forger", "boss@relance.example", MONDAY)
    assert read_session(TOKEN, forged, MONDAY) is None
    assert read_session(TOKEN, f"{forged.split('.')[0]}.{mac}", MONDAY) is None
    assert read_session(TOKEN, f"{payload}.{flip(mac)}", MONDAY) is None
    assert read_session(TOKEN, f"{payload}x.{mac}", MONDAY) is None
    for garbage in ("", "no-dot", "a.b.c", f".{mac}"):
        assert read_session(TOKEN, garbage, MONDAY) is None


def test_a_page_asked_for_without_a_session_redirects_to_the_login_form(sdr: WebProject) -> None:
    response = sdr.client.get("/sdr/prospects/1?done=pause")
    assert response.status_code == 303
    assert response.headers["location"] == "/sdr/login?next=/sdr/prospects/1%3Fdone%3Dpause"
    refused = sdr.client.post("/sdr/tasks/1/outcome", data={"outcome": "connected"})
    assert refused.status_code == 403
    assert "Log in again" in refused.text
    assert task_row(sdr, 1) == ("open", None, None)


def test_login_sets_a_strict_http_only_cookie_that_is_not_the_token(sdr: WebProject) -> None:
    response = login(sdr.client)
    assert response.status_code == 303
    assert response.headers["location"] == "/sdr"
    cookie = next(
        header
        for header in response.headers.get_list("set-cookie")
        if header.startswith("relance_sdr=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/sdr", "max-age=43200"} <= attributes
    assert "secure" not in attributes  # plain HTTP on loopback; Secure over HTTPS
    assert TOKEN not in cookie
    assert sdr.client.get("/sdr").status_code == 200


def test_cookies_are_secure_when_the_page_is_served_over_https(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sdr_token=TOKEN)
    client = TestClient(
        create_app(settings, store=Store(settings.store_url)), base_url="https://testserver"
    )
    form = client.get("/sdr/login")
    assert "secure" in form.headers["set-cookie"].lower()
    response = client.post(
        "/sdr/login",
        data={"token": TOKEN, "csrf": csrf_in(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


def test_login_refuses_a_wrong_token(sdr: WebProject) -> None:
    response = login(sdr.client, token="not-the-token")
    assert response.status_code == 401
    assert "Wrong token." in response.text
    assert "relance_sdr=" not in " ".join(response.headers.get_list("set-cookie"))
    assert sdr.client.get("/sdr").status_code == 303


def test_login_refuses_a_form_without_its_csrf_token(sdr: WebProject) -> None:
    response = sdr.client.post("/sdr/login", data={"token": TOKEN})
    assert response.status_code == 403
    assert "The form expired: try again." in response.text
    assert sdr.client.get("/sdr").status_code == 303


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/sdr/prospects/1", "/sdr/prospects/1"),
        ("https://evil.example/sdr", "/sdr"),
        ("//evil.example/sdr", "/sdr"),
        ("/admin", "/sdr"),
        ("", "/sdr"),
    ],
)
def test_login_goes_back_to_an_sdr_page_and_nowhere_else(asked: str, goes_to: str) -> None:
    assert safe_next(asked) == goes_to


def test_a_forged_or_expired_session_is_sent_to_the_login_form(sdr: WebProject) -> None:
    login(sdr.client)
    cookie = sdr.client.cookies["relance_sdr"]
    url = f"{sdr.server.url}/sdr"

    def status(value: str) -> int:
        return httpx.get(url, headers={"Cookie": f"relance_sdr={value}"}).status_code

    payload, mac = cookie.split(".")
    assert status(cookie) == 200
    assert status(f"{payload}.{flip(mac)}") == 303
    sdr.advance(hours=12, minutes=1)
    assert status(cookie) == 303


def test_logout_ends_the_session(sdr: WebProject) -> None:
    login(sdr.client)
    response = sdr.client.post("/sdr/logout", data={"csrf": page_csrf(sdr)})
    assert response.status_code == 303
    assert response.headers["location"] == "/sdr/login"
    assert sdr.client.get("/sdr").status_code == 303


def test_scripts_can_use_the_bearer_token_without_csrf(sdr: WebProject) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert sdr.client.get("/sdr", headers=bearer).status_code == 200
    wrong = sdr.client.get("/sdr", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    adele = open_task_ids(sdr.store)[ADELE.email]
    done = sdr.client.post(
        f"/sdr/tasks/{adele}/outcome", data={"outcome": "connected"}, headers=bearer
    )
    assert done.status_code == 303
    assert task_row(sdr, adele) == ("done", "connected", None)


def test_a_post_without_the_session_s_csrf_token_is_refused(sdr: WebProject) -> None:
    other = httpx.Client(base_url=sdr.server.url)
    login(other)
    login(sdr.client)
    adele = open_task_ids(sdr.store)[ADELE.email]
    other_csrf = csrf_in(other.get("/sdr").text)
    for data in (
        {"outcome": "connected"},
        {"outcome": "connected", "csrf": ""},
        {"outcome": "connected", "csrf": "0" * 40},
        {"outcome": "connected", "csrf": other_csrf},  # another session's token
    ):
        refused = sdr.client.post(f"/sdr/tasks/{adele}/outcome", data=data)
        assert refused.status_code == 403
        assert "Form refused" in refused.text
    pause = sdr.client.post("/sdr/prospects/1/pause", data={"sequence": "outbound-2w"})
    assert pause.status_code == 403
    logout = sdr.client.post("/sdr/logout")
    assert logout.status_code == 403
    assert task_row(sdr, adele) == ("open", None, None)
    assert enrollment_of(sdr, 1)[0] == "active"
    assert sdr.client.get("/sdr").status_code == 200
    other.close()


# --- today's tasks -------------------------------------------------------------------


def test_today_lists_the_calls_with_the_script_and_the_prospect_s_context(
    sdr: WebProject,
) -> None:
    login(sdr.client)
    page = sdr.client.get("/sdr")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    adele = open_task_ids(sdr.store)[ADELE.email]
    card = html[html.index(f'id="task-{adele}"') :]
    card = card[: card.index("</article>")]
    for expected in (
        'href="/sdr/prospects/1">Adèle Martin</a>',
        "Directrice des opérations · Acme Industrie",
        'href="tel:+33123456789">+33 1 23 45 67 89</a>',
        "due Mon 2026-03-02 09:00 CET</span> · outbound-2w / call-intro",
        'title="2026-03-02 08:00 UTC"',
        "Catch attention and qualify in two minutes; no demo on the phone.",  # step objective
        "Call script",
        "APPEL 1 — PREMIER CONTACT\nAdèle Martin, Directrice des opérations — Acme Industrie",
        'value="no_answer">No answer</button>',
        'value="booked" class="primary">Booked</button>',
        "Meeting booked: its start, Europe/Paris time",
    ):
        assert expected in card
    assert "2 open tasks, everyone&#39;s" in html
    assert "Calls · 2" in html
    assert "Bruno Petit" in html


def test_the_deal_value_and_the_last_touches_are_shown_with_the_next_call(
    sdr: WebProject,
) -> None:
    thursday = sdr.advance(days=3)  # call-followup is due; email-benchmark went on Tuesday
    sdr.tick(MONDAY + timedelta(days=1))
    sdr.tick(thursday)
    login(sdr.client, owner=OWNER)
    html = sdr.client.get("/sdr").text
    followup = html[html.rindex('<article class="card task"') :]
    assert "outbound-2w / call-followup" in followup
    assert "Check the benchmark landed and ask one discovery question." in followup
    assert "Last touches" in followup
    assert re.search(
        r"Tue 2026-03-03 09:00 CET</td>\s*<td>email-benchmark <span class=\"muted\">\(email\)"
        r"</span></td>\s*<td><span class=\"badge sent\">sent</span>",
        followup,
    )
    first = html[html.index('<article class="card task"') : html.rindex("<article class")]
    assert '<span class="badge overdue">overdue</span>' in first  # call-intro, from Monday


def test_the_owner_given_at_login_sees_their_tasks_and_may_see_everyone_s(
    sdr: WebProject,
) -> None:
    login(sdr.client, owner=" SDR@Relance.example ")
    mine = sdr.client.get("/sdr").text
    assert "Adèle Martin" in mine
    assert "Bruno Petit" not in mine
    assert "1 open task for sdr@relance.example" in mine
    everyone = sdr.client.get("/sdr", params={"owner": "all"}).text
    assert "Adèle Martin" in everyone
    assert "Bruno Petit" in everyone
    other = sdr.client.get("/sdr", params={"owner": "other@relance.example"}).text
    assert "Adèle Martin" not in other
    assert "Bruno Petit" in other
    assert '<option value="other@relance.example" selected>' in other


def test_an_outcome_closes_the_task_and_it_disappears(
    sdr: WebProject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    login(sdr.client)
    adele = open_task_ids(sdr.store)[ADELE.email]
    response = post_outcome(sdr, adele, outcome="voicemail", note="left a message at 9:05")
    assert response.status_code == 303
    assert response.headers["location"] == f"/sdr?done={adele}&owner=all"
    assert task_row(sdr, adele) == ("done", "voicemail", "left a message at 9:05")
    with sdr.store.reading() as connection:
        logged = connection.execute(
            select(events.c.data).where(events.c.kind == "task_outcome")
        ).scalar_one()
    assert logged == {"task_id": adele, "outcome": "voicemail", "note": "left a message at 9:05"}
    page = sdr.client.get(response.headers["location"]).text
    assert f'id="task-{adele}"' not in page
    assert "Bruno Petit" in page
    assert "Voicemail logged for Adèle Martin: the sequence goes on." in page
    assert enrollment_of(sdr, 1)[0] == "active"
    assert f"task {adele} closed from the SDR page: voicemail" in caplog.text
    assert not [word for word in PERSONAL if word in caplog.text]


def test_when_every_task_is_done_the_page_says_so(sdr: WebProject) -> None:
    login(sdr.client)
    for task_id in open_task_ids(sdr.store).values():
        assert post_outcome(sdr, task_id, outcome="connected").status_code == 303
    page = sdr.client.get("/sdr").text
    assert "Nothing left for today." in page
    assert "0 open tasks" in page


def test_booked_records_the_meeting_at_the_prospect_s_time(sdr: WebProject) -> None:
    login(sdr.client)
    adele = open_task_ids(sdr.store)[ADELE.email]
    response = post_outcome(
        sdr, adele, outcome="booked", meeting_at="2026-03-05T10:00", duration="45"
    )
    assert response.status_code == 303
    with sdr.store.reading() as connection:
        meeting = connection.execute(select(meetings)).one()
    assert meeting.starts_at == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    assert meeting.ends_at == datetime(2026, 3, 5, 9, 45, tzinfo=UTC)
    assert task_row(sdr, adele)[:2] == ("done", "booked")
    assert enrollment_of(sdr, 1)[0] == "booked"
    page = sdr.client.get(response.headers["location"]).text
    assert "Booked logged for Adèle Martin: the chase stopped and the meeting is recorded." in page


@pytest.mark.parametrize(
    ("meeting_at", "says"),
    [
        ("", "booked: give the meeting start (date and time) first"),
        ("2026-03-01T10:00", "booked: the meeting start is in the past"),
        ("next thursday", "booked: expected the meeting start such as 2026-03-05T10:00, got"),
    ],
)
def test_booked_needs_a_meeting_start_to_come(sdr: WebProject, meeting_at: str, says: str) -> None:
    login(sdr.client)
    adele = open_task_ids(sdr.store)[ADELE.email]
    response = post_outcome(sdr, adele, outcome="booked", meeting_at=meeting_at)
    assert response.status_code == 400
    assert f'<div class="flash error" role="alert">{says}' in response.text
    assert f'id="task-{adele}"' in response.text  # still there, to be logged again
    assert task_row(sdr, adele) == ("open", None, None)


def test_not_interested_stops_the_task_s_sequence(sdr: WebProject) -> None:
    login(sdr.client)
    bruno = open_task_ids(sdr.store)[BRUNO.email]
    assert post_outcome(sdr, bruno, outcome="not_interested").status_code == 303
    assert enrollment_of(sdr, 2)[0] == "stopped"
    assert enrollment_of(sdr, 1)[0] == "active"
    with sdr.store.reading() as connection:
        planned = connection.execute(
            select(touchpoints.c.status).where(
                touchpoints.c.enrollment_id == 2, touchpoints.c.step_id == "email-benchmark"
            )
        ).scalar_one()
    assert planned == "skipped"


def test_a_task_already_closed_says_so(sdr: WebProject) -> None:
    login(sdr.client)
    adele = open_task_ids(sdr.store)[ADELE.email]
    assert post_outcome(sdr, adele, outcome="no_answer").status_code == 303
    again = post_outcome(sdr, adele, outcome="connected")
    assert again.status_code == 409
    assert f"task {adele} is already done (no_answer)" in again.text
    assert post_outcome(sdr, 999, outcome="connected").status_code == 404
    assert post_outcome(sdr, adele, outcome="maybe").status_code == 422


def test_replies_to_triage_show_the_reply(sdr: WebProject) -> None:
    reply = InboundEmail(
        sender=ADELE.email,
        subject="Re: Benchmark",
        text="Merci, rappelez-moi jeudi après 14h.",
        headers={"message-id": "<reply-1@acme.example>"},
        dkim="{@acme.example : pass}",
    )
    outcome = record_inbound(sdr.store, reply, now=sdr.clock.now, settings=sdr.settings)
    assert outcome.task_id is not None
    login(sdr.client)
    html = sdr.client.get("/sdr").text
    card = html[html.index(f'id="task-{outcome.task_id}"') :]
    assert "Replies to triage · 1" in html
    assert "Reply received: Re: Benchmark" in card
    assert "Their reply" in card
    assert "Merci, rappelez-moi jeudi après 14h." in card
    assert 'value="connected">Handled</button>' in card
    assert "No answer" not in card[: card.index("</article>")]
    handled = post_outcome(sdr, outcome.task_id, outcome="connected")
    assert handled.status_code == 303
    assert "Handled" not in sdr.client.get("/sdr").text


# --- a prospect ----------------------------------------------------------------------


def test_the_prospect_page_shows_the_timeline_in_the_prospect_s_zone(sdr: WebProject) -> None:
    login(sdr.client)
    page = sdr.client.get("/sdr/prospects/1")
    assert page.status_code == 200
    html = page.text
    for expected in (
        "<h1>Adèle Martin</h1>",
        'href="mailto:adele.martin@acme.example"',
        "<span>times in</span>Europe/Paris",
        "outbound-2w <span",
        '<span class="badge active">active</span>',
        "enrolled Mon 2026-03-02 09:00 CET",
        "<td>email-benchmark</td>",
        "Tue 2026-03-03 09:00 CET",
        "Fri 2026-03-13 09:00 CET",  # email-last
        "Catch attention and qualify in two minutes; no demo on the phone.",  # the open task
        'action="/sdr/prospects/1/pause"',
        'name="until" min="2026-03-03" value="2026-03-03"',
    ):
        assert expected in html
    assert sdr.client.get("/sdr/prospects/99").status_code == 404


def test_pause_resume_and_snooze_from_the_prospect_page(
    sdr: WebProject, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    login(sdr.client)
    csrf = page_csrf(sdr, "/sdr/prospects/1")
    form = {"csrf": csrf, "sequence": "outbound-2w"}

    paused = sdr.client.post("/sdr/prospects/1/pause", data=form)
    assert paused.status_code == 303
    assert paused.headers["location"] == "/sdr/prospects/1?done=pause"
    assert enrollment_of(sdr, 1) == ("paused", None)
    page = sdr.client.get(paused.headers["location"]).text
    assert "Paused: nothing more is sent until you resume." in page
    assert 'action="/sdr/prospects/1/resume"' in page
    again = sdr.client.post("/sdr/prospects/1/pause", data=form)
    assert again.status_code == 409
    assert 'class="flash error"' in again.text

    sdr.advance(hours=2)  # within the session's twelve hours
    assert sdr.client.post("/sdr/prospects/1/resume", data=form).status_code == 303
    assert enrollment_of(sdr, 1) == ("active", None)

    snoozed = sdr.client.post("/sdr/prospects/1/snooze", data={**form, "until": "2026-03-20"})
    assert snoozed.status_code == 303
    status, until = enrollment_of(sdr, 1)
    assert (status, until) == ("active", datetime(2026, 3, 19, 23, 0, tzinfo=UTC))
    with sdr.store.reading() as connection:
        next_due = connection.execute(
            select(touchpoints.c.due_at)
            .where(touchpoints.c.enrollment_id == 1, touchpoints.c.status == "planned")
            .order_by(touchpoints.c.due_at)
            .limit(1)
        ).scalar_one()
        kinds = connection.execute(
            select(events.c.kind, events.c.source).where(events.c.prospect_id == 1)
        ).all()
    assert next_due >= datetime(2026, 3, 19, 23, 0, tzinfo=UTC)
    assert kinds == [("paused", "sdr_page"), ("resumed", "sdr_page"), ("snoozed", "sdr_page")]
    page = sdr.client.get("/sdr/prospects/1").text
    assert "snoozed until Fri 2026-03-20 00:00 CET" in page

    past = sdr.client.post("/sdr/prospects/1/snooze", data={**form, "until": "2026-03-01"})
    assert past.status_code == 400
    assert "snooze: the date must be after today" in past.text
    bad = sdr.client.post("/sdr/prospects/1/snooze", data={**form, "until": "soon"})
    assert bad.status_code == 400
    assert sdr.client.post("/sdr/prospects/1/stop", data=form).status_code == 422
    assert "prospect 1 paused from the SDR page" in caplog.text
    assert not [word for word in PERSONAL if word in caplog.text]
