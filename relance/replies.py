"""What an inbound email does: a reply pauses, an out-of-office snoozes, a colleague pauses.

``record_inbound(store, email, now=, settings=)`` finds the enrollment the message belongs
to, in this order:

1. a ``reply+<token>@<inbound domain>`` recipient (envelope, To, Cc): that enrollment;
2. Relance Message-IDs (``<<message token>@<mail domain>>``) in In-Reply-To or References: the
   enrollment of that touchpoint;
3. the sender's address, only when SendGrid vouches for its domain (SPF or DKIM passed,
   ``sender_authenticated``): that prospect's live enrollments. A From address is
   trivially forged; a message that SPF and DKIM do not vouch for matches nobody by it.

Then, by what ``classify`` says the message is:

- a reply records ``replied`` (scoped to the matched enrollment's sequence when matched by
  token or Message-ID), opens an SDR task "Reply received: <subject>" whose body is the
  reply without its quoted history, and, unless the matched prospect's address is at a
  free-mail domain, pauses the active enrollments of the other prospects at the matched
  prospect's domain ("a colleague replied"): never the sender's, which the sender
  chooses. A reply to a booked or stopped enrollment is recorded with its task and
  changes nothing else;
- an out-of-office snoozes every live enrollment of the prospect until the send-window
  start of the first day back (``out_of_office_days`` from now when the message gives no
  date). It is not a reply: nothing pauses, no task;
- a message to ``unsubscribe+<token>@<inbound domain>`` unsubscribes (RFC 8058 mailto);
- bounces and bulk mail are ignored; a message matching nothing is "unmatched".

Each message is recorded once: the events carry ``inbound:<Message-ID>`` as external id, so
that a provider's retry changes nothing. Logs carry ids, never addresses or bodies.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from integrations.inbound_parse import (
    InboundEmail,
    OutOfOffice,
    Reply,
    classify,
    sender_authenticated,
)
from relance.cadence import calendar_for
from relance.engine import Signal, Status
from relance.enrollments import load_version, prospect_from_db
from relance.envelope import message_tokens_in, tokens_in
from relance.errors import NotFoundError, StateError
from relance.settings import Settings
from relance.signals import record_signal
from relance.store import Store
from relance.tables import enrollments, events, prospects, tasks, touchpoints
from relance.unsubscribes import unsubscribe_token

logger = logging.getLogger(__name__)

SOURCE = "inbound"
COLLEAGUE_REASON = "a colleague replied"
MAX_TASK_BODY = 20_000


@dataclass(frozen=True)
class Match:
    """The prospect (and enrollment, when known) an inbound message belongs to."""

    prospect_id: int
    enrollment_id: int | None
    sequence_id: str | None
    by: str
    """token | message_id | sender"""


@dataclass(frozen=True)
class Notice:
    """A signal to announce (as a Prefect event) once recorded."""

    signal: str
    prospect_id: int | None
    enrollment_ids: list[int]


@dataclass
class InboundOutcome:
    """What one inbound message did."""

    outcome: str
    """replied | out_of_office | unsubscribed | ignored | unmatched | duplicate"""
    reason: str | None = None
    prospect_id: int | None = None
    matched_by: str | None = None
    changed: list[tuple[int, str, str]] = field(default_factory=list)
    """(enrollment id, status before, status after) of the replying prospect."""
    task_id: int | None = None
    snoozed_until: datetime | None = None
    paused_colleagues: list[int] = field(default_factory=list)
    """Prospects paused because a colleague at the same domain replied."""
    notices: list[Notice] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The outcome as the webhook answers it (ids only)."""
        answer: dict[str, Any] = {"outcome": self.outcome}
        for name in ("reason", "prospect_id", "matched_by", "task_id"):
            if getattr(self, name) is not None:
                answer[name] = getattr(self, name)
        if self.snoozed_until is not None:
            answer["snoozed_until"] = self.snoozed_until.isoformat()
        if self.paused_colleagues:
            answer["paused_colleagues"] = self.paused_colleagues
        return answer


def external_id_of(email: InboundEmail) -> str:
    """``inbound:<Message-ID>``; a digest when it is missing or too long for the column."""
    message_id = email.message_id
    if message_id and len(message_id) <= 150:
        return f"inbound:{message_id}"
    seed = message_id or "\n".join(
        (email.sender, email.subject, email.header("date"), email.text, email.html)
    )
    return "inbound:sha256:" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()


def record_inbound(
    store: Store, email: InboundEmail, *, now: datetime, settings: Settings
) -> InboundOutcome:
    """Find whose message this is and record what it means (see the module docstring)."""
    kind = classify(email, received_at=now)
    if not isinstance(kind, Reply | OutOfOffice):
        return InboundOutcome("ignored", reason=kind.reason)
    unsubscribing = tokens_in(" ".join(email.recipients), "unsubscribe", settings.inbound_domain)
    if unsubscribing:
        return _unsubscribe(store, unsubscribing[0], now)
    external_id = external_id_of(email)
    with store.reading() as connection:
        if connection.execute(
            select(events.c.id).where(events.c.external_id == external_id)
        ).first():
            return InboundOutcome("duplicate")
        match = find_match(connection, email, settings)
    if match is None:
        logger.info("inbound message %s matches no enrollment", external_id)
        return InboundOutcome("unmatched")
    if isinstance(kind, OutOfOffice):
        return _snooze(store, match, kind.until, external_id, now, settings)
    return _reply(store, email, match, kind.text, external_id, now, settings)


