"""Re-importing a CRM export never chases again who booked, was stopped or is suppressed.

The acceptance scenario runs the real commands (``relance enroll --csv``, ``book``,
``stop``, ``suppress add``) on a SQLite store, and the real dispatcher tick by tick for
three weeks; the pure rules (``relance.reenrollment``) are tested on their own below.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_support import (
    ALWAYS_OPEN,
    T0,
    Clock,
    RecordingSender,
    dispatcher_for,
    enrollment_status,
    people,
    step,
    tick,
    write_project,
)
from typer.testing import CliRunner

import relance.cli  # noqa: F401 - registers every command
from relance.cli.app import app
from relance.engine import Status
from relance.enrollments import enroll
from relance.reenrollment import History, PastEnrollment, Refusal, refusal
from relance.spec import Sequence
from relance.store import Store

NOW = T0.isoformat().replace("+00:00", "Z")
CHASE = ("opening", "follow-up", "last-chance")
STEPS = [
    step("opening", "email"),
    step("follow-up", "email", "3d"),
    step("last-chance", "email", "7d"),
    step("meeting-confirmation", "meeting_confirmation"),
]
EXPORT = (
    "\ufeffEmail;First Name;Last Name;Company Name;Country/Region;Preferred language\n"
    "marc@example.com;Marc;Blanc;Blanc SA;France;French\n"
    "sophie@example.com;Sophie;Noir;Noir SARL;France;fr\n"
    "paul@example.com;Paul;Vert;Vert GmbH;Deutschland;Deutsch\n"
    "ana@example.com;Ana;Lopez;Lopez SL;Espagne;espagnol\n"
    "john@example.com;John;Doe;Doe Inc;United States;English\n"
)


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_reimport_never_chases_who_booked_was_stopped_or_suppressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_project(tmp_path / "project", STEPS, sequence_id="outreach")
    sequences = project.root / "sequences"
    sequences.mkdir()
    (sequences / "outreach.yaml").write_text(
        project.sequence.model_dump_json(exclude_defaults=True), encoding="utf-8"
    )
    data_dir = tmp_path / "data"
    monkeypatch.delenv("RELANCE_DATABASE_URL", raising=False)
    monkeypatch.setenv("RELANCE_HOME", str(project.root))
    monkeypatch.setenv("RELANCE_DATA_DIR", str(data_dir))
    export = tmp_path / "hubspot-export.csv"
    export.write_text(EXPORT, encoding="utf-8")
    store = Store(f"sqlite:///{(data_dir / 'relance.db').as_posix()}")
    sender = RecordingSender()
    dispatcher = dispatcher_for(store, project, sender, data_dir=data_dir)
    clock = Clock()

    assert "enrolled 5 in outreach" in run("enroll", "outreach", "--csv", str(export), "--now", NOW)
    tick(store, dispatcher, clock.now)
    assert sorted(m.to_email for m in sender.sent) == [
        "ana@example.com",
        "john@example.com",
        "marc@example.com",
        "paul@example.com",
        "sophie@example.com",
    ]
    later = clock.advance(hours=2).isoformat()
    meeting = (clock.now + timedelta(days=8)).isoformat()
    run("book", "marc@example.com", "--at", meeting, "--now", later)
    run("stop", "sophie@example.com", "--now", later)
    run("suppress", "add", "paul@example.com")
    warm = ("marc@example.com", "sophie@example.com", "paul@example.com")
    sent_before = len(sender.sent)

    for extra in ((), ("--skip-invalid",)):
        out = run("enroll", "outreach", "--csv", str(export), "--now", later, *extra)
        assert out.splitlines()[1:6] == [
            "enrolled 0 in outreach: 0 touches planned",
            "hubspot-export.csv:2 marc@example.com not enrolled: booked: a meeting in outreach",
            "hubspot-export.csv:3 sophie@example.com not enrolled: stopped: in outreach",
            "hubspot-export.csv:4 paul@example.com not enrolled: suppressed",
            "hubspot-export.csv:5 ana@example.com not enrolled: already active",
        ]
        assert out.splitlines()[7] == (
            "not enrolled 5: booked 1, stopped 1, suppressed 1, already active 2"
        )

    while clock.now < T0 + timedelta(weeks=3):
        tick(store, dispatcher, clock.advance(hours=6))

    after = sender.sent[sent_before:]
    to_warm = [(m.to_email, m.step_id) for m in after if m.to_email in warm]
    assert to_warm == [("marc@example.com", "meeting-confirmation")]
    chased = sorted((m.to_email, m.step_id) for m in after if m.to_email not in warm)
    assert chased == [
        ("ana@example.com", "follow-up"),
        ("ana@example.com", "last-chance"),
        ("john@example.com", "follow-up"),
        ("john@example.com", "last-chance"),
    ]
    assert [enrollment_status(store, n) for n in range(1, 6)] == [
        Status.BOOKED,
        Status.STOPPED,
        Status.COMPLETED,  # every touch left was skipped: the address is suppressed
        Status.COMPLETED,
        Status.COMPLETED,
    ]
    out = run("enroll", "outreach", "--csv", str(export), "--now", clock.now.isoformat())
    assert out.splitlines()[-1] == (
        "not enrolled 5: booked 1, stopped 1, suppressed 1, completed 2"
    )
    assert "ana@example.com not enrolled: completed: reenroll: never" in out
    store.dispose()


# --- the rules, pure --------------------------------------------------------------------

AT = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def sequence(**fields: object) -> Sequence:
    return Sequence.model_validate(
        {
            "id": "outreach",
            "name": "Outreach",
            "steps": [
                {"id": "a", "channel": "call", "objective": "x", "templates": {"script": "a.j2"}}
            ],
            **fields,
        }
    )


def past(*runs: tuple[str, Status, str | None, datetime | None], **extra: str) -> History:
    return History(enrollments=[PastEnrollment(*run) for run in runs], **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (past(), None),
        (past(suppressed="unsubscribed"), Refusal("suppressed", "unsubscribed")),
        (past(stage="client"), Refusal("client", "client")),
        (past(("other", Status.BOOKED, "booked", None)), Refusal("booked", "a meeting in other")),
        (
            past(("outreach", Status.PAUSED, "replied", None)),
            Refusal("replied", "in outreach, not resumed"),
        ),
        (
            past(("other", Status.STOPPED, "wrong person", None)),
            Refusal("stopped", "in other (wrong person)"),
        ),
        (
            past(("outreach", Status.ACTIVE, None, None)),
            Refusal("already active", "already active"),
        ),
        (past(("other", Status.PAUSED, "paused", None)), Refusal("active elsewhere", "in other")),
        (past(("outreach", Status.COMPLETED, None, AT)), Refusal("completed", "reenroll: never")),
        (past(("other", Status.COMPLETED, None, AT)), None),
    ],
)
def test_who_may_not_be_enrolled_again(history: History, expected: Refusal | None) -> None:
    assert refusal(sequence(), history, AT + timedelta(days=400)) == expected


def test_a_cool_down_lets_a_completed_prospect_back_in_once_over() -> None:
    cooling = sequence(reenroll={"after": "90d"})
    history = past(("outreach", Status.COMPLETED, None, AT))
    assert refusal(cooling, history, AT + timedelta(days=89)) == Refusal(
        "completed", "on 2026-06-01, reenroll after 90d: from 2026-08-30"
    )
    assert refusal(cooling, history, AT + timedelta(days=90)) is None


def test_a_sequence_may_allow_running_alongside_another() -> None:
    history = past(("other", Status.ACTIVE, None, None))
    assert refusal(sequence(allow_concurrent=True), history, AT) is None
    assert str(refusal(sequence(), history, AT)) == "active elsewhere: in other"


def test_the_last_touch_done_completes_the_enrollment(
    store: Store, tmp_path: Path, clock: Clock
) -> None:
    project = write_project(tmp_path, STEPS[:2], send_window=ALWAYS_OPEN)
    result = enroll(store, project.sequence, people(2), start=clock.now, now=clock.now)
    dispatcher = dispatcher_for(store, project, RecordingSender())
    tick(store, dispatcher, clock.now)
    assert {enrollment_status(store, eid) for _, eid in result.enrolled} == {Status.ACTIVE}
    tick(store, dispatcher, clock.advance(days=3))
    assert {enrollment_status(store, eid) for _, eid in result.enrolled} == {Status.COMPLETED}
    again = enroll(store, project.sequence, people(2), start=clock.now, now=clock.now)
    assert [why.kind for _, why in again.refused] == ["completed", "completed"]


def test_the_new_keys_at_their_defaults_leave_stored_versions_as_they_were() -> None:
    plain = sequence().model_dump(mode="json")
    assert not {"fallback_locales", "reenroll", "allow_concurrent"} & set(plain)
    chosen = sequence(reenroll={"after": "90d"}, allow_concurrent=True).model_dump(mode="json")
    assert (chosen["reenroll"], chosen["allow_concurrent"]) == ({"after": "90d"}, True)
