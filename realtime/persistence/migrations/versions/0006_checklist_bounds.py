"""checklist: the verified title, removed rows as bounded tombstones, live items by index,
a version per room (the writer keeps active lists in memory while it matches)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checklist_item") as batch:
        batch.add_column(sa.Column("verified_title", sa.String(200), nullable=True))
        batch.add_column(sa.Column("removed_seq", sa.BigInteger, nullable=True))
    # A verification made before this revision covers the title the step has now.
    op.execute("UPDATE checklist_item SET verified_title = title WHERE verified")
    op.execute(
        "UPDATE checklist_item SET removed_seq = 0, title = '', description = '' WHERE removed"
    )
    op.create_index("ix_checklist_item_live", "checklist_item", ["room_id", "removed"])
    op.create_table(
        "checklist_room",
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id"), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checklist_room")
    op.drop_index("ix_checklist_item_live", table_name="checklist_item")
    with op.batch_alter_table("checklist_item") as batch:
        batch.drop_column("removed_seq")
        batch.drop_column("verified_title")
