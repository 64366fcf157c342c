"""meetings booked through a scheduling provider: invitation SEQUENCE, one row per booking

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "meetings", sa.Column("ical_sequence", sa.Integer(), server_default="0", nullable=False)
    )
    op.create_index(
        "uq_meetings_source_external_id", "meetings", ["source", "external_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_meetings_source_external_id", table_name="meetings")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("ical_sequence")
