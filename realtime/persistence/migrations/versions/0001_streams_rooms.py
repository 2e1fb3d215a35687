"""streams, rooms, members, events

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_table(
        "stream",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "room",
        sa.Column("id", sa.String(64), sa.ForeignKey("stream.id"), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "member",
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
    )
    op.create_index("ix_member_user_id", "member", ["user_id"])
    op.create_table(
        "event",
        sa.Column("stream", sa.String(64), sa.ForeignKey("stream.id"), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("author_id", sa.String(128), nullable=False),
        sa.Column("author_name", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.UniqueConstraint("stream", "author_id", "client_id", name="uq_event_client_id"),
    )
    op.create_index("ix_event_stream_type_seq", "event", ["stream", "type", "seq"])


def downgrade() -> None:
    for table in ("event", "member", "room", "stream", "meta"):
        op.drop_table(table)
