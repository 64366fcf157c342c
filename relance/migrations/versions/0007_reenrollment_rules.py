"""re-enrollment rules: when an enrollment completed; enrollments by prospect; one index
less to maintain on touchpoints (the unique (enrollment_id, key) one serves its lookups)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 04:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import relance.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_at", relance.tables.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_enrollments_prospect", ["prospect_id"], unique=False)
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.drop_index("ix_touchpoints_enrollment")


def downgrade() -> None:
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.create_index("ix_touchpoints_enrollment", ["enrollment_id"], unique=False)
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollments_prospect")
        batch_op.drop_column("completed_at")
