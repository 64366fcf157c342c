"""Working one step's due touches: claim a chunk, perform it, record every outcome.

This is the code a Prefect step task runs (and ``relance dispatch``, and the benchmark).
Emails go through the configured ``Sender`` (SendGrid or the outbox), calls and
reminders become SDR tasks, meeting confirmations carry an ``.ics`` invitation.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import bindparam, insert, select, update

from integrations.icalendar_invite import build_cancel, build_invite, invite_attachment
from relance.claims import Claimed, Outcome, claim, record
from relance.enrollments import complete_finished, load_version
from relance.envelope import reply_address, thread_subject, unsubscribe_headers, unsubscribe_url
from relance.errors import (
    ChannelError,
    RelanceError,
    TransientChannelError,
    UnconfirmedChannelError,
)
from relance.outbound import OutboundEmail, Sender, SendResult, message_id_for
from relance.rendering import (
    Meeting,
    RenderedStep,
    render_context,
    render_step,
    render_template,
    template_locale,
    template_name,
)
from relance.rendering import Sender as TemplateSender
from relance.settings import Settings
from relance.spec import Channel, Sequence
from relance.store import Store
from relance.tables import events, meetings, tasks, touchpoints
from relance.throttle import Caps
from relance.variants import assign_variant

logger = logging.getLogger(__name__)

TEMPLATE_CACHE_SIZE = 400
"""Compiled templates a dispatcher keeps (Jinja2's default)."""
IN_TICK_RETRIES = 2
"""Times a message the provider did not take (429, 5xx, refused) is sent again in the tick."""
IN_TICK_BASE_SECONDS = 0.5
"""First in-tick backoff, doubled at each retry, when the provider gives no Retry-After."""
IN_TICK_MAX_WAIT_SECONDS = 5.0
"""A longer Retry-After is left to a later tick (the touch is due again after it)."""


@dataclass
class StepReport:
    """What one batch of one step did."""

    sequence_id: str
    step_id: str
    sent: int = 0
    tasks: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0
    """Sent without an answer (a timeout): flagged for relance/recovery.py, not resent."""
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return (
            self.sent
            + self.tasks
            + self.failed
            + self.retried
            + self.skipped
            + self.deferred
            + self.unknown
        )

    def add(self, other: StepReport) -> None:
        for name in ("sent", "tasks", "failed", "retried", "skipped", "deferred", "unknown"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


class ThreadEmail(NamedTuple):
    """An email already sent in an enrollment, which later ones answer."""

    id: int
    step_id: str
    variant: str | None
    message_token: str
    sequence: Sequence | None = None
    """The version it was sent with, when the enrollment has moved to another since."""


@dataclass
class EmailBatch:
    """A claimed chunk of emails, rendered and ready to hand to the provider."""

    claim_id: str
    ready: list[tuple[Claimed, OutboundEmail]] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)


class Dispatcher:
    """Performs due touches. One per process is enough; it is thread-safe."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        email: Sender,
        env: jinja2.Environment,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.sleep = sleep
        self.settings = settings
        self.email = email
        # Its own template cache, checked against the files once per step run (a tick's
        # batch) instead of on every part of every email: an edited template still
        # applies from the next batch on.
        self.env = env.overlay(auto_reload=False, cache_size=TEMPLATE_CACHE_SIZE)
        self.template_sender = TemplateSender.from_settings(settings)
        self.chunk = max(1, settings.claim_chunk)
        self.caps = Caps(
            hourly_cap=settings.sender_hourly_cap,
            daily_cap=settings.sender_daily_cap,
            min_spacing=timedelta(seconds=settings.sender_min_spacing_seconds),
            domain_daily_cap=settings.domain_daily_cap,
        )

    def run_step(self, sequence_id: str, step_id: str, *, now: datetime, limit: int) -> StepReport:
        """Perform up to ``limit`` due touches of one step, a chunk at a time.

        Emails are pipelined: while one chunk is with the provider, the next one is
        claimed and rendered. Each chunk is recorded as soon as its sends return.
        """
        self._refresh_templates()
        report = StepReport(sequence_id, step_id)
        taken = 0
        in_flight: Future[None] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="relance-deliver") as pipeline:
            try:
                while taken < limit:
                    claim_id = uuid.uuid4().hex
                    claimed = claim(
                        self.store,
                        sequence_id=sequence_id,
                        step_id=step_id,
                        now=now,
                        limit=min(self.chunk, limit - taken),
                        claim_id=claim_id,
                        caps=self.caps,
                    )
                    taken += len(claimed.claimed) + claimed.skipped + claimed.deferred
                    report.skipped += claimed.skipped
                    report.deferred += claimed.deferred
                    if not claimed.claimed:
                        if claimed.skipped == 0 and claimed.deferred == 0:
                            break
                        continue
                    batch = self._prepare(claimed.claimed, claim_id, now, report)
                    if in_flight is not None:
                        in_flight.result()
                    in_flight = (
                        pipeline.submit(self._deliver, batch, now, report) if batch else None
                    )
            finally:
                if in_flight is not None:
                    in_flight.result()
        return report

    def _refresh_templates(self) -> None:
        """Forget the compiled templates when one of their files changed since."""
        cache = self.env.cache
        if cache is not None and not all(t.is_up_to_date for t in cache.values()):
            cache.clear()

    def _prepare(
        self, claimed: list[Claimed], claim_id: str, now: datetime, report: StepReport
    ) -> EmailBatch | None:
        """Create the SDR tasks now; render the emails, to be delivered by ``_deliver``."""
        emails = [c for c in claimed if c.channel in (Channel.EMAIL, Channel.MEETING_CONFIRMATION)]
        sdr = [c for c in claimed if c.channel in (Channel.CALL, Channel.REMINDER)]
        if sdr:
            self._create_tasks(sdr, claim_id, now, report)
        if not emails:
            return None
        meetings_by_id = self._meetings(c.meeting_id for c in emails if c.meeting_id)
        threads = self._threads({c.enrollment_id for c in emails if c.meeting_id is None})
        variants = self._variants(emails)
        batch = EmailBatch(claim_id)
        for touch in emails:
            try:
                meeting_row = meetings_by_id.get(touch.meeting_id) if touch.meeting_id else None
                thread = threads.get(touch.enrollment_id, [])
                variant = variants.get(touch.touchpoint_id)
                email = self._build_email(touch, meeting_row, thread, now, variant)
                batch.ready.append((touch, email))
            except (RelanceError, ValueError) as error:
                batch.failed.append(
                    Outcome(touch.touchpoint_id, "failed", "render", error=str(error))
                )
        return batch

    def _render(
        self, touch: Claimed, meeting: Meeting | None, variant: str | None = None
    ) -> RenderedStep:
        step = touch.sequence.step(touch.step_id)
        return render_step(
            self.env,
            touch.sequence,
            step,
            touch.prospect,
            sender=self.template_sender,
            meeting=meeting,
            unsubscribe_url=unsubscribe_url(self.settings.public_url, touch.reply_token),
            variant=variant,
        )

    def _create_tasks(
        self, claimed: list[Claimed], claim_id: str, now: datetime, report: StepReport
    ) -> None:
        """SDR tasks are written in the same transaction that closes their touches."""
        rows: list[dict[str, Any]] = []
        failures: list[Outcome] = []
        for touch in claimed:
            try:
                rendered = self._render(touch, None)
            except RelanceError as error:
                failures.append(Outcome(touch.touchpoint_id, "failed", "task", error=str(error)))
                continue
            step = touch.sequence.step(touch.step_id)
            rows.append(
                {
                    "touchpoint_id": touch.touchpoint_id,
                    "enrollment_id": touch.enrollment_id,
                    "prospect_id": touch.prospect_id,
                    "kind": step.channel.value,
                    "title": step.objective,
                    "body": rendered.script or rendered.reminder or "",
                    "owner": touch.prospect.owner,
                    "due_at": now,
                    "status": "open",
                    "created_at": now,
                }
            )
        if rows:
            with self.store.transaction() as connection:
                done = connection.execute(
                    update(touchpoints)
                    .where(
                        touchpoints.c.id.in_([row["touchpoint_id"] for row in rows]),
                        touchpoints.c.claim_id == claim_id,
                        touchpoints.c.status == "sending",
                    )
                    .values(status="sent", sent_at=now, provider="task")
                    .returning(touchpoints.c.id)
                ).scalars()
                kept = set(done)
                if kept:  # none when every claim was taken over (recover_stale)
                    connection.execute(
                        insert(tasks), [r for r in rows if r["touchpoint_id"] in kept]
                    )
                    complete_finished(
                        connection,
                        (r["enrollment_id"] for r in rows if r["touchpoint_id"] in kept),
                        now,
                    )
            report.tasks += len(kept)
        self._record(claim_id, failures, now, report)

    def _meetings(self, ids: Iterable[int]) -> dict[int, Any]:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        with self.store.reading() as connection:
            return {
                row.id: row
                for row in connection.execute(select(meetings).where(meetings.c.id.in_(wanted)))
            }

    def _variants(self, emails: list[Claimed]) -> dict[int, str]:
        """touchpoint id -> the A/B variant it goes out as: the one chosen when it was planned.

        A touch of a step with variants but none recorded (planned before the step had
        them) gets the prospect's own (``relance.variants``), recorded now.
        """
        chase = [c for c in emails if c.channel is Channel.EMAIL]
        if not any(c.sequence.step(c.step_id).variants for c in chase):
            return {}
        with self.store.reading() as connection:
            recorded: dict[int, str] = {
                row.id: row.variant
                for row in connection.execute(
                    select(touchpoints.c.id, touchpoints.c.variant).where(
                        touchpoints.c.id.in_([c.touchpoint_id for c in chase]),
                        touchpoints.c.variant.is_not(None),
                    )
                )
            }
        missing: dict[int, str] = {}
        for touch in chase:
            if touch.touchpoint_id not in recorded:
                step = touch.sequence.step(touch.step_id)
                chosen = assign_variant(touch.sequence.id, step, touch.prospect.email)
                if chosen is not None:
                    missing[touch.touchpoint_id] = chosen
        if missing:
            with self.store.transaction() as connection:
                connection.execute(
                    update(touchpoints)
                    .where(touchpoints.c.id == bindparam("b_id"), touchpoints.c.variant.is_(None))
                    .values(variant=bindparam("b_variant")),
                    [{"b_id": tid, "b_variant": variant} for tid, variant in missing.items()],
                )
        return {**recorded, **missing}

    def _threads(self, enrollment_ids: set[int]) -> dict[int, list[ThreadEmail]]:
        """The emails already sent in each enrollment, oldest first.

        The first one carries the version it was sent with when ``relance migrate`` has
        moved the enrollment since: later emails answer the subject the prospect saw.
        """
        if not enrollment_ids:
            return {}
        query = (
            select(
                touchpoints.c.enrollment_id,
                touchpoints.c.id,
                touchpoints.c.step_id,
                touchpoints.c.variant,
                touchpoints.c.message_token,
                touchpoints.c.sent_at,
            )
            .where(
                touchpoints.c.enrollment_id.in_(enrollment_ids),
                touchpoints.c.channel == Channel.EMAIL.value,
                touchpoints.c.status == "sent",
            )
            .order_by(touchpoints.c.enrollment_id, touchpoints.c.sent_at, touchpoints.c.id)
        )
        threads: dict[int, list[ThreadEmail]] = {}
        started: dict[int, datetime] = {}
        with self.store.reading() as connection:
            for row in connection.execute(query):
                threads.setdefault(row.enrollment_id, []).append(
                    ThreadEmail(row.id, row.step_id, row.variant, row.message_token)
                )
                started.setdefault(row.enrollment_id, row.sent_at)
            if not threads:
                return threads
            moves = connection.execute(
                select(events.c.enrollment_id, events.c.occurred_at, events.c.data)
                .where(events.c.enrollment_id.in_(list(threads)), events.c.kind == "migrated")
                .order_by(events.c.occurred_at, events.c.id)
            )
            for move in moves:  # the first migration after the first email
                first = threads[move.enrollment_id][0]
                version = (move.data or {}).get("from_version_id")
                after = move.occurred_at >= started[move.enrollment_id]
                if first.sequence is None and after and version is not None:
                    sent_with = load_version(connection, int(version))
                    threads[move.enrollment_id][0] = first._replace(sequence=sent_with)
        return threads

    def _first_subject(self, touch: Claimed, first_email: ThreadEmail) -> str:
        """The subject the prospect saw on the first email of the thread (its variant's)."""
        sequence, prospect = first_email.sequence or touch.sequence, touch.prospect
        first = sequence.step(first_email.step_id)
        locale = template_locale(sequence, prospect)
        context = render_context(
            sequence, first, prospect, sender=self.template_sender, locale=locale
        )
        try:
            subject = first.templates_for(first_email.variant).subject or ""
        except KeyError:  # a variant that is no longer in this version: the step's own
            subject = first.templates.subject or ""
        return " ".join(render_template(self.env, template_name(subject, locale), context).split())

    def _build_email(
        self,
        touch: Claimed,
        meeting_row: Any,
        thread: list[ThreadEmail],
        now: datetime,
        variant: str | None = None,
    ) -> OutboundEmail:
        prospect = touch.prospect
        settings = self.settings
        step = touch.sequence.step(touch.step_id)
        zone = prospect.timezone or touch.sequence.timezone
        meeting = None
        if meeting_row is not None:
            meeting = Meeting(
                starts_at=meeting_row.starts_at,
                ends_at=meeting_row.ends_at,
                timezone=zone,
                location=meeting_row.location or "",
                join_url=meeting_row.join_url,
                reminder="@reminder-" in touch.key,
                rescheduled="@update-" in touch.key,
                cancelled="@cancel-" in touch.key,
            )
        rendered = self._render(touch, meeting, variant)
        attachments = []
        if meeting_row is not None and meeting is not None:
            # Reminders and updates carry the same invitation (same UID, its latest SEQUENCE);
            # a cancellation withdraws it (relance/meetings.py).
            calendar: dict[str, Any] = {
                "uid": f"meeting-{meeting_row.id}@{self.settings.mail_domain}",
                "starts_at": meeting_row.starts_at.astimezone(ZoneInfo(zone)),
                "ends_at": meeting_row.ends_at.astimezone(ZoneInfo(zone)),
                "summary": rendered.subject or touch.sequence.name,
                "description": rendered.text or "",
                "location": meeting_row.join_url or meeting_row.location or "",
                "organizer_email": self.settings.sender_email,
                "organizer_name": self.settings.sender_name,
                "attendee_email": prospect.email,
                "attendee_name": prospect.first_name + " " + prospect.last_name,
                "now": now,
                "sequence": meeting_row.ical_sequence,
            }
            if meeting.cancelled:
                attachments.append(invite_attachment(build_cancel(**calendar), method="CANCEL"))
            else:
                attachments.append(invite_attachment(build_invite(**calendar)))
        subject = rendered.subject or ""
        in_reply_to = None
        references: list[str] = []
        if thread and step.channel is Channel.EMAIL and not step.new_thread:
            references = [
                message_id_for(sent.message_token, settings.mail_domain) for sent in thread
            ]
            in_reply_to = references[0]
            subject = thread_subject(self._first_subject(touch, thread[0]))
        return OutboundEmail(
            touchpoint_id=str(touch.touchpoint_id),
            enrollment_id=str(touch.enrollment_id),
            sequence_id=touch.sequence.id,
            step_id=touch.step_id,
            to_email=prospect.email,
            to_name=" ".join(p for p in (prospect.first_name, prospect.last_name) if p) or None,
            from_email=settings.sender_email,
            from_name=settings.sender_name,
            reply_to=reply_address(touch.reply_token, settings.inbound_domain),
            subject=subject,
            text=rendered.text or "",
            html=rendered.html,
            message_id=message_id_for(touch.message_token, settings.mail_domain),
            in_reply_to=in_reply_to,
            references=references,
            headers=unsubscribe_headers(
                settings.public_url, touch.reply_token, settings.inbound_domain
            ),
            attachments=attachments,
            categories=[touch.sequence.id, touch.step_id],
            date=now,
        )

    def _deliver(self, batch: EmailBatch, now: datetime, report: StepReport) -> None:
        """Send a rendered chunk and record every outcome.

        A message the provider did not take (429, 5xx, refused) is sent again up to
        ``IN_TICK_RETRIES`` times, after a short backoff or the provider's Retry-After;
        past that it is due again in a later tick. A message sent without an answer
        (``UnconfirmedChannelError``) is never sent again here: it is recorded ``unknown``.
        """
        outcomes = list(batch.failed)
        pending = batch.ready
        for attempt in range(IN_TICK_RETRIES + 1):
            results = self.email.send_many([message for _, message in pending]) if pending else []
            again: list[tuple[Claimed, OutboundEmail]] = []
            wait = 0.0
            for item, result in zip(pending, results, strict=True):
                delay = _in_tick_delay(attempt, result)
                if delay is None:
                    outcomes.append(self._outcome(item[0], result))
                else:
                    again.append(item)
                    wait = max(wait, delay)
            if not again:
                break
            self.sleep(wait)
            pending = again
        self._record(batch.claim_id, outcomes, now, report)

    def _outcome(self, touch: Claimed, result: SendResult | ChannelError) -> Outcome:
        if isinstance(result, ChannelError):
            if isinstance(result, UnconfirmedChannelError):
                status = "unknown"
            elif isinstance(result, TransientChannelError):
                status = "retry"
            else:
                status = "failed"
            return Outcome(
                touch.touchpoint_id,
                status,
                _provider(self.email),
                error=str(result),
                retry_after=getattr(result, "retry_after", None),
            )
        return Outcome(touch.touchpoint_id, "sent", result.provider, result.provider_message_id)

    def _record(
        self, claim_id: str, outcomes: list[Outcome], now: datetime, report: StepReport
    ) -> None:
        record(self.store, claim_id, outcomes, now)
        for outcome in outcomes:
            if outcome.status == "sent":
                report.sent += 1
            elif outcome.status == "retry":
                report.retried += 1
            elif outcome.status == "unknown":
                report.unknown += 1
            else:
                report.failed += 1
                report.errors.append(f"touchpoint {outcome.touchpoint_id}: {outcome.error}")


def _in_tick_delay(attempt: int, result: SendResult | ChannelError) -> float | None:
    """Seconds before sending again in this tick, or None: record the outcome now."""
    if not isinstance(result, TransientChannelError) or attempt >= IN_TICK_RETRIES:
        return None
    if result.retry_after is not None:
        return result.retry_after if result.retry_after <= IN_TICK_MAX_WAIT_SECONDS else None
    return float(IN_TICK_BASE_SECONDS * 2**attempt)


def _provider(sender: Sender) -> str:
    return str(getattr(sender, "provider", type(sender).__name__.removesuffix("Sender").lower()))
