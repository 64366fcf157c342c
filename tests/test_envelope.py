"""Threading, reply and unsubscribe addresses: the pure rules, then as the dispatcher sends."""

from __future__ import annotations

import os
import re
from pathlib import Path

from relance.enrollments import enroll
from relance.envelope import (
    message_tokens_in,
    reply_address,
    thread_subject,
    tokens_in,
    unsubscribe_headers,
)
from relance.outbound import OutboundEmail
from relance.store import Store
from tests.store_support import (
    T0,
    RecordingSender,
    dispatcher_for,
    fresh_sqlite,
    people,
    step,
    tick,
    write_project,
)


def test_thread_subject_does_not_stack_prefixes() -> None:
    assert thread_subject("Votre benchmark") == "Re: Votre benchmark"
    assert thread_subject("RE: Re:  Fwd: Votre benchmark") == "Re: Votre benchmark"
    assert thread_subject("TR : Votre benchmark") == "Re: Votre benchmark"


def test_addresses_and_message_ids_read_back() -> None:
    token = "0123456789abcdef01234567"
    assert reply_address(token, "reply.example.com") == f"reply+{token}@reply.example.com"
    header = f'"Sales" <reply+{token}@REPLY.example.com>, other@example.com'
    assert tokens_in(header, "reply", "reply.example.com") == [token]
    assert tokens_in(header, "unsubscribe", "reply.example.com") == []
    assert tokens_in(f"reply+{token}@elsewhere.example", "reply", "reply.example.com") == []
    first, second, elsewhere = "0" * 31 + "a", "F" * 32, "1" * 32
    references = (
        f"<{first}@mail.example> <abc@gmail.com>\n <{second}@MAIL.example> "
        f"<{elsewhere}@other.example> <tp-12@mail.example> <{first[:-1]}@mail.example>"
    )
    assert message_tokens_in(references, "mail.example") == [first, second.lower()]


def test_message_ids_differ_across_stores_for_the_same_touch(
    sqlite_template: Path, tmp_path: Path
) -> None:
    project = write_project(tmp_path, [step("intro", "email")])
    sent: list[OutboundEmail] = []
    for name in ("first", "second"):  # two installations, each with its own database
        (tmp_path / name).mkdir()
        store = fresh_sqlite(sqlite_template, tmp_path / name)
        sender = RecordingSender()
        enroll(store, project.sequence, people(1), start=T0, now=T0)
        tick(store, dispatcher_for(store, project, sender), T0.replace(hour=12))
        store.dispose()
        sent.extend(sender.sent)
    first, second = sent
    assert first.touchpoint_id == second.touchpoint_id
    assert first.message_id != second.message_id
    for message in (first, second):
        assert re.fullmatch(r"<[0-9a-f]{32}@relance\.local>", message.message_id)
        assert f"tp-{message.touchpoint_id}" not in message.message_id


def test_one_click_unsubscribe_headers_follow_rfc_8058() -> None:
    headers = unsubscribe_headers("https://relance.example.com/", "abc", "reply.example.com")
    assert headers == {
        "List-Unsubscribe": "<https://relance.example.com/unsubscribe/abc>, "
        "<mailto:unsubscribe+abc@reply.example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def test_follow_ups_answer_the_first_email_unless_a_step_starts_a_new_thread(
    store: Store, tmp_path: Path
) -> None:
    project = write_project(
        tmp_path,
        [
            step("intro", "email"),
            step("follow", "email", "1d"),
            step("again", "email", "1d"),
            step("fresh", "email", "1d", new_thread=True),
        ],
    )
    sender = RecordingSender()
    dispatcher = dispatcher_for(
        store,
        project,
        sender,
        mail_domain="mail.example",
        inbound_domain="reply.example",
        public_url="https://r.example",
    )
    (person,) = people(1)
    enroll(store, project.sequence, [person], start=T0, now=T0)
    for day in range(4):
        tick(store, dispatcher, T0.replace(day=T0.day + day, hour=12))
    intro, follow, again, fresh = sender.sent
    token = intro.reply_to.split("+")[1].split("@")[0] if intro.reply_to else ""
    assert intro.reply_to == f"reply+{token}@reply.example"
    assert intro.subject == "intro for P0"
    assert (intro.in_reply_to, intro.references) == (None, ())
    assert follow.subject == again.subject == "Re: intro for P0"
    assert follow.in_reply_to == again.in_reply_to == intro.message_id
    assert again.references == (intro.message_id, follow.message_id)
    assert (fresh.subject, fresh.in_reply_to) == ("fresh for P0", None)
    assert intro.headers["List-Unsubscribe"].startswith(f"<https://r.example/unsubscribe/{token}>")
    assert f"https://r.example/unsubscribe/{token}" in intro.text


def test_an_edited_template_applies_from_the_next_batch(store: Store, tmp_path: Path) -> None:
    project = write_project(tmp_path, [step("intro", "email")])
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender)
    enroll(store, project.sequence, people(2), start=T0, now=T0)
    now = T0.replace(hour=12)
    assert dispatcher.run_step("demo", "intro", now=now, limit=1).sent == 1
    subject = project.templates_dir / "demo" / "intro.subject.j2"
    subject.write_text("Edited for {{ prospect.email }}", encoding="utf-8")
    later = subject.stat().st_mtime + 5
    os.utime(subject, (later, later))
    assert dispatcher.run_step("demo", "intro", now=now, limit=1).sent == 1
    assert [message.subject for message in sender.sent] == [
        "intro for P0",
        f"Edited for {sender.sent[1].to_email}",
    ]
