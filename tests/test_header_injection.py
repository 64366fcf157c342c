"""CR, LF and NUL never reach a mail header, the invitation or the SDR page.

A first name holding an RFC 2047 encoded word that decodes to CRLF used to become a real
``Bcc:`` header in the .eml file on Python 3.11 and 3.12.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import NOW, Cli, make_cli
from sqlalchemy import select, update
from store_support import T0, RecordingSender
from test_outbox import email_for

from relance.dispatcher import Dispatcher
from relance.outbox import OutboxSender
from relance.tables import prospects, touchpoints

ENCODED_Q = "=?utf-8?q?a=0D=0ABcc:_e@evil.example?="
ENCODED_B = "=?utf-8?b?YQ0KQmNjOiBlQGV2aWwuZXhhbXBsZQ==?="
PAYLOADS = {"encoded-q": ENCODED_Q, "encoded-b": ENCODED_B, "crlf": "a\r\nBcc: e@evil.example",
            "nul": "a\x00b"}  # fmt: skip


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize("field", ["to_name", "from_name", "subject"])
def test_a_header_value_with_a_line_break_is_refused(field: str, payload: str) -> None:
    with pytest.raises(ValueError, match="expected one line of text") as caught:
        email_for(**{field: payload})
    assert "evil" not in str(caught.value)


def test_a_benign_encoded_word_still_goes_through(tmp_path: Path) -> None:
    OutboxSender(tmp_path, fsync=False).send(email_for(to_name="=?utf-8?q?L=C3=A9a?= Martin"))
    assert b"\nBcc:" not in (tmp_path / "tp1.eml").read_bytes()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return make_cli(tmp_path, monkeypatch)


def outbox_dispatch(cli: Cli, outbox: Path) -> None:
    settings = cli.project.settings(data_dir=cli.data_dir)
    sender = RecordingSender(outbox=OutboxSender(outbox, fsync=False))
    Dispatcher(cli.store, settings, sender, cli.project.env).run_step(
        "outreach", "email-guide", now=T0.replace(day=10), limit=100
    )


@pytest.mark.parametrize("field", ["--first-name", "--last-name"])
def test_an_encoded_word_in_a_name_never_becomes_a_header(
    cli: Cli, tmp_path: Path, field: str
) -> None:
    cli.ok("enroll", "outreach", "--email", "ana@client.example", field, ENCODED_Q,
           "--field", "industry=x", "--now", NOW)  # fmt: skip
    outbox_dispatch(cli, tmp_path / "outbox")
    for eml in (tmp_path / "outbox").glob("*.eml"):
        assert b"\nBcc:" not in eml.read_bytes().replace(b"\r\n", b"\n")
    with cli.store.reading() as connection:
        status, reason = connection.execute(
            select(touchpoints.c.status, touchpoints.c.reason).where(
                touchpoints.c.step_id == "email-guide"
            )
        ).one()
    assert status == "failed"  # the To: header carries the name
    assert "header To: expected one line of text" in reason
    assert "evil" not in reason


@pytest.mark.parametrize(
    ("value", "what"), [("A\x00", "a NUL"), ("A\rB", "a carriage return (CR)")]
)
def test_a_control_character_is_refused_at_enrollment(cli: Cli, value: str, what: str) -> None:
    error = cli.fails("enroll", "outreach", "--email", "ana@client.example", "--first-name",
                      value, "--field", "industry=x", "--now", NOW)  # fmt: skip
    assert error == f"error: --first-name: expected one line of text, got {what}\n"
    assert cli.count("prospects") == 0


def test_a_control_character_in_a_csv_cell_is_refused_with_its_line(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(
        b"email,first_name,company,industry\n"
        b"ana@client.example,Ana,Acme,x\n"
        b"bob@client.example,Bo\x00b,Acme,x\n"
        b'carl@client.example,"Carl\nBcc: e@evil.example",Acme,x\n'
        b"dan@client.example,Dan,Acme,a\x00b\n"
        b'eve@client.example,Eve,Acme,"two\nlines"\n'
    )
    result = cli.run("enroll", "outreach", "--csv", str(path), "--now", NOW)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[:3] == [
        "people.csv:3 column first_name: expected one line of text, got a NUL",
        "people.csv:4 column first_name: expected one line of text, got a line break (LF)",
        "people.csv:6 column industry: expected text, got a NUL",
    ]  # a custom field may span lines (line 7): it never reaches a header
    assert cli.count("prospects") == 0


def test_a_stored_nul_reaches_neither_the_to_header_nor_the_invitation(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("enroll", "outreach", "--email", "ana@client.example", "--first-name", "Ana",
           "--field", "industry=x", "--now", NOW)  # fmt: skip
    with cli.store.transaction() as connection:  # written before enrollment refused it
        connection.execute(update(prospects).values(first_name="An\x00a", company="A\rB"))
    outbox_dispatch(cli, tmp_path / "outbox")
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    data = eml.read_bytes()
    assert b"\x00" not in data
    assert b"To: Ana <ana@client.example>" in data


def test_invitations_never_carry_a_nul() -> None:
    from integrations.icalendar_invite import invite_attachment

    assert b"\x00" not in invite_attachment(b"BEGIN:VCALENDAR\r\nX:a\x00b\r\n").content
