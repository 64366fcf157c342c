"""index events by touchpoint

Recovery looks up the provider events of touches left ``unknown`` by a crash on every
tick; analytics group events by touchpoint.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 01:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_touchpoint", ["touchpoint_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_touchpoint")
