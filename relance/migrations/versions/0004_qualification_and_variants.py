"""qualification grid, lifecycle stage with its moves, warmth; A/B variant per touch

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import relance.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GRID = ("need", "budget", "authority", "timing", "fit")


def upgrade() -> None:
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        for column in GRID:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("stage", sa.String(length=20), server_default="lead", nullable=False)
        )
        batch_op.add_column(sa.Column("warmth", sa.String(length=10), nullable=True))
    op.create_table(
        "stage_moves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prospect_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=True),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("moved_at", relance.tables.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["prospect_id"], ["prospects.id"], name=op.f("fk_stage_moves_prospect_id_prospects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_moves")),
    )
    with op.batch_alter_table("stage_moves", schema=None) as batch_op:
        batch_op.create_index("ix_stage_moves_prospect", ["prospect_id"], unique=False)
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.drop_column("variant")
    with op.batch_alter_table("stage_moves", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_moves_prospect")
    op.drop_table("stage_moves")
    with op.batch_alter_table("prospects", schema=None) as batch_op:
        batch_op.drop_column("warmth")
        batch_op.drop_column("stage")
        for column in reversed(GRID):
            batch_op.drop_column(column)
