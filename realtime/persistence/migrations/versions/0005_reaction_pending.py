"""reaction_pending: posts whose reaction counts still owe the feed a ``feed.reaction`` event

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reaction_pending",
        sa.Column("post_id", sa.String(64), sa.ForeignKey("post.id"), primary_key=True),
        sa.Column("mark", sa.String(32), nullable=False),
        sa.Column("marked_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reaction_pending")
