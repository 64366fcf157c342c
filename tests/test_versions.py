"""Sequence versions and ``migrate``: the pure decision for one enrollment, the store's
side (one transaction, live enrollments only), and the ``versions`` / ``migrate`` commands.

The pure tests use a sequence in UTC that may send at any hour, so due times are plain
sums: a at enrollment, b one day later, c two days after b, d two days after c.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import NOW, Cli, enroll_claire, make_cli
from sqlalchemy import func, select
from store_support import (
    ALWAYS_OPEN,
    T0,
    RecordingSender,
    dispatcher_for,
    step,
    tick,
    touch_rows,
    write_project,
)

from relance.engine import Signal, Status
from relance.enrollments import enroll
from relance.prospect import Prospect
from relance.signals import book, record_signal
from relance.spec import Channel, Sequence
from relance.store import Store
from relance.tables import enrollments, events, sequence_versions
from relance.version_move import (
    ADDED,
    KEPT,
    REPLANNED,
    SKIPPED,
    UNCHANGED,
    StoredTouch,
    VersionMove,
    version_changes,
)
from relance.versions import migrate_enrollments

DAY = timedelta(days=1)
ANA = Prospect(email="ana@example.com")


def steps(**changed: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a, b, c, d and a meeting confirmation; ``changed`` replaces some by id."""
    written = [
        step("a", "call"),
        step("b", "email", "1d"),
        step("c", "call", "2d"),
        step("d", "email", "2d"),
        step("confirm", "meeting_confirmation"),
    ]
    return [{**item, **changed.get(item["id"], {})} for item in written]


def sequence(items: list[dict[str, Any]] | None = None, **fields: Any) -> Sequence:
    return Sequence.model_validate(
        {
            "id": "demo",
            "name": "Demo",
            "locale": "en",
            "timezone": "UTC",
            "country": "FR",
            "send_window": ALWAYS_OPEN,
            "holidays": {"country": False},
            "cadence": {"min_gap": "1h"},
            "steps": steps() if items is None else items,
            **fields,
        }
    )


V1 = sequence()


def touches(*states: tuple[str, str, datetime]) -> list[StoredTouch]:
    """Stored touches of V1 from (step id, status, due at)."""
    positions = {item.id: index for index, item in enumerate(V1.steps)}
    return [
        StoredTouch(
            index + 1, step_id, V1.step(step_id).channel.value, positions[step_id], status, due
        )
        for index, (step_id, status, due) in enumerate(states)
    ]


def halfway() -> list[StoredTouch]:
    """a and b sent, c and d planned, as V1 plans them from T0."""
    return touches(
        ("a", "sent", T0), ("b", "sent", T0 + DAY), ("c", "planned", T0 + 3 * DAY),
        ("d", "planned", T0 + 5 * DAY),
    )  # fmt: skip


def decide(new: Sequence, stored: list[StoredTouch], now: datetime, **extra: Any) -> list[Any]:
    moves = VersionMove(new, 2).decide(V1, stored, ANA, enrolled_at=T0, now=now, **extra)
    return [(m.step_id, m.action, m.due_before, m.due_after, m.reason) for m in moves]


# --- the pure decision ----------------------------------------------------------------


def test_done_touches_stay_and_the_rest_follow_the_new_waits() -> None:
    new = sequence(steps(c={"wait": "3d"}))
    assert decide(new, halfway(), T0 + DAY) == [
        ("a", KEPT, T0, T0, None),
        ("b", KEPT, T0 + DAY, T0 + DAY, None),
        ("c", REPLANNED, T0 + 3 * DAY, T0 + 4 * DAY, None),
        ("d", REPLANNED, T0 + 5 * DAY, T0 + 6 * DAY, None),
    ]


def test_an_edit_that_moves_nothing_leaves_every_due_time() -> None:
    new = sequence(steps(d={"objective": "Say it better."}))
    actions = [(m[0], m[1]) for m in decide(new, halfway(), T0 + DAY)]
    assert actions == [("a", KEPT), ("b", KEPT), ("c", UNCHANGED), ("d", UNCHANGED)]


def test_a_planned_touch_of_a_removed_step_is_skipped_with_the_version() -> None:
    new = sequence([item for item in steps() if item["id"] != "c"])
    assert decide(new, halfway(), T0 + DAY)[2:] == [
        ("c", SKIPPED, T0 + 3 * DAY, None, "removed in version 2"),
        ("d", REPLANNED, T0 + 5 * DAY, T0 + 3 * DAY, None),
    ]


