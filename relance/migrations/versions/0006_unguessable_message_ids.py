"""unguessable Message-IDs: a random 128-bit token per touch

Message-IDs were ``<tp-<touchpoint id>@<mail domain>>``: a second installation sent the
same ids again, and anyone could guess one to forge an In-Reply-To. Each touch now holds a
random token, the local part of its Message-ID. Existing touches get one here; replies to
emails already sent with the old ids are still matched by their reply token.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_token", sa.String(length=32), nullable=True))
    connection = op.get_bind()
    table = sa.table("touchpoints", sa.column("id", sa.Integer), sa.column("message_token"))
    ids = connection.execute(sa.select(table.c.id)).scalars().all()
    for first in range(0, len(ids), 1000):
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("b_id"))
            .values(message_token=sa.bindparam("b_token")),
            [{"b_id": i, "b_token": secrets.token_hex(16)} for i in ids[first : first + 1000]],
        )
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.alter_column("message_token", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_touchpoints_message_token"), ["message_token"])


def downgrade() -> None:
    with op.batch_alter_table("touchpoints", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_touchpoints_message_token"), type_="unique")
        batch_op.drop_column("message_token")
