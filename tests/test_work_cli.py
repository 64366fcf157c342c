"""What SDRs and operators tell Relance: reply, book, pause, resume, stop, snooze, tasks,
task outcomes, the suppression list and migrations. Exact output, store state after."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cli_support import NOW, Cli, enroll_claire, make_cli
from sqlalchemy import select
from store_support import T0
from test_migrations import head_revision

from relance.tables import enrollments, events, meetings, tasks, touchpoints

CLAIRE = "claire.martin@example.com"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return make_cli(tmp_path, monkeypatch)


@pytest.fixture
def claire(cli: Cli) -> Cli:
    enroll_claire(cli)
    return cli


def status_of(cli: Cli) -> tuple[str, str | None]:
    with cli.store.reading() as connection:
        row = connection.execute(select(enrollments.c.status, enrollments.c.reason)).one()
    return row.status, row.reason


def touches(cli: Cli) -> list[tuple[str, str, str | None]]:
    with cli.store.reading() as connection:
        rows = connection.execute(
            select(touchpoints.c.key, touchpoints.c.status, touchpoints.c.due_at).order_by(
                touchpoints.c.id
            )
        )
        return [(r.key, r.status, r.due_at.isoformat()) for r in rows]


# --- signals ---------------------------------------------------------------------------


def test_a_reply_pauses_the_sequence_and_status_shows_it(claire: Cli) -> None:
    assert claire.ok("reply", CLAIRE, "--note", "call me in May", "--now", NOW) == (
        "claire.martin@example.com replied: outreach active → paused\n"
    )
    assert status_of(claire) == ("paused", "replied")
    assert "outreach v1 · enrollment 1 · paused (replied)" in claire.ok("status", CLAIRE)
    assert claire.emitted == [("replied", 1, [1], {"source": "cli"})]


def test_pause_then_resume_replans_from_now(claire: Cli) -> None:
    assert claire.ok("pause", CLAIRE, "--now", NOW) == (
        "claire.martin@example.com paused: outreach active → paused\n"
    )
    assert claire.ok("resume", CLAIRE, "--now", "2026-03-04T08:00:00Z") == (
        "claire.martin@example.com resumed: outreach paused → active; "
        "next touch call-intro on Wed 2026-03-04 09:00 Europe/Paris (08:00 UTC)\n"
    )
    assert [signal for signal, *_ in claire.emitted] == ["paused", "resumed"]


def test_a_signal_that_makes_no_sense_exits_1_with_the_reason(claire: Cli) -> None:
    assert claire.fails("resume", CLAIRE, "--now", NOW) == (
        "error: the enrollment is active, not paused: nothing to resume\n"
    )
    claire.ok("stop", CLAIRE, "--now", NOW)
    assert claire.fails("pause", CLAIRE, "--now", NOW) == (
        "error: prospect claire.martin@example.com has no active or paused enrollment\n"
    )
    assert claire.fails("reply", "nobody@example.com") == (
        "error: no prospect 'nobody@example.com' (give an email address or a prospect id)\n"
    )
    assert [signal for signal, *_ in claire.emitted] == ["stopped"]


def test_stop_skips_every_planned_touch_and_keeps_the_reason(claire: Cli) -> None:
    assert claire.ok("stop", CLAIRE, "--reason", "went with a competitor", "--now", NOW) == (
        "claire.martin@example.com stopped: outreach active → stopped\n"
    )
    assert status_of(claire) == ("stopped", "went with a competitor")
    assert {status for _, status, _ in touches(claire)} == {"skipped"}


def test_snooze_moves_the_next_touch_after_the_date(claire: Cli) -> None:
    assert claire.ok("snooze", CLAIRE, "--until", "2026-03-16", "--now", NOW) == (
        "claire.martin@example.com snoozed until Mon 2026-03-16 00:00 Europe/Paris "
        "(2026-03-15 23:00 UTC): outreach active; "
        "next touch call-intro on Mon 2026-03-16 09:00 Europe/Paris (08:00 UTC)\n"
    )
    assert claire.fails("snooze", CLAIRE, "--until", "2026-03-01", "--now", NOW) == (
        "error: --until: expected a time after now "
        "(Mon 2026-03-02 09:00 Europe/Paris (08:00 UTC))\n"
    )


def test_booking_stops_the_chase_and_plans_the_confirmation(claire: Cli) -> None:
    output = claire.ok(
        "book", CLAIRE, "--at", "2026-03-12T10:00+01:00", "--duration", "45m",
        "--join-url", "https://meet.example.com/abc", "--now", NOW,
    )  # fmt: skip
    assert output == (
        "claire.martin@example.com booked for Thu 2026-03-12 10:00 Europe/Paris (09:00 UTC), "
        "45 min: outreach active → booked; confirmation planned (meeting 1)\n"
    )
    assert status_of(claire) == ("booked", "booked")
    assert touches(claire) == [
        ("call-intro", "skipped", "2026-03-02T08:00:00+00:00"),
        ("email-guide", "skipped", "2026-03-03T08:00:00+00:00"),
        ("reminder-slots", "skipped", "2026-03-05T08:00:00+00:00"),
        ("meeting-confirmation@meeting-1", "planned", "2026-03-02T08:00:00+00:00"),
        ("meeting-confirmation@reminder-1", "planned", "2026-03-11T09:00:00+00:00"),
    ]
    with claire.store.reading() as connection:
        meeting = connection.execute(select(meetings)).one()
    assert meeting.ends_at - meeting.starts_at == timedelta(minutes=45)
    assert claire.emitted == [("booked", 1, [1], {"meeting_id": 1})]
    assert "meeting 1: Thu 2026-03-12 10:00 Europe/Paris (09:00 UTC), booked, " in claire.ok(
        "status", CLAIRE
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "2026-03-12T10:00"], "--at: expected a time with its UTC offset such as "
         "2026-03-02T09:00+01:00 (or Z for UTC), got '2026-03-12T10:00'"),
        (["--at", "next week"], "--at: expected a time such as 2026-03-02T09:00+01:00, "
         "got 'next week'"),
        (["--at", "2026-03-12T10:00Z", "--duration", "soon"], "--duration: expected a "
         "duration such as 30m, 1h or 1h30, got 'soon'"),
    ],
)  # fmt: skip
def test_bad_booking_input_is_explained(claire: Cli, args: list[str], message: str) -> None:
    assert claire.fails("book", CLAIRE, *args, "--now", NOW) == f"error: {message}\n"
    assert status_of(claire) == ("active", None)


# --- tasks -----------------------------------------------------------------------------


def test_tasks_list_the_due_calls_with_their_script(claire: Cli) -> None:
    claire.dispatch("call-intro")
    assert claire.ok("tasks", "--now", "2026-03-02T10:00+01:00") == (
        "id  due (prospect's time)  UTC               kind  prospect       company         "
        "phone              step\n"
        "1   Mon 2026-03-02 09:00   2026-03-02 08:00  call  Claire Martin  Acme Industrie  "
        "+33 1 23 45 67 89  outreach/call-intro\n"
        "1 open task\n"
        "\n"
        "── task 1 · Claire Martin · Acme Industrie · +33 1 23 45 67 89\n"
        "objective of call-intro (due Mon 2026-03-02 09:00 Europe/Paris)\n"
        "\n"
        "Call claire.martin@example.com: objective of call-intro\n"
    )


def test_tasks_are_filtered_by_day_and_owner(claire: Cli) -> None:
    claire.dispatch("call-intro")
    tomorrow = "2026-03-03T09:00+01:00"
    assert claire.ok("tasks", "--due", "overdue", "--now", tomorrow, "--brief").endswith(
        "1 open task, 1 overdue (*)\n"
    )
    assert claire.ok("tasks", "--due", "overdue", "--now", NOW) == "no open tasks (overdue)\n"
    assert claire.ok("tasks", "--due", "2026-03-03", "--now", tomorrow) == (
        "no open tasks (2026-03-03)\n"
    )
    assert claire.ok("tasks", "--owner", "someone@example.com", "--now", NOW) == (
        "no open tasks (today)\n"
    )
    items = json.loads(claire.ok("tasks", "--owner", "SDR@example.com", "--json", "--now", NOW))
    assert [(i["id"], i["email"], i["due_at"], i["overdue"]) for i in items] == [
        (1, CLAIRE, "2026-03-02T08:00:00Z", False)
    ]
    assert claire.fails("tasks", "--due", "tomorrow") == (
        "error: --due: expected today, overdue, all or a date such as 2026-03-02, got 'tomorrow'\n"
    )


def test_closing_a_task_records_its_outcome_once(claire: Cli) -> None:
    claire.dispatch("call-intro")
    assert claire.ok(
        "task", "done", "1", "--outcome", "voicemail", "--note", "left a message", "--now", NOW
    ) == ("task 1 done: voicemail\n")
    with claire.store.reading() as connection:
        task = connection.execute(select(tasks)).one()
        event = connection.execute(select(events)).one()
    assert (task.status, task.outcome, task.note) == ("done", "voicemail", "left a message")
    assert (event.kind, event.source, event.data) == (
        "task_outcome",
        "task",
        {"task_id": 1, "outcome": "voicemail", "note": "left a message"},
    )
    assert claire.fails("task", "done", "1", "--outcome", "connected") == (
        "error: task 1 is already done (voicemail)\n"
    )
    assert claire.fails("task", "done", "7", "--outcome", "connected") == (
        "error: no task 7 (relance tasks --due all lists the open ones)\n"
    )
    assert status_of(claire) == ("active", None)


def test_a_booked_call_books_the_meeting(claire: Cli) -> None:
    claire.dispatch("call-intro")
    assert claire.fails("task", "done", "1", "--outcome", "booked") == (
        "error: --outcome booked needs --at, the meeting start (ISO 8601 with offset)\n"
    )
    output = claire.ok(
        "task", "done", "1", "--outcome", "booked", "--at", "2026-03-12T10:00+01:00",
        "--now", "2026-03-02T08:30:00Z",
    )  # fmt: skip
    assert output == (
        "task 1 done: booked; claire.martin@example.com booked for "
        "Thu 2026-03-12 10:00 Europe/Paris (09:00 UTC), 30 min: outreach active → booked; "
        "confirmation planned (meeting 1)\n"
    )
    assert status_of(claire) == ("booked", "booked")
    assert [signal for signal, *_ in claire.emitted] == ["booked", "task_outcome"]


def test_not_interested_stops_the_sequence(claire: Cli) -> None:
    claire.dispatch("call-intro")
    assert claire.ok("task", "done", "1", "--outcome", "not_interested", "--now", NOW) == (
        "task 1 done: not_interested; stopped: outreach active → stopped\n"
    )
    assert status_of(claire) == ("stopped", "not interested")
    assert claire.ok("status", CLAIRE).endswith(
        "Mon 2026-03-02 09:00  2026-03-02 08:00  stopped       task    outreach  "
        "task 1; not interested\n"
        "Mon 2026-03-02 09:00  2026-03-02 08:00  task_outcome  task    outreach  "
        "task 1: not_interested\n"
    )


def test_a_bad_outcome_is_refused_by_the_option_parser(claire: Cli) -> None:
    result = claire.run("task", "done", "1", "--outcome", "maybe")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "'maybe' is not one of" in result.stderr


# --- suppression list and migrations ---------------------------------------------------


def test_the_suppression_list_by_hand(cli: Cli) -> None:
    assert cli.ok("suppress", "list") == "no suppressed addresses\n"
    assert cli.ok("suppress", "add", "Claire.Martin@Example.com", "--now", NOW) == (
        "suppressed claire.martin@example.com (manual)\n"
    )
    assert cli.ok("suppress", "add", CLAIRE) == f"{CLAIRE} was already suppressed\n"
    assert cli.ok("suppress", "list") == (
        "email                      reason  source  since (UTC)\n"
        "claire.martin@example.com  manual  cli     2026-03-02 08:00\n"
        "1 suppressed address\n"
    )
    assert json.loads(cli.ok("suppress", "list", "--json")) == [
        {"email": CLAIRE, "reason": "manual", "source": "cli", "since": "2026-03-02T08:00:00Z"}
    ]
    assert cli.ok("suppress", "remove", CLAIRE) == f"removed {CLAIRE} from the suppression list\n"
    assert cli.fails("suppress", "remove", CLAIRE) == (
        f"error: {CLAIRE} is not on the suppression list\n"
    )
    assert cli.fails("suppress", "add", "not-an-address") == (
        "error: expected an email address, got 'not-an-address'\n"
    )


def test_db_upgrade_prints_the_revision_and_the_url(cli: Cli) -> None:
    url = f"sqlite:///{(cli.data_dir / 'relance.db').as_posix()}"
    head = head_revision()
    first = cli.ok("db", "upgrade")
    assert first in (
        f"{url}: revision {head} (upgraded from empty)\n",
        f"{url}: revision {head} (already up to date)\n",  # migrated earlier in this process
    )
    assert cli.ok("db", "upgrade") == f"{url}: revision {head} (already up to date)\n"


def test_every_command_has_an_example_in_its_help(cli: Cli) -> None:
    commands = [
        ["enroll"], ["status"], ["tasks"], ["task", "done"], ["reply"], ["book"], ["pause"],
        ["resume"], ["stop"], ["snooze"], ["db", "upgrade"], ["suppress", "list"],
        ["suppress", "add"], ["suppress", "remove"],
    ]  # fmt: skip
    for command in commands:
        text = " ".join(cli.ok(*command, "--help").split())
        assert "Example: relance " in text or "Example: RELANCE_" in text, command


def test_t0_is_the_clock_these_tests_use() -> None:
    assert T0.isoformat() == "2026-03-02T08:00:00+00:00"
