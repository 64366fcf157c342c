"""Inbound Parse over real HTTP: replies pause (and pause colleagues), out-of-office messages
snooze, mailto unsubscribes stop; matching by reply token, Message-ID and sender; the
endpoint's authentication, replays, and a fuzz that never gets a 500."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from store_support import BUSINESS_HOURS, T0, enrollment_row, enrollment_status, step, write_project
from web_support import MONDAY, WebProject

from integrations.inbound_parse import InboundEmail
from relance.engine import Signal, Status
from relance.enrollments import enroll
from relance.prospect import Prospect
from relance.replies import record_inbound
from relance.settings import Settings
from relance.signals import record_signal
from relance.store import Store
from relance.tables import enrollments, events, suppressions, tasks, touchpoints
from relance.web.app import create_app

AUTH = ("sendgrid", "inbound-secret")
PATH = "/webhooks/sendgrid/inbound"
TUESDAY = MONDAY + timedelta(days=1)
"""Tuesday 3 March 2026, 09:00 in Paris: the first email (email-benchmark) is due."""

ADELE = "adele.martin@acme.example"
BRUNO = "bruno.petit@acme.example"
CLARA = "clara@other.example"


def person(email: str, owner: str = "sdr@relance.example") -> Prospect:
    first = email.split("@")[0].split(".")[0].title()
    return Prospect(email=email, first_name=first, owner=owner, fields={"industry": "Metal"})


def inbound_fields(
    *,
    sender: str,
    to: str,
    subject: str = "Re: Benchmark",
    text: str = "Merci, appelez-moi jeudi.",
    message_id: str = "<reply-1@mail.acme.example>",
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The text fields SendGrid Inbound Parse posts for one message ("send raw" off)."""
    lines = [
        "Received: from mail.acme.example by mx.sendgrid.net; Tue, 03 Mar 2026 10:00:00 +0000",
        f"Message-ID: {message_id}",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Tue, 03 Mar 2026 11:00:00 +0100",
        "MIME-Version: 1.0",
    ]
    if in_reply_to:
        lines.append(f"In-Reply-To: {in_reply_to}")
    if references:
        lines.append(f"References: {references}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return {
        "headers": "\r\n".join(lines) + "\r\n",
        "envelope": json.dumps({"to": [to], "from": sender}),
        "from": sender,
        "to": to,
        "subject": subject,
        "text": text,
        "html": f"<p>{text}</p>",
        "charsets": json.dumps(
            {"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8", "text": "UTF-8", "html": "UTF-8"}
        ),
        "SPF": "pass",
        "dkim": "{@acme.example : pass}",
        "attachments": "0",
    }


def multipart(fields: dict[str, str]) -> list[tuple[str, tuple[None, bytes]]]:
    """Form fields as multipart/form-data parts without file names, as SendGrid posts them."""
    return [(name, (None, value.encode())) for name, value in fields.items()]


