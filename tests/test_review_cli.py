"""``relance review``: unknown emails are settled from the provider's events, listed, and
closed by a person's verdict."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from store_support import T0, people, step, write_project
from typer.testing import CliRunner, Result

import relance.cli  # noqa: F401 - registers every command
from relance.claims import claim, recover_stale
from relance.cli.app import app
from relance.engagement import MailEvent, MailEventKind, apply_mail_events
from relance.enrollments import enroll
from relance.store import Store

LEASE = timedelta(minutes=10)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store with three emails whose dispatcher died mid-send; the first was delivered."""
    url = f"sqlite:///{tmp_path / 'relance.db'}"
    monkeypatch.setenv("RELANCE_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    opened = Store(url)
    project = write_project(tmp_path, [step("hello", "email")])
    enroll(opened, project.sequence, people(3), start=T0, now=T0)
    claim(opened, sequence_id="demo", step_id="hello", now=T0, limit=3, claim_id="dead")
    delivered = MailEvent(
        "sendgrid:1", MailEventKind.DELIVERED, "sendgrid", "p0000@example.com", T0, 1
    )
    apply_mail_events(opened, [delivered], now=T0)
    recover_stale(opened, T0 + LEASE + timedelta(minutes=1), LEASE)
    return opened


def review(*args: str) -> Result:
    return CliRunner().invoke(app, ["review", "--now", "2026-03-02T09:00:00Z", *args])


WAITING = "dispatcher stopped during the send: check provider"


def test_review_settles_from_the_events_then_lists_what_waits(store: Store) -> None:
    result = review()

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "From the provider's events: 1 sent, 0 dropped; 0 planned again (no event in 96 h).\n"
        "touchpoint  sequence  step   prospect  claimed at            reason\n"
        f"2           demo      hello  2         2026-03-02T08:00:00Z  {WAITING}\n"
        f"3           demo      hello  3         2026-03-02T08:00:00Z  {WAITING}\n"
        "2 emails wait for review: --sent ID if the prospect got it, --resend ID if the "
        "provider never had it.\n"
    )


def test_review_applies_a_persons_verdicts(store: Store) -> None:
    result = review("--sent", "2", "--resend", "3", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "confirmed": 1,
        "dropped": 0,
        "replanned": 0,
        "marked_sent": [2],
        "marked_not_sent": [3],
        "waiting": [],
    }
    assert review().stdout == "No email waits for review.\n"


def test_a_verdict_on_a_touch_that_does_not_wait_is_refused_and_changes_nothing(
    store: Store,
) -> None:
    result = review("--sent", "1", "--sent", "2")

    assert result.exit_code == 1
    assert result.stderr == "error: not waiting for review (not unknown): 1\n"
    assert "2           demo" in review().stdout, "all or nothing"
