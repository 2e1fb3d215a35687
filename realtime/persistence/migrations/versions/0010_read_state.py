"""read state: read markers per member and room; who changed the notes in compacted updates

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "read_marker",
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "notes_author",
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("last_ts", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notes_author")
    op.drop_table("read_marker")