def post_inbound(web: WebProject, fields: dict[str, str], **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("auth", AUTH)
    return web.post(PATH, files=multipart(fields), **kwargs)


def first_email(web: WebProject, email: str) -> dict[str, Any]:
    """Enroll ``email`` in outbound-2w and send its first email; the Mail Send body."""
    web.enroll("outbound-2w", [person(email)])
    web.tick(MONDAY)
    web.tick(TUESDAY)
    [sent] = web.sent_to(email)
    return sent


def reply_to(web: WebProject, email: str, **overrides: Any) -> dict[str, str]:
    """A reply to the first email sent to ``email``, as Inbound Parse posts it."""
    sent = next(iter(web.sent_to(email)))
    message_id = sent["headers"]["Message-ID"]
    values: dict[str, Any] = {
        "sender": f"Someone <{email}>",
        "to": sent["reply_to"]["email"],
        "subject": "Re: " + sent["personalizations"][0].get("subject", sent.get("subject", "")),
        "in_reply_to": message_id,
        "references": message_id,
        "text": (
            "Bonjour, appelez-moi jeudi à 10h.\n\n"
            "Le mar. 3 mars 2026 à 09:00, Relance <relance@example.com> a écrit :\n"
            "> Bonjour,\n> Voici le benchmark.\n"
        ),
    }
    values.update(overrides)
    return inbound_fields(**values)


def status_of(web: WebProject, email: str) -> tuple[str, str | None, datetime | None]:
    with web.store.reading() as connection:
        row = connection.execute(
            select(enrollments.c.status, enrollments.c.reason, enrollments.c.snoozed_until).where(
                enrollments.c.prospect_id == prospect_id(web, email)
            )
        ).one()
    return row.status, row.reason, row.snoozed_until


def prospect_id(web: WebProject, email: str) -> int:
    from relance.tables import prospects

    with web.store.reading() as connection:
        return int(
            connection.execute(
                select(prospects.c.id).where(prospects.c.email == email)
            ).scalar_one()
        )


def reply_tasks(web: WebProject) -> list[Any]:
    with web.store.reading() as connection:
        return list(connection.execute(select(tasks).where(tasks.c.kind == "reply")))


def count(web: WebProject, table: Any) -> int:
    with web.store.reading() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def tick_days(web: WebProject, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """Dispatch three times a day from ``start`` to ``end``; (time, emails sent) per tick."""
    seen = []
    moment = start
    while moment <= end:
        for hour in (0, 4, 8):
            reports = web.tick(moment + timedelta(hours=hour))
            seen.append((moment + timedelta(hours=hour), sum(r.sent for r in reports)))
        moment += timedelta(days=1)
    return seen


# Acceptance: replies pause --------------------------------------------------------------------


def test_a_reply_pauses_the_enrollment_opens_a_task_and_nothing_more_is_sent(
    web: WebProject,
) -> None:
    sent = first_email(web, ADELE)
    assert sent["reply_to"]["email"].startswith("reply+")
    web.clock.now = TUESDAY + timedelta(hours=2)

    response = post_inbound(web, reply_to(web, ADELE))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outcome"] == "replied"
    assert answer["matched_by"] == "token"
    assert status_of(web, ADELE) == ("paused", "replied", None)
    [task] = reply_tasks(web)
    assert task.id == answer["task_id"]
    assert task.title.startswith("Reply received: Re: ")
    assert task.body == "Bonjour, appelez-moi jeudi à 10h."
    assert (task.owner, task.status, task.due_at) == ("sdr@relance.example", "open", web.clock.now)
    tick_days(web, TUESDAY + timedelta(hours=3), TUESDAY + timedelta(days=15))
    assert len(web.sent_to(ADELE)) == 1


def test_a_replayed_post_is_processed_once(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = reply_to(web, ADELE)
    assert post_inbound(web, fields).json()["outcome"] == "replied"
    assert post_inbound(web, fields).json() == {"outcome": "duplicate"}
    assert len(reply_tasks(web)) == 1
    with web.store.reading() as connection:
        kinds = list(connection.execute(select(events.c.kind).where(events.c.source == "inbound")))
    assert [row.kind for row in kinds] == ["replied"]


def test_the_secret_can_be_the_last_path_segment(web: WebProject) -> None:
    first_email(web, ADELE)
    response = web.post(f"{PATH}/inbound-secret", files=multipart(reply_to(web, ADELE)))
    assert response.json()["outcome"] == "replied"
    assert status_of(web, ADELE)[0] == "paused"


def test_a_reply_to_a_stopped_enrollment_is_kept_but_changes_nothing(web: WebProject) -> None:
    first_email(web, ADELE)
    record_signal(web.store, ADELE, Signal.STOPPED, now=TUESDAY)
    answer = post_inbound(web, reply_to(web, ADELE)).json()
    assert answer["outcome"] == "replied"
    assert "nothing paused" in answer["reason"]
    assert status_of(web, ADELE)[0] == "stopped"
    assert len(reply_tasks(web)) == 1
    assert post_inbound(web, reply_to(web, ADELE)).json() == {"outcome": "duplicate"}
    assert len(reply_tasks(web)) == 1


# Matching -------------------------------------------------------------------------------------


def test_matching_by_token_alone(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = reply_to(web, ADELE, in_reply_to=None, references=None, sender="x@elsewhere.example")
    answer = post_inbound(web, fields).json()
    assert (answer["outcome"], answer["matched_by"]) == ("replied", "token")
    assert answer["prospect_id"] == prospect_id(web, ADELE)


def test_matching_by_in_reply_to(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = reply_to(
        web, ADELE, to="relance@reply.relance.local", references=None, sender="x@else.example"
    )
    answer = post_inbound(web, fields).json()
    assert (answer["outcome"], answer["matched_by"]) == ("replied", "message_id")
    assert status_of(web, ADELE)[0] == "paused"


def test_matching_by_references(web: WebProject) -> None:
    sent = first_email(web, ADELE)
    fields = reply_to(
        web,
        ADELE,
        to="relance@reply.relance.local",
        in_reply_to="<other@mail.acme.example>",
        references=f"<older@mail.acme.example> {sent['headers']['Message-ID']}",
        sender="x@else.example",
    )
    assert post_inbound(web, fields).json()["matched_by"] == "message_id"
    assert status_of(web, ADELE)[0] == "paused"


def test_matching_by_sender(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = inbound_fields(sender=f"Adèle <{ADELE.upper()}>", to="hello@reply.relance.local")
    answer = post_inbound(web, fields).json()
    assert (answer["outcome"], answer["matched_by"]) == ("replied", "sender")
    assert status_of(web, ADELE)[0] == "paused"


def test_a_message_matching_nobody_is_a_200_and_stores_nothing(web: WebProject) -> None:
    first_email(web, ADELE)
    before = count(web, events)
    fields = inbound_fields(sender="stranger@unknown.example", to="hello@reply.relance.local")
    response = post_inbound(web, fields)
    assert (response.status_code, response.json()) == (200, {"outcome": "unmatched"})
    assert (count(web, events), reply_tasks(web)) == (before, [])


def test_a_guessed_message_id_in_in_reply_to_matches_nothing(web: WebProject) -> None:
    sent = first_email(web, ADELE)
    real = sent["headers"]["Message-ID"]
    touchpoint_id = sent["personalizations"][0]["custom_args"]["touchpoint_id"]
    assert f"tp-{touchpoint_id}@" not in real
    before = count(web, events)
    # The old sequential form, and a well-formed token nobody was sent.
    for forged in (f"<tp-{touchpoint_id}@relance.local>", "<" + "0" * 32 + "@relance.local>"):
        fields = inbound_fields(
            sender="forger@unknown.example",
            to="hello@reply.relance.local",
            in_reply_to=forged,
            references=forged,
            message_id=f"<forged-{len(forged)}@unknown.example>",
        )
        assert post_inbound(web, fields).json() == {"outcome": "unmatched"}
    assert (count(web, events), reply_tasks(web), status_of(web, ADELE)[0]) == (
        before,
        [],
        "active",
    )


def test_bounces_are_ignored(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = reply_to(web, ADELE, sender="MAILER-DAEMON@mx.acme.example", subject="Undelivered")
    assert post_inbound(web, fields).json() == {"outcome": "ignored", "reason": "delivery report"}
    assert status_of(web, ADELE)[0] == "active"


def test_mail_to_the_unsubscribe_address_unsubscribes(web: WebProject) -> None:
    sent = first_email(web, ADELE)
    mailto = sent["headers"]["List-Unsubscribe"].split("mailto:")[1].rstrip(">")
    answer = post_inbound(web, inbound_fields(sender=ADELE, to=mailto, subject="unsubscribe"))
    assert answer.json()["outcome"] == "unsubscribed"
    assert status_of(web, ADELE)[0] == "stopped"
    assert count(web, suppressions) == 1
    assert reply_tasks(web) == []


# Out of office --------------------------------------------------------------------------------


def test_an_out_of_office_snoozes_until_the_return_date(web: WebProject) -> None:
    first_email(web, ADELE)
    web.clock.now = TUESDAY + timedelta(hours=2)
    fields = reply_to(
        web,
        ADELE,
        subject="Réponse automatique : Benchmark",
        text="Bonjour,\nJe suis absente du bureau. De retour le lundi 16 mars.\nAdèle",
        headers={"Auto-Submitted": "auto-replied"},
    )
    answer = post_inbound(web, fields).json()
    back = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)  # 09:00 in Paris, the send-window start
    assert answer["outcome"] == "out_of_office"
    assert answer["snoozed_until"] == back.isoformat()
    assert status_of(web, ADELE) == ("active", None, back)
    assert reply_tasks(web) == []

    before = tick_days(web, TUESDAY + timedelta(hours=3), back - timedelta(days=1))
    assert sum(sent for _, sent in before) == 0
    assert len(web.sent_to(ADELE)) == 1
    after = tick_days(web, back, back + timedelta(days=7))
    sent_at = [moment for moment, sent in after if sent]
    assert sent_at and min(sent_at) > back
    assert len(web.sent_to(ADELE)) == 2


def test_an_out_of_office_without_a_date_snoozes_for_the_configured_days(
    web: WebProject,
) -> None:
    first_email(web, ADELE)
    fields = reply_to(web, ADELE, subject="Out of Office", text="I am away, no access to email.")
    answer = post_inbound(web, fields).json()
    until = web.clock.now + timedelta(days=web.settings.out_of_office_days)
    assert (answer["outcome"], answer["snoozed_until"]) == ("out_of_office", until.isoformat())


# Same company ---------------------------------------------------------------------------------


def test_a_reply_pauses_colleagues_at_the_same_company(web: WebProject) -> None:
    web.enroll("outbound-2w", [person(ADELE), person(BRUNO), person(CLARA)])
    web.tick(MONDAY)
    web.tick(TUESDAY)
    answer = post_inbound(web, reply_to(web, ADELE)).json()
    assert answer["paused_colleagues"] == [prospect_id(web, BRUNO)]
    assert status_of(web, BRUNO) == ("paused", "a colleague replied", None)
    assert status_of(web, CLARA)[0] == "active"
    assert len(reply_tasks(web)) == 1
    tick_days(web, TUESDAY + timedelta(hours=3), TUESDAY + timedelta(days=15))
    assert (len(web.sent_to(ADELE)), len(web.sent_to(BRUNO))) == (1, 1)


def test_a_free_mail_reply_does_not_pause_anyone_else(web: WebProject) -> None:
    web.enroll("outbound-2w", [person("ada@gmail.com"), person("bob@gmail.com")])
    web.tick(MONDAY)
    web.tick(TUESDAY)
    answer = post_inbound(web, reply_to(web, "ada@gmail.com")).json()
    assert answer["outcome"] == "replied"
    assert "paused_colleagues" not in answer
    assert status_of(web, "bob@gmail.com")[0] == "active"


# Authentication ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        (PATH, None, 401),
        (PATH, ("sendgrid", "wrong"), 403),
        (PATH, ("inbound-secret", ""), 403),
        (f"{PATH}/wrong", None, 403),
        (f"{PATH}/inbound-secret-and-more", None, 403),
    ],
)
def test_refused_posts_store_nothing(
    web: WebProject, path: str, auth: tuple[str, str] | None, status: int
) -> None:
    first_email(web, ADELE)
    before = count(web, events)
    response = web.post(path, files=multipart(reply_to(web, ADELE)), auth=auth)
    assert response.status_code == status
    assert "error" in response.json()
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert (count(web, events), reply_tasks(web)) == (before, [])
    assert status_of(web, ADELE)[0] == "active"


def test_a_garbled_authorization_header_is_refused(web: WebProject) -> None:
    for header in ("Basic !!!", "Basic " + "bm8tY29sb24=", "Bearer inbound-secret", "Basic"):
        response = web.post(PATH, files=multipart({"to": "x"}), headers={"Authorization": header})
        assert response.status_code == 401


def test_without_a_configured_secret_everything_is_refused(tmp_path: Any) -> None:
    settings = Settings(home=tmp_path, data_dir=tmp_path / "data", inbound_secret=None)
    client = TestClient(create_app(settings, store=Store("sqlite://")))
    fields = multipart(inbound_fields(sender=ADELE, to="x@reply.relance.local"))
    assert client.post(PATH, files=fields, auth=AUTH).status_code == 403
    assert client.post(f"{PATH}/anything", files=fields).status_code == 403
    assert client.post(f"{PATH}/None", files=fields).status_code == 403


def test_a_malformed_form_is_a_400(web: WebProject) -> None:
    broken = web.post(
        PATH,
        content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        auth=AUTH,
    )
    assert broken.status_code == 400
    empty = web.post(PATH, content=b"", headers={"Content-Type": "text/plain"}, auth=AUTH)
    assert empty.status_code == 400
    assert "error" in empty.json()


def test_fields_in_another_charset_arrive_decoded(web: WebProject) -> None:
    first_email(web, ADELE)
    text = "Très intéressé, appelez-moi : 10 € la minute."
    fields = {**reply_to(web, ADELE, text=text), "charsets": json.dumps({"text": "windows-1252"})}
    parts = [
        (name, (None, value.encode("cp1252" if name == "text" else "utf-8")))
        for name, value in fields.items()
    ]
    answer = web.post(PATH, files=parts, auth=AUTH).json()
    [task] = reply_tasks(web)
    assert (answer["outcome"], task.body) == ("replied", text)


def test_an_attachment_does_not_get_in_the_way(web: WebProject) -> None:
    first_email(web, ADELE)
    fields = {**reply_to(web, ADELE), "attachments": "1"}
    attachment = ("attachment1", ("brief.pdf", b"%PDF-1.4 tiny", "application/pdf"))
    answer = web.post(PATH, data=fields, files=[attachment], auth=AUTH).json()
    assert answer["outcome"] == "replied"


def test_record_inbound_works_without_the_web_layer(web: WebProject) -> None:
    first_email(web, ADELE)
    email = InboundEmail(
        sender=ADELE, subject="Re: hello", text="Yes!", headers={}, dkim="{@acme.example : pass}"
    )
    outcome = record_inbound(web.store, email, now=TUESDAY, settings=web.settings)
    assert (outcome.outcome, outcome.matched_by, outcome.notices[0].signal) == (
        "replied",
        "sender",
        "replied",
    )
    assert record_inbound(web.store, email, now=TUESDAY, settings=web.settings).outcome == (
        "duplicate"
    )


# Fuzz -----------------------------------------------------------------------------------------

NAMES = [
    "headers",
    "envelope",
    "from",
    "to",
    "cc",
    "subject",
    "text",
    "html",
    "charsets",
    "SPF",
    "dkim",
    "attachments",
]
junk_text = st.text(max_size=200)


@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_endpoint_never_fails_with_a_500(web: WebProject, data: st.DataObject) -> None:
    if not web.sent_to(ADELE):
        first_email(web, ADELE)
    sent = web.sent_to(ADELE)[0]
    mailto = sent["headers"]["List-Unsubscribe"].split("mailto:")[1].rstrip(">")
    addresses = st.sampled_from(
        [sent["reply_to"]["email"], mailto, ADELE, "x@y", "", "reply+zz@reply.relance.local"]
    )
    shape = data.draw(st.sampled_from(["fields", "bytes", "junk"]))
    if shape == "junk":
        content_type = data.draw(
            st.sampled_from(
                [
                    "multipart/form-data; boundary=b",
                    "multipart/form-data",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                    "application/json",
                ]
            )
        )
        response = web.post(
            PATH,
            content=data.draw(st.binary(max_size=500)),
            headers={"Content-Type": content_type},
            auth=AUTH,
        )
    else:
        fields = data.draw(
            st.dictionaries(st.sampled_from(NAMES) | st.text(min_size=1, max_size=10), junk_text)
        )
        fields["to"] = data.draw(addresses)
        fields["from"] = data.draw(addresses | junk_text)
        if data.draw(st.booleans()):
            fields["headers"] = (
                data.draw(
                    st.sampled_from(["Auto-Submitted: auto-replied\n", "Precedence: bulk\n", ""])
                )
                + f"Message-ID: <{data.draw(junk_text)}>\n"
                + f"In-Reply-To: {sent['headers']['Message-ID']}"
            )
        garbled = set(fields) - {"to", "from", "headers"} if shape == "bytes" else set()
        parts = [
            (name, (None, data.draw(st.binary()) if name in garbled else value.encode()))
            for name, value in fields.items()
        ]
        response = web.post(PATH, files=parts or [("x", (None, b""))], auth=AUTH)
    assert response.status_code in (200, 400), response.text
    assert ("outcome" if response.status_code == 200 else "error") in response.json()


# The same rules on SQLite and PostgreSQL, without the web layer --------------------------------


def test_matching_pausing_and_snoozing_on_both_stores(store: Store, tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        [step("hello", "email"), step("ring", "call", "2d"), step("again", "email", "3d")],
        send_window=BUSINESS_HOURS,
        timezone="Europe/Paris",
    )
    settings = project.settings()
    team = [person(ADELE), person(BRUNO), person("carl@gmail.com"), person("dora@delta.example")]
    ids = dict(enroll(store, project.sequence, team, start=T0, now=T0).enrolled)
    with store.reading() as connection:
        rows = {
            row.id: row
            for row in connection.execute(
                select(enrollments).where(enrollments.c.id.in_(ids.values()))
            )
        }
        first_touch = connection.execute(
            select(touchpoints.c.message_token).where(
                touchpoints.c.enrollment_id == ids[ADELE], touchpoints.c.step_id == "hello"
            )
        ).scalar_one()

    def received(sender: str, number: int, **headers: str) -> InboundEmail:
        return InboundEmail(
            sender=sender,
            recipients=("team@reply.relance.local",),
            subject="Re: hello",
            text="Yes, call me.\n> hello",
            headers={"message-id": f"<m{number}@mail.example>", **headers},
            dkim=f"{{@{sender.partition('@')[2]} : pass}}",
        )

    # By References, from a colleague's address: Adèle's enrollment pauses, Bruno's too.
    outcome = record_inbound(
        store,
        received(BRUNO, 1, references=f"<x@y> <{first_touch}@{settings.mail_domain}>"),
        now=T0,
        settings=settings,
    )
    adele = rows[ids[ADELE]].prospect_id
    bruno = rows[ids[BRUNO]].prospect_id
    assert (outcome.outcome, outcome.matched_by, outcome.prospect_id) == (
        "replied",
        "message_id",
        adele,
    )
    assert outcome.changed == [(ids[ADELE], "active", "paused")]
    assert outcome.paused_colleagues == [bruno]
    assert [notice.signal for notice in outcome.notices] == ["replied", "paused"]
    assert enrollment_status(store, ids[BRUNO]) is Status.PAUSED
    assert enrollment_status(store, ids["carl@gmail.com"]) is Status.ACTIVE

    # By token, to a stopped enrollment: the reply and its task are kept, nothing changes.
    record_signal(store, "carl@gmail.com", Signal.STOPPED, now=T0)
    token = rows[ids["carl@gmail.com"]].reply_token
    carl = replace(
        received("carl@gmail.com", 2),
        recipients=(f"reply+{token}@{settings.inbound_domain}",),
    )
    outcome = record_inbound(store, carl, now=T0, settings=settings)
    assert (outcome.outcome, outcome.matched_by, outcome.changed) == ("replied", "token", [])
    assert enrollment_status(store, ids["carl@gmail.com"]) is Status.STOPPED
    assert record_inbound(store, carl, now=T0, settings=settings).outcome == "duplicate"
    with store.reading() as connection:
        bodies = list(connection.execute(select(tasks.c.body).where(tasks.c.kind == "reply")))
    assert [row.body for row in bodies] == ["Yes, call me.", "Yes, call me."]

    # An out-of-office back on Saturday 7 March: snoozed to Monday 9 March, 09:00 in Paris.
    away = replace(
        received("dora@delta.example", 3),
        subject="Absence du bureau",
        text="Je suis absente, de retour le samedi 7 mars.",
    )
    outcome = record_inbound(store, away, now=T0, settings=settings)
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert (outcome.outcome, outcome.matched_by, outcome.snoozed_until) == (
        "out_of_office",
        "sender",
        monday,
    )
    assert enrollment_row(store, ids["dora@delta.example"]).snoozed_until == monday
    assert outcome.paused_colleagues == []


def test_a_reply_with_a_large_attachment_is_not_refused_for_its_size(web: WebProject) -> None:
    big = "x" * 2_000_000  # over the 1 MB limit of the other endpoints
    fields = {"from": "someone@elsewhere.example", "to": "sales@example.com", "text": big}
    reply = web.post("/webhooks/sendgrid/inbound", auth=("relance", "inbound-secret"), data=fields)
    assert reply.status_code == 200, reply.text
    events = web.post("/webhooks/sendgrid/events", content=big.encode())
    assert (events.status_code, events.json()) == (413, {"error": "body larger than 1000000 bytes"})


# Trust: only what SendGrid vouches for --------------------------------------------------------


@pytest.mark.parametrize(
    ("spf", "dkim", "envelope_from"),
    [
        ("fail", "none", ADELE),
        ("softfail", "{@acme.example : fail}", ADELE),
        ("pass", "none", "bounce@evil.example"),  # SPF passed for another domain
        ("none", "{@evil.example : pass}", ADELE),  # a signature of another domain
        ("", "", ADELE),
    ],
)
def test_a_sender_match_needs_spf_or_dkim_for_the_sender_s_domain(
    web: WebProject, spf: str, dkim: str, envelope_from: str
) -> None:
    first_email(web, ADELE)
    before = count(web, events)
    fields = inbound_fields(sender=ADELE, to="hello@reply.relance.local")
    fields.update(
        SPF=spf, dkim=dkim, envelope=json.dumps({"to": [fields["to"]], "from": envelope_from})
    )
    assert post_inbound(web, fields).json() == {"outcome": "unmatched"}
    assert status_of(web, ADELE)[0] == "active"
    assert count(web, events) == before


@pytest.mark.parametrize(
    ("spf", "dkim", "envelope_from"),
    [
        ("pass", "none", ADELE),
        ("pass", "", "bounces@mail.acme.example"),
        ("fail", "{@acme.example : pass}", ADELE),
        ("neutral", "{@mail.acme.example : fail, @acme.example : pass}", ADELE),
    ],
)
def test_a_vouched_sender_still_matches(
    web: WebProject, spf: str, dkim: str, envelope_from: str
) -> None:
    first_email(web, ADELE)
    fields = inbound_fields(sender=ADELE, to="hello@reply.relance.local")
    fields.update(
        SPF=spf, dkim=dkim, envelope=json.dumps({"to": [fields["to"]], "from": envelope_from})
    )
    assert post_inbound(web, fields).json()["matched_by"] == "sender"
    assert status_of(web, ADELE)[0] == "paused"


def test_a_guessed_message_id_pauses_no_one_at_the_attacker_s_domain(web: WebProject) -> None:
    victims = ["ann@evil.example", "ben@evil.example"]
    web.enroll("outbound-2w", [person(ADELE), person(BRUNO), *map(person, victims)])
    web.tick(MONDAY)
    web.tick(TUESDAY)
    fields = reply_to(web, ADELE, sender="mallory@evil.example", to="x@reply.relance.local")
    fields.update(SPF="pass", dkim="{@evil.example : pass}")
    answer = post_inbound(web, fields).json()
    assert answer["matched_by"] == "message_id"
    assert answer["paused_colleagues"] == [prospect_id(web, BRUNO)]
    assert [status_of(web, victim)[0] for victim in victims] == ["active", "active"]
