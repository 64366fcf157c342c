"""prospect region (ISO 3166-2) and where the prospect's time zone came from

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("region", sa.String(length=40), nullable=True))
        # given | region | country | phone | sequence; NULL: stored before it was recorded
        batch_op.add_column(sa.Column("timezone_source", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.drop_column("timezone_source")
        batch_op.drop_column("region")
