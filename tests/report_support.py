"""A store with a known history, for the report tests: what each figure must be is
written next to the events that make it.

Sequence ``outreach`` (UTC, any hour), 11 prospects p0000..p0009 and late@example.com:

    call-intro  call   at enrollment     10 tasks (p0..p9)
    email-1     email  1 day later       A/B test: A = p0 p2 p4 p6 p8, B = p1 p3 p5 p7 (p9 paused)
    email-2     email  2 days later      p0 p3 p4 p5 sent; p7's send refused by the provider

Sequence ``nurture``: one e-mail ``welcome`` to n0000 and n0001.

Expected figures (sent, delivered, opened, clicked, replied, booked, bounced, unsubscribed,
tasks)::

    outreach  call-intro          0 0 0 0  1 0 0 0  10   p9 replied after the call
              email-1 A           5 4 2 0  1 0 1 1   0   p8 bounced; p0 opened twice
              email-1 B           4 4 2 2  0 1 0 0   0   p3 clicked, no open event
              email-2             4 2 0 0  2 0 0 1   0   p5 replied twice; p0 spam report
              before first touch  0 0 0 0  1 0 0 0   0   late replied before its call
    nurture   welcome             2 1 1 0  0 0 0 0   0

Funnel (furthest stage): n0 suspect; p0 p4 p6 p7 p8 p9 late lead; p2 n1 mql;
p5 sql (moved back to lead); p1 meeting; p3 client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from store_support import T0, RecordingSender, dispatcher_for, people, step, tick, write_project

from relance.engine import Signal
from relance.enrollments import enroll
from relance.lifecycle import move_stage
from relance.prospect import Prospect
from relance.qualification import Stage
from relance.signals import book, record_signal
from relance.store import Store
from relance.tables import enrollments, events, prospects, touchpoints

OUTREACH_STEPS = [
    step("call-intro", "call"),
    step("email-1", "email", "1d"),
    step("email-2", "email", "2d"),
]
NURTURE_STEPS = [step("welcome", "email")]
LATE = "late@example.com"


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


@dataclass
class History:
    store: Store
    root: Path
    _ids: count[int]

    def touch(self, email: str, step_id: str) -> int:
        with self.store.reading() as connection:
            return int(
                connection.execute(
                    select(touchpoints.c.id)
                    .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
                    .join(prospects, prospects.c.id == enrollments.c.prospect_id)
                    .where(prospects.c.email == email, touchpoints.c.step_id == step_id)
                ).scalar_one()
            )

    def prospect(self, email: str) -> int:
        with self.store.reading() as connection:
            return int(
                connection.execute(
                    select(prospects.c.id).where(prospects.c.email == email)
                ).scalar_one()
            )

    def mail_event(self, kind: str, email: str, step_id: str, when: datetime) -> None:
        """A provider event on a touch, as relance/engagement.py records it."""
        touchpoint_id = self.touch(email, step_id)
        with self.store.transaction() as connection:
            owner = connection.execute(
                select(touchpoints.c.enrollment_id, enrollments.c.prospect_id)
                .join(enrollments, enrollments.c.id == touchpoints.c.enrollment_id)
                .where(touchpoints.c.id == touchpoint_id)
            ).one()
            connection.execute(
                insert(events),
                {
                    "prospect_id": owner.prospect_id,
                    "enrollment_id": owner.enrollment_id,
                    "touchpoint_id": touchpoint_id,
                    "kind": kind,
                    "source": "sendgrid",
                    "external_id": f"sendgrid:test-{next(self._ids)}",
                    "occurred_at": when,
                    "recorded_at": when,
                    "data": {},
                },
            )

    def loose_event(self, kind: str, email: str, when: datetime) -> None:
        """An event that names the prospect only (no enrollment, no touch)."""
        row: dict[str, Any] = {
            "prospect_id": self.prospect(email),
            "kind": kind,
            "source": "inbound",
            "external_id": f"test-{next(self._ids)}",
            "occurred_at": when,
            "recorded_at": when,
            "data": {},
        }
        with self.store.transaction() as connection:
            connection.execute(insert(events), row)

    def move(self, email: str, *stages: Stage, when: datetime = T0) -> None:
        """Move the prospect through ``stages`` by hand, one hour apart (a stage it already
        stands at, e.g. meeting after a booking, is passed over)."""
        for index, stage in enumerate(stages):
            with self.store.reading() as connection:
                current = connection.execute(
                    select(prospects.c.stage).where(prospects.c.email == email)
                ).scalar_one()
            if current != stage.value:
                move_stage(self.store, email, stage, now=when + timedelta(hours=index), note="test")


def build_history(store: Store, root: Path) -> History:
    """The history the module docstring describes, in ``store``; templates under ``root``."""
    history = History(store, root, count(1))
    outreach = write_project(root, OUTREACH_STEPS, sequence_id="outreach")
    nurture = write_project(root, NURTURE_STEPS, sequence_id="nurture")
    p = [person.email for person in people(10)]
    enroll(store, outreach.sequence, people(10), start=T0, now=T0)
    suspect = Prospect(email="n0000@example.com", first_name="N0", stage=Stage.SUSPECT)
    enroll(store, nurture.sequence, [suspect, people(2, prefix="n")[1]], start=T0, now=T0)
    with store.transaction() as connection:
        for index, email in enumerate(p[:10]):
            connection.execute(
                update(touchpoints)
                .where(touchpoints.c.id == history.touch(email, "email-1"))
                .values(variant="A" if index % 2 == 0 else "B")
            )
    refused = history.touch(p[7], "email-2")
    sender = RecordingSender(permanent=[refused])
    dispatcher = dispatcher_for(store, outreach, sender)  # the templates of both sequences

    tick(store, dispatcher, at())  # 10 call tasks; welcome to n0000, n0001
    history.mail_event("delivered", "n0001@example.com", "welcome", at(hours=1))
    history.mail_event("opened", "n0001@example.com", "welcome", at(hours=2))
    record_signal(store, p[9], Signal.REPLIED, now=at(hours=12), source="test")

    tick(store, dispatcher, at(days=1))  # email-1 to p0..p8
    for email in p[:8]:
        history.mail_event("delivered", email, "email-1", at(days=1, hours=1))
    for email in (p[0], p[0], p[1], p[2]):
        history.mail_event("opened", email, "email-1", at(days=1, hours=2))
    for email in (p[1], p[3]):
        history.mail_event("clicked", email, "email-1", at(days=1, hours=2))
    record_signal(store, p[8], Signal.BOUNCED, now=at(days=1, hours=1), source="test")
    record_signal(store, p[2], Signal.REPLIED, now=at(days=1, hours=3), source="test")
    record_signal(store, p[6], Signal.UNSUBSCRIBED, now=at(days=1, hours=5), source="test")
    history.move(p[1], Stage.PROSPECT, Stage.MQL, Stage.SQL, when=at(days=1, hours=6))
    book(
        store, p[1], starts_at=at(days=5), duration=timedelta(minutes=30), now=at(days=2),
        source="test",
    )  # fmt: skip
    history.move(p[1], Stage.MEETING, when=at(days=2))  # the booking moved it there already

    tick(store, dispatcher, at(days=3))  # email-2 to p0 p3 p4 p5; p7 refused
    for email in (p[0], p[3], p[7]):
        history.mail_event("delivered", email, "email-2", at(days=3, hours=1))
    history.loose_event("replied", p[4], at(days=3, hours=1))
    enroll(store, outreach.sequence, [Prospect(email=LATE)], start=at(days=3, hours=2),
           now=at(days=3, hours=2))  # fmt: skip
    record_signal(store, LATE, Signal.REPLIED, now=at(days=3, hours=3), source="test")
    record_signal(store, p[5], Signal.REPLIED, now=at(days=4), source="test")
    record_signal(store, p[0], Signal.SPAM_REPORT, now=at(days=4), source="test")
    history.loose_event("replied", p[5], at(days=5))

    history.move(p[2], Stage.PROSPECT, Stage.MQL, when=at(days=1, hours=4))
    history.move(p[5], Stage.PROSPECT, Stage.MQL, Stage.SQL, Stage.LEAD, when=at(days=4))
    history.move(p[3], Stage.PROSPECT, Stage.MQL, Stage.SQL, Stage.MEETING, Stage.CLIENT,
                 when=at(days=4))  # fmt: skip
    history.move("n0001@example.com", Stage.MQL, when=at(days=1))
    return history
