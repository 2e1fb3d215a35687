"""access that changes: archived rooms, stored revocations, the ``access`` stream

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite takes one with a constant default): a batch rebuild of
    # ``room`` would drop the table its members' foreign keys point at, and fail on any
    # database that has rooms.
    op.add_column(
        "room", sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "revocation",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("issued_before", sa.Float, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_revocation_expires", "revocation", ["expires_at"])
    # The one stream every revocation goes to: each process follows it from its start.
    stream = sa.table(
        "stream",
        sa.column("id", sa.String),
        sa.column("last_seq", sa.BigInteger),
        sa.column("created_at", sa.String),
    )
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    op.bulk_insert(stream, [{"id": "access", "last_seq": 0, "created_at": created}])


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE stream = 'access'")
    op.execute("DELETE FROM stream WHERE id = 'access'")
    op.drop_index("ix_revocation_expires", table_name="revocation")
    op.drop_table("revocation")
    with op.batch_alter_table("room") as batch:
        batch.drop_column("archived")
