"""prospect and suppressed addresses in their canonical form

Addresses are compared in one canonical form (relance/addresses.py): NFC, no trailing dot
on the domain, the domain in IDNA ASCII, unneeded quotes of the local part dropped, lower
case. Stored addresses that differ are rewritten in place. One whose canonical form is
already stored by another row is left as it is (both rows are kept: nothing is merged or
lost); a suppression in either spelling still stops the canonical one, which is the one
enrollment now stores.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from relance.addresses import AddressError, canonical_address

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _canonical(text: str) -> str | None:
    try:
        return canonical_address(text)
    except AddressError:
        return None


def _rewrite(connection: sa.Connection, table: str, key: str) -> None:
    rows = connection.execute(sa.text(f"SELECT {key}, email FROM {table}")).all()
    taken = {row.email for row in rows}
    for row in rows:
        canonical = _canonical(row.email)
        if canonical is None or canonical == row.email or canonical in taken:
            continue
        connection.execute(
            sa.text(f"UPDATE {table} SET email = :email WHERE {key} = :key"),
            {"email": canonical, "key": getattr(row, key)},
        )
        taken.discard(row.email)
        taken.add(canonical)


def upgrade() -> None:
    connection = op.get_bind()
    _rewrite(connection, "prospects", "id")
    _rewrite(connection, "suppressions", "email")  # keyed by the address itself


def downgrade() -> None:
    """Nothing to undo: the canonical form is a valid spelling of the same address."""