def test_a_done_touch_of_a_removed_step_is_kept_and_still_counts_as_the_last() -> None:
    stored = touches(
        ("a", "sent", T0), ("b", "sent", T0 + DAY), ("c", "sent", T0 + 3 * DAY),
        ("d", "planned", T0 + 5 * DAY),
    )  # fmt: skip
    new = sequence([item for item in steps() if item["id"] != "c"])
    assert decide(new, stored, T0 + 3 * DAY)[2:] == [
        ("c", KEPT, T0 + 3 * DAY, T0 + 3 * DAY, None),
        ("d", UNCHANGED, T0 + 5 * DAY, T0 + 5 * DAY, None),
    ]


def test_a_new_step_is_planned_in_its_place_after_the_last_touch_done() -> None:
    items = steps()
    new = sequence([*items[:2], step("x", "call", "1d"), *items[2:]])
    assert decide(new, halfway(), T0 + DAY)[2:] == [
        ("x", ADDED, None, T0 + 2 * DAY, None),
        ("c", REPLANNED, T0 + 3 * DAY, T0 + 4 * DAY, None),
        ("d", REPLANNED, T0 + 5 * DAY, T0 + 6 * DAY, None),
    ]


def test_a_new_step_written_before_touches_already_done_comes_next() -> None:
    items = steps()
    new = sequence([items[0], step("x", "call", "1d"), *items[1:]])
    assert decide(new, halfway(), T0 + DAY)[2:] == [
        ("x", ADDED, None, T0 + 2 * DAY, None),
        ("c", REPLANNED, T0 + 3 * DAY, T0 + 4 * DAY, None),
        ("d", REPLANNED, T0 + 5 * DAY, T0 + 6 * DAY, None),
    ]


def test_failed_skipped_and_unknown_touches_are_done_too() -> None:
    stored = touches(
        ("a", "failed", T0), ("b", "unknown", T0 + DAY), ("c", "skipped", T0 + 3 * DAY),
        ("d", "planned", T0 + 5 * DAY),
    )  # fmt: skip
    moves = decide(sequence(steps(d={"wait": "1d"})), stored, T0 + 3 * DAY)
    assert [(m[0], m[1]) for m in moves] == [
        ("a", KEPT), ("b", KEPT), ("c", KEPT), ("d", REPLANNED)
    ]  # fmt: skip
    assert moves[3][3] == T0 + 4 * DAY


def test_with_nothing_done_the_plan_starts_where_the_first_touch_was_due() -> None:
    start = T0 + timedelta(hours=30)  # enrolled at T0 to start a day and 6 hours later
    stored = touches(
        ("a", "planned", start), ("b", "planned", start + DAY),
        ("c", "planned", start + 3 * DAY), ("d", "planned", start + 5 * DAY),
    )  # fmt: skip
    new = sequence(steps(d={"wait": "3d"}))
    assert [(m[0], m[1], m[3]) for m in decide(new, stored, T0)] == [
        ("a", UNCHANGED, start),
        ("b", UNCHANGED, start + DAY),
        ("c", UNCHANGED, start + 3 * DAY),
        ("d", REPLANNED, start + 6 * DAY),
    ]


def test_with_nothing_done_and_a_first_wait_the_plan_starts_at_enrollment() -> None:
    old = sequence(steps(a={"wait": "1d"}))
    stored = [
        StoredTouch(index, item.id, item.channel.value, index, "planned", T0 + (index + 1) * DAY)
        for index, item in enumerate(old.timed_steps)
    ]
    new = sequence(steps(a={"wait": "2d"}))
    moves = VersionMove(new, 2).decide(old, stored, ANA, enrolled_at=T0, now=T0)
    assert [(m.step_id, m.due_after) for m in moves] == [
        ("a", T0 + 2 * DAY), ("b", T0 + 3 * DAY), ("c", T0 + 5 * DAY), ("d", T0 + 7 * DAY),
    ]  # fmt: skip


def test_a_touch_that_would_be_overdue_falls_now_and_the_next_keep_their_waits() -> None:
    now = T0 + 4 * DAY + timedelta(hours=3)
    new = sequence(steps(c={"wait": "1d"}))  # c would fall at T0 + 2 days: in the past
    assert decide(new, halfway(), now)[2:] == [
        ("c", REPLANNED, T0 + 3 * DAY, now, None),
        ("d", REPLANNED, T0 + 5 * DAY, now + 2 * DAY, None),
    ]


def test_planned_touches_take_the_variant_and_channel_of_the_new_step() -> None:
    variants = [
        {"id": "short", "templates": {"subject": "demo/d.short.subject.j2"}},
        {"id": "long", "weight": 2},
    ]
    email = {"channel": "email", "templates": {"subject": "s.j2", "html": "h.j2", "text": "t.j2"}}
    new = sequence(steps(c=email, d={"variants": variants}))
    moves = VersionMove(new, 2).decide(V1, halfway(), ANA, enrolled_at=T0, now=T0 + DAY)
    c, d = moves[2], moves[3]
    assert (c.action, c.channel, c.variant, c.due_after) == (
        REPLANNED, Channel.EMAIL, None, T0 + 3 * DAY
    )  # fmt: skip
    assert (d.action, d.variant_before, d.variant, d.due_after) == (
        REPLANNED, None, "long", T0 + 5 * DAY
    )  # fmt: skip


