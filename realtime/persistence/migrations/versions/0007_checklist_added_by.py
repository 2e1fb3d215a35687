"""checklist: who added each step (the role table: a mentee changes only the steps they added)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# A live step's adder is the author of the newest ``checklist.add`` event with its id (an id
# can be added again once its tombstone is forgotten: the newest add made the live step).
_BACKFILL_SQLITE = (
    "UPDATE checklist_item SET added_by = a.author_id FROM ("
    "SELECT stream, json_extract(data, '$.item.id') AS item_id, author_id, max(seq) "
    "FROM event WHERE type = 'checklist.add' GROUP BY stream, json_extract(data, '$.item.id')"
    ") AS a WHERE a.stream = checklist_item.room_id AND a.item_id = checklist_item.item_id "
    "AND checklist_item.removed = 0"
)
_BACKFILL_PG = (
    "UPDATE checklist_item i SET added_by = a.author_id FROM ("
    "SELECT DISTINCT ON (stream, data::jsonb #>> '{item,id}') stream, "
    "data::jsonb #>> '{item,id}' AS item_id, author_id FROM event "
    "WHERE type = 'checklist.add' ORDER BY stream, data::jsonb #>> '{item,id}', seq DESC"
    ") a WHERE a.stream = i.room_id AND a.item_id = i.item_id AND NOT i.removed"
)


def upgrade() -> None:
    with op.batch_alter_table("checklist_item") as batch:
        batch.add_column(sa.Column("added_by", sa.String(128), nullable=True))
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(_BACKFILL_SQLITE if sqlite else _BACKFILL_PG)


def downgrade() -> None:
    with op.batch_alter_table("checklist_item") as batch:
        batch.drop_column("added_by")
