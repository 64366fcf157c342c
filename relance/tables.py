"""The store's schema (SQLAlchemy Core). Alembic migrations in relance/migrations mirror it.

Times are stored as naive UTC and read back as aware UTC (``UTCDateTime``), so that SQLite
and PostgreSQL compare them the same way.

Touchpoint life cycle::

    planned ──claim──> sending ──> sent
       │                  │   └──> failed (permanent provider refusal, reason kept)
       │                  └──────> planned (transient error: due again after a backoff)
       │                  └──────> unknown (a dispatcher died mid-send, or the provider's
       │                             answer never came: never resent blindly; settled sent,
       │                             failed or planned again from the provider's events by
       │                             relance/recovery.py, else by a person: relance review)
       └──> skipped (with the reason: replied, booked, unsubscribed, stopped, suppressed...)
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC on disk."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _json() -> Any:
    return JSON().with_variant(JSON(none_as_null=True), "postgresql")


MAX_ROW_ID = 2**31 - 1
"""The largest row id: ids are INTEGER columns, 32 bits on PostgreSQL. A larger number
names no row."""


prospects = Table(
    "prospects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("first_name", String(200), nullable=False, server_default=""),
    Column("last_name", String(200), nullable=False, server_default=""),
    Column("company", String(300), nullable=False, server_default=""),
    Column("title", String(300), nullable=False, server_default=""),
    Column("phone", String(60), nullable=False, server_default=""),
    Column("timezone", String(64)),
    # given | region | country | phone | sequence (relance.zones); NULL: stored before 0005
    Column("timezone_source", String(10)),
    Column("country", String(2)),
    # ISO 3166-2 as the holidays library names it: "DE-BY", "US-CA"
    Column("region", String(40)),
    Column("locale", String(8)),
    Column("owner", String(320), nullable=False, server_default=""),
    Column("fields", _json(), nullable=False),
    # Qualification grid, 0-3 per criterion (BANT + fit); NULL: not assessed yet.
    Column("need", Integer),
    Column("budget", Integer),
    Column("authority", Integer),
    Column("timing", Integer),
    Column("fit", Integer),
    # suspect | lead | prospect | mql | sql | meeting | client (every move in stage_moves)
    Column("stage", String(20), nullable=False, server_default="lead"),
    # cold | warm | hot as given; NULL: derived from the grid
    Column("warmth", String(10)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

stage_moves = Table(
    "stage_moves",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prospect_id", Integer, ForeignKey("prospects.id"), nullable=False),
    Column("from_stage", String(20)),
    Column("to_stage", String(20), nullable=False),
    Column("moved_at", UTCDateTime, nullable=False),
    Column("source", String(40), nullable=False),
    Column("note", Text),
    Index("ix_stage_moves_prospect", "prospect_id"),
)

sequence_versions = Table(
    "sequence_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sequence_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("spec", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("sequence_id", "digest"),
    UniqueConstraint("sequence_id", "version"),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prospect_id", Integer, ForeignKey("prospects.id"), nullable=False),
    Column("sequence_id", String(100), nullable=False),
    Column("sequence_version_id", Integer, ForeignKey("sequence_versions.id"), nullable=False),
    # active | paused | booked | stopped | completed
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("deal_value", Float, nullable=False, server_default="0"),
    Column("cycle_days", Float, nullable=False, server_default="0"),
    Column("reply_token", String(64), nullable=False, unique=True),
    Column("snoozed_until", UTCDateTime),
    Column("enrolled_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # when its last touch was done (status completed): re-enrollment cool-downs count from it
    Column("completed_at", UTCDateTime),
    Index(
        "uq_enrollments_live",
        "prospect_id",
        "sequence_id",
        unique=True,
        sqlite_where=text("status IN ('active', 'paused')"),
        postgresql_where=text("status IN ('active', 'paused')"),
    ),
    Index("ix_enrollments_status", "status"),
    Index("ix_enrollments_prospect", "prospect_id"),
)


def new_message_token() -> str:
    """A touch's Message-ID local part: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


touchpoints = Table(
    "touchpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    # step id, or "<step id>@meeting-<id>" / "<step id>@reminder-<id>" for booking-driven touches
    # (after a reschedule "<step id>@update-<id>.<n>" / "<step id>@reminder-<id>.<n>"; after a
    # cancellation "<step id>@cancel-<id>": see relance/meetings.py)
    Column("key", String(200), nullable=False),
    Column("step_id", String(100), nullable=False),
    Column("channel", String(30), nullable=False),
    Column("position", Integer, nullable=False),
    Column("sequence_id", String(100), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", Text),
    Column("moved", _json()),
    Column("meeting_id", Integer, ForeignKey("meetings.id")),
    # A/B variant of the step this touch was assigned (NULL: the step has no variants)
    Column("variant", String(40)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("claim_id", String(64)),
    Column("claimed_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("provider", String(30)),
    Column("provider_message_id", String(200)),
    # The local part of the Message-ID of its email: 128 random bits, so that ids are unique
    # across installations and databases and nobody can guess one (relance/envelope.py).
    Column("message_token", String(32), nullable=False, default=new_message_token),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("enrollment_id", "key"),
    UniqueConstraint("message_token"),
    Index("ix_touchpoints_due", "status", "due_at"),
    # (enrollment_id, key) is unique: that index also finds an enrollment's touches
)

meetings = Table(
    "meetings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),  # booked | cancelled
    Column("source", String(40), nullable=False),
    Column("external_id", String(200)),
    Column("location", Text),
    Column("join_url", Text),
    Column("created_at", UTCDateTime, nullable=False),
    # SEQUENCE of the latest invitation (RFC 5546): each update or cancellation sent raises it
    Column("ical_sequence", Integer, nullable=False, server_default="0"),
    Index("uq_meetings_source_external_id", "source", "external_id", unique=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("prospect_id", Integer, ForeignKey("prospects.id")),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id")),
    Column("touchpoint_id", Integer, ForeignKey("touchpoints.id")),
    # replied | booked | booking_cancelled | bounced | unsubscribed | spam_report | paused
    # | resumed | stopped | snoozed | enrolled | delivered | opened | clicked | ...
    Column("kind", String(40), nullable=False),
    Column("source", String(40), nullable=False),
    Column("external_id", String(200), unique=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    Column("data", _json(), nullable=False),
    Index("ix_events_prospect", "prospect_id"),
    Index("ix_events_enrollment", "enrollment_id"),
    Index("ix_events_touchpoint", "touchpoint_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("touchpoint_id", Integer, ForeignKey("touchpoints.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("provider", String(30), nullable=False),
    Column("status", String(20), nullable=False),  # sent | failed | retry
    Column("provider_message_id", String(200)),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_deliveries_touchpoint", "touchpoint_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("touchpoint_id", Integer, ForeignKey("touchpoints.id"), unique=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id")),
    Column("prospect_id", Integer, ForeignKey("prospects.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # call | reminder | reply
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("owner", String(320), nullable=False, server_default=""),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),  # open | done | cancelled
    Column("outcome", String(30)),
    Column("note", Text),
    Column("done_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_tasks_open", "status", "due_at"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(40), nullable=False),
    Column("source", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