def test_version_changes_name_the_steps_and_settings_that_changed() -> None:
    items = steps(c={"wait": "3d"})
    new = sequence(
        [items[1], items[0], items[2], step("x", "call", "1d"), items[4]],
        cadence={"min_gap": "2h"},
    )
    assert version_changes(V1, new) == ["+x", "-d", "~c", "order", "cadence"]
    assert version_changes(V1, V1) == []


# --- the store: one transaction, live enrollments only ----------------------------------


def test_migrate_moves_active_and_paused_enrollments_and_nothing_else(
    store: Store, tmp_path: Path
) -> None:
    project = write_project(tmp_path / "v1", steps())
    people = [Prospect(email=f"{name}@example.com") for name in ("ana", "bob", "cyd", "dan")]
    ids = dict(enroll(store, project.sequence, people, start=T0, now=T0).enrolled)
    tick(store, dispatcher_for(store, project, RecordingSender()), T0 + DAY)  # a and b done
    record_signal(store, "bob@example.com", Signal.PAUSED, now=T0 + DAY)
    record_signal(store, "cyd@example.com", Signal.STOPPED, now=T0 + DAY)
    book(store, "dan@example.com", starts_at=T0 + 8 * DAY, duration=timedelta(minutes=30),
         now=T0 + DAY)  # fmt: skip
    before = {row.id: row for row in touch_rows(store)}
    new = sequence([*steps()[:2], step("x", "call", "1d"), *steps()[3:]])

    dry = migrate_enrollments(store, new, now=T0 + DAY, dry_run=True)
    assert (dry.version, dry.stored, dry.dry_run) == (2, False, True)
    assert {row.id: row for row in touch_rows(store)} == before
    assert count(store, sequence_versions) == 1

    report = migrate_enrollments(store, new, now=T0 + DAY)
    assert [(e.email, e.from_version) for e in report.enrollments] == [
        ("ana@example.com", 1), ("bob@example.com", 1)
    ]  # fmt: skip
    assert [[(t.step_id, t.action) for t in e.touches] for e in report.enrollments] == [
        [(s, a) for s, a in zip("abcxd", (KEPT, KEPT, SKIPPED, ADDED, REPLANNED), strict=True)],
    ] * 2
    assert report.count(ADDED) == 2 and (report.stored, report.dry_run) == (False, False)
    with store.reading() as connection:
        versions = dict(
            connection.execute(select(enrollments.c.id, enrollments.c.sequence_version_id)).all()
        )
        statuses = dict(connection.execute(select(enrollments.c.id, enrollments.c.status)).all())
        migrated = list(connection.execute(select(events).where(events.c.kind == "migrated")))
    new_id = max(versions.values())
    assert [versions[ids[f"{n}@example.com"]] == new_id for n in ("ana", "bob", "cyd", "dan")] == [
        True, True, False, False
    ]  # fmt: skip
    assert statuses[ids["bob@example.com"]] == Status.PAUSED
    assert sorted((e.enrollment_id, e.data["note"]) for e in migrated) == [
        (ids["ana@example.com"], "version 1 -> 2"), (ids["bob@example.com"], "version 1 -> 2")
    ]  # fmt: skip
    after = {row.id: row for row in touch_rows(store)}
    for row_id, row in before.items():  # stopped and booked enrollments: untouched
        if row.enrollment_id in (ids["cyd@example.com"], ids["dan@example.com"]):
            assert after[row_id] == row
    ana = {row.step_id: row for row in touch_rows(store, ids["ana@example.com"])}
    assert (ana["c"].status, ana["c"].reason) == ("skipped", "removed in version 2")
    assert (ana["x"].status, ana["x"].due_at, ana["x"].position) == ("planned", T0 + 2 * DAY, 2)
    assert (ana["d"].due_at, ana["d"].position) == (T0 + 4 * DAY, 3)
    assert ana["a"] == before[ana["a"].id] and ana["b"] == before[ana["b"].id]

    again = migrate_enrollments(store, new, now=T0 + 2 * DAY)
    assert (again.version, again.stored, again.enrollments) == (2, True, [])


