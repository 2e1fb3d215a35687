"""webhook outbox: notifications waiting for their due time, retried until delivered

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(80), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=True),
        sa.Column("post_id", sa.String(64), nullable=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_webhook_outbox_due", "webhook_outbox", ["state", "next_at"])
    op.create_index("ix_webhook_outbox_scope", "webhook_outbox", ["user_id", "scope", "last_seq"])
    pending = sa.text("state = 'pending'")
    op.create_index(
        "ux_webhook_outbox_pending",
        "webhook_outbox",
        ["user_id", "scope"],
        unique=True,
        sqlite_where=pending,
        postgresql_where=pending,
    )


def downgrade() -> None:
    op.drop_table("webhook_outbox")
