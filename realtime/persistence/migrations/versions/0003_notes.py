"""shared notes: a notes stream per room, and compacted snapshots

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "note_snapshot",
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    # Rooms made before notes existed get their notes stream now.
    op.execute(
        "INSERT INTO stream (id, last_seq, created_at) "
        "SELECT 'notes:' || id, 0, created_at FROM room"
    )


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE stream LIKE 'notes:%'")
    op.execute("DELETE FROM stream WHERE id LIKE 'notes:%'")
    op.drop_table("note_snapshot")