def count(store: Store, table: Any) -> int:
    with store.reading() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- the commands -----------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    made = make_cli(tmp_path, monkeypatch)
    # The shared test text names ``meeting`` on every step: migrate validates the file first.
    text = made.project.templates_dir / "outreach" / "email-guide.text.j2"
    text.write_text("{{ step.objective }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    return made


def edit(cli: Cli, change: Any) -> None:
    """Rewrite sequences/outreach.yaml (JSON, which is YAML too) after ``change(data)``."""
    path = cli.project.root / "sequences" / "outreach.yaml"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def slower_reminder(data: dict[str, Any]) -> None:
    data["steps"][2]["wait"] = "3 business days"


def test_versions_lists_each_version_with_its_enrollments(cli: Cli) -> None:
    assert cli.ok("versions", "outreach") == (
        "no stored version of outreach: nobody was enrolled in it yet\n"
    )
    enroll_claire(cli)
    edit(cli, slower_reminder)
    assert cli.ok("versions", "outreach") == (
        "version  stored (UTC)      steps  live  enrollments  changes\n"
        "1        2026-03-02 08:00  4      1     1\n"
        "the file is not stored yet: it becomes version 2 at the next enrollment, or with "
        "relance migrate outreach --to-latest\n"
    )
    cli.ok("enroll", "outreach", "--email", "bob@example.com", "--field", "industry=retail",
           "--now", "2026-03-03T08:00:00Z")  # fmt: skip
    assert cli.ok("versions", "outreach") == (
        "version   stored (UTC)      steps  live  enrollments  changes\n"
        "1         2026-03-02 08:00  4      1     1\n"
        "2 (file)  2026-03-03 08:00  4      1     1            ~reminder-slots\n"
    )


def test_migrate_shows_each_enrollments_changes_then_moves_them(cli: Cli) -> None:
    enroll_claire(cli)
    cli.dispatch("call-intro")
    edit(cli, slower_reminder)
    dry = cli.ok("migrate", "outreach", "--to-latest", "--dry-run", "--now", NOW)
    assert dry == (
        "claire.martin@example.com (enrollment 1, times in Europe/Paris): version 1 -> 2\n"
        "  step            status   change\n"
        "  call-intro      sent     kept\n"
        "  email-guide     planned  unchanged: Tue 2026-03-03 09:00\n"
        "  reminder-slots  planned  Thu 2026-03-05 09:00 -> Fri 2026-03-06 09:00\n"
        "dry run, nothing changed: 1 enrollment of outreach would move to version 2 "
        "(1 re-planned, 1 unchanged, 1 done and kept)\n"
    )
    moved = cli.ok("migrate", "outreach", "--to-latest", "--now", NOW)
    assert moved == dry.replace(
        "dry run, nothing changed: 1 enrollment of outreach would move to version 2",
        "moved 1 enrollment of outreach to version 2",
    )
    assert cli.ok("migrate", "outreach", "--to-latest", "--now", NOW) == (
        "no live enrollment of outreach is on another version than 2 (the file as it is now)\n"
    )
    report = json.loads(cli.ok("versions", "outreach", "--json"))
    assert [(v["version"], v["live"], v["file"]) for v in report["versions"]] == [
        (1, 0, False), (2, 1, True)
    ]  # fmt: skip


def test_migrate_needs_to_latest_and_a_valid_file(cli: Cli) -> None:
    enroll_claire(cli)
    assert cli.fails("migrate", "outreach") == (
        "error: expected --to-latest: enrollments move to the version of the file as it is now\n"
    )
    edit(cli, lambda data: data["steps"][1]["templates"].update(subject="outreach/gone.j2"))
    error = cli.fails("migrate", "outreach", "--to-latest")
    assert "steps[1].templates.subject: expected a template file at templates/outreach/gone.j2" in (
        error
    )
    assert cli.count("events") == 0


def test_migrate_json_lists_every_touch(cli: Cli) -> None:
    enroll_claire(cli)
    edit(cli, slower_reminder)
    report = json.loads(cli.ok("migrate", "outreach", "--to-latest", "--json", "--now", NOW))
    assert (report["sequence"], report["version"], report["dry_run"]) == ("outreach", 2, False)
    (moved,) = report["enrollments"]
    assert [(t["step_id"], t["action"], t["due_after"]) for t in moved["touches"]] == [
        ("call-intro", "unchanged", "2026-03-02T08:00:00Z"),
        ("email-guide", "unchanged", "2026-03-03T08:00:00Z"),
        ("reminder-slots", "replanned", "2026-03-06T08:00:00Z"),
    ]


def test_versions_warns_when_a_live_version_lost_its_templates(cli: Cli) -> None:
    enroll_claire(cli)
    (cli.project.templates_dir / "outreach" / "email-guide.subject.j2").unlink()
    assert cli.ok("versions", "outreach").splitlines()[-1] == (
        "version 1 has 1 live enrollment but its templates are gone: "
        "templates/outreach/email-guide.subject.j2 (restore them, or relance migrate "
        "outreach --to-latest)"
    )