def find_match(connection: Connection, email: InboundEmail, settings: Settings) -> Match | None:
    """The enrollment by reply token, else by Message-ID, else the prospect by sender."""
    for token in tokens_in(" ".join(email.recipients), "reply", settings.inbound_domain):
        row = connection.execute(
            select(enrollments.c.id, enrollments.c.prospect_id, enrollments.c.sequence_id).where(
                enrollments.c.reply_token == token.lower()
            )
        ).first()
        if row is not None:
            return Match(row.prospect_id, row.id, row.sequence_id, "token")
    threaded = f"{email.in_reply_to} {' '.join(reversed(email.references.split()))}"
    for message_token in message_tokens_in(threaded, settings.mail_domain)[:50]:
        row = connection.execute(
            select(enrollments.c.id, enrollments.c.prospect_id, enrollments.c.sequence_id)
            .join(touchpoints, touchpoints.c.enrollment_id == enrollments.c.id)
            .where(touchpoints.c.message_token == message_token)
        ).first()
        if row is not None:
            return Match(row.prospect_id, row.id, row.sequence_id, "message_id")
    if email.sender and not sender_authenticated(email):
        logger.info("inbound message not matched by its sender: SPF and DKIM did not pass")
    elif email.sender:
        found = connection.execute(
            select(prospects.c.id).where(prospects.c.email == email.sender)
        ).scalar()
        if found is not None:
            return Match(int(found), None, None, "sender")
    return None


def _reply(
    store: Store,
    email: InboundEmail,
    match: Match,
    text: str,
    external_id: str,
    now: datetime,
    settings: Settings,
) -> InboundOutcome:
    outcome = InboundOutcome("replied", prospect_id=match.prospect_id, matched_by=match.by)
    try:
        signal = record_signal(
            store,
            str(match.prospect_id),
            Signal.REPLIED,
            now=now,
            sequence_id=match.sequence_id,
            source=SOURCE,
            external_id=external_id,
            data={"matched_by": match.by},
        )
    except StateError:  # booked, stopped or completed: keep the reply, change nothing
        if not _record_reply_event(store, match, external_id, now):
            return InboundOutcome("duplicate")
        outcome.reason = "the enrollment is no longer active or paused: nothing paused"
    else:
        if signal.duplicate:
            return InboundOutcome("duplicate")
        outcome.changed = signal.changed
    enrollment_ids = [enrollment_id for enrollment_id, _, _ in outcome.changed]
    outcome.notices.append(Notice(Signal.REPLIED.value, match.prospect_id, enrollment_ids))
    enrollment_id = match.enrollment_id or (enrollment_ids[0] if enrollment_ids else None)
    outcome.task_id = _open_task(store, match.prospect_id, enrollment_id, email, text, now)
    if settings.pause_company_on_reply:
        _pause_colleagues(store, match, external_id, now, settings, outcome)
    logger.info(
        "inbound reply %s: prospect %s, task %s, %d colleague(s) paused",
        external_id,
        match.prospect_id,
        outcome.task_id,
        len(outcome.paused_colleagues),
    )
    return outcome


def _record_reply_event(store: Store, match: Match, external_id: str, now: datetime) -> bool:
    """The reply as an event only; False when it was already recorded."""
    row = {
        "prospect_id": match.prospect_id,
        "enrollment_id": match.enrollment_id,
        "kind": Signal.REPLIED.value,
        "source": SOURCE,
        "external_id": external_id,
        "occurred_at": now,
        "recorded_at": now,
        "data": {"matched_by": match.by, "state_change": False},
    }
    try:
        with store.transaction() as connection:
            seen = select(events.c.id).where(events.c.external_id == external_id)
            if connection.execute(seen).first():
                return False
            connection.execute(insert(events), row)
    except IntegrityError:  # the same message, recorded at the same moment by another post
        return False
    return True


def _open_task(
    store: Store,
    prospect_id: int,
    enrollment_id: int | None,
    email: InboundEmail,
    text: str,
    now: datetime,
) -> int:
    """An SDR task to read and answer the reply, due now, for the prospect's owner."""
    with store.transaction() as connection:
        owner = connection.execute(
            select(prospects.c.owner).where(prospects.c.id == prospect_id)
        ).scalar()
        return int(
            connection.execute(
                insert(tasks).returning(tasks.c.id),
                {
                    "enrollment_id": enrollment_id,
                    "prospect_id": prospect_id,
                    "kind": "reply",
                    "title": f"Reply received: {email.subject or '(no subject)'}"[:500],
                    "body": text[:MAX_TASK_BODY],
                    "owner": owner or "",
                    "due_at": now,
                    "status": "open",
                    "created_at": now,
                },
            ).scalar_one()
        )


def company_domain(address: str, settings: Settings) -> str | None:
    """The domain of a company address; None for free-mail and Relance's own domains."""
    domain = address.rpartition("@")[2].strip().lower()
    own = {settings.inbound_domain.lower(), settings.mail_domain.lower()}
    free = {item.strip().lower() for item in settings.free_mail_domains}
    if not domain or "." not in domain or domain in free or domain in own:
        return None
    return domain


def _pause_colleagues(
    store: Store,
    match: Match,
    external_id: str,
    now: datetime,
    settings: Settings,
    outcome: InboundOutcome,
) -> None:
    """Pause the active colleagues at the matched prospect's company (not the sender's)."""
    with store.reading() as connection:
        address = connection.execute(
            select(prospects.c.email).where(prospects.c.id == match.prospect_id)
        ).scalar()
    domain = company_domain(address or "", settings)
    if domain is None:
        return
    with store.reading() as connection:
        colleagues = list(
            connection.execute(
                select(prospects.c.id)
                .join(enrollments, enrollments.c.prospect_id == prospects.c.id)
                .where(
                    prospects.c.email.endswith(f"@{domain}", autoescape=True),
                    prospects.c.id != match.prospect_id,
                    enrollments.c.status == Status.ACTIVE.value,
                )
                .distinct()
                .order_by(prospects.c.id)
            ).scalars()
        )
    for colleague in colleagues:
        try:
            paused = record_signal(
                store,
                str(colleague),
                Signal.PAUSED,
                now=now,
                source=SOURCE,
                external_id=f"{external_id}:colleague:{colleague}",
                reason=COLLEAGUE_REASON,
                data={"colleague_prospect_id": match.prospect_id},
            )
        except StateError:  # paused or stopped since the query: nothing to do
            continue
        if paused.changed and not paused.duplicate:
            outcome.paused_colleagues.append(colleague)
            outcome.notices.append(
                Notice(Signal.PAUSED.value, colleague, [e for e, _, _ in paused.changed])
            )


def _snooze(
    store: Store,
    match: Match,
    back_on: date | None,
    external_id: str,
    now: datetime,
    settings: Settings,
) -> InboundOutcome:
    with store.reading() as connection:
        until = snooze_end(connection, match, back_on, now, settings)
    try:
        signal = record_signal(
            store,
            str(match.prospect_id),
            Signal.SNOOZED,
            now=now,
            source=SOURCE,
            external_id=external_id,
            until=until,
            data={"matched_by": match.by, "out_of_office": True},
        )
    except StateError:
        return InboundOutcome(
            "ignored",
            reason="out of office, but no active or paused enrollment to snooze",
            prospect_id=match.prospect_id,
            matched_by=match.by,
        )
    if signal.duplicate:
        return InboundOutcome("duplicate")
    logger.info("inbound out-of-office %s: prospect %s", external_id, match.prospect_id)
    return InboundOutcome(
        "out_of_office",
        prospect_id=match.prospect_id,
        matched_by=match.by,
        changed=signal.changed,
        snoozed_until=until,
        notices=[
            Notice(Signal.SNOOZED.value, match.prospect_id, [e for e, _, _ in signal.changed])
        ],
    )


def snooze_end(
    connection: Connection, match: Match, back_on: date | None, now: datetime, settings: Settings
) -> datetime:
    """The send-window start of the first open day from ``back_on``, never before ``now``.

    The window, holidays and zone are those of the matched enrollment's sequence (else the
    prospect's latest live one) for the prospect's country and zone.
    """
    if back_on is None:
        return now + timedelta(days=settings.out_of_office_days)
    query = select(enrollments.c.sequence_version_id).where(
        enrollments.c.prospect_id == match.prospect_id
    )
    if match.enrollment_id is not None:
        query = query.where(enrollments.c.id == match.enrollment_id)
    else:
        query = query.where(enrollments.c.status.in_([Status.ACTIVE.value, Status.PAUSED.value]))
    version_id = connection.execute(query.order_by(enrollments.c.enrolled_at.desc())).scalar()
    person = connection.execute(
        select(prospects).where(prospects.c.id == match.prospect_id)
    ).first()
    if version_id is None or person is None:
        return max(now, datetime.combine(back_on, time(), tzinfo=now.tzinfo))
    sequence = load_version(connection, version_id)
    calendar = calendar_for(sequence, prospect_from_db(person))
    return max(now, calendar.next_slot(calendar.resolve(datetime.combine(back_on, time()))))


def _unsubscribe(store: Store, token: str, now: datetime) -> InboundOutcome:
    try:
        signal = unsubscribe_token(store, token, now=now, source="mailto")
    except NotFoundError:
        logger.info("inbound unsubscribe for an unknown token")
        return InboundOutcome("unmatched")
    if signal.duplicate:
        return InboundOutcome("duplicate", prospect_id=signal.prospect_id, matched_by="token")
    return InboundOutcome(
        "unsubscribed",
        prospect_id=signal.prospect_id,
        matched_by="token",
        changed=signal.changed,
        notices=[
            Notice(Signal.UNSUBSCRIBED.value, signal.prospect_id, [e for e, _, _ in signal.changed])
        ],
    )
