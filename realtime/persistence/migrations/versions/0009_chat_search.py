"""chat search: an index mark per room (``chat_index``), SQLite FTS5 shards or a PostgreSQL
``tsvector`` table with a GIN index, built here for every message already stored

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from realtime.persistence import search_sqlite
from realtime.persistence.search_pg import CONFIG

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_index",
        sa.Column("stream", sa.String(64), sa.ForeignKey("stream.id"), primary_key=True),
        # SQLite: the room's number, which names its shard and its rowid range.
        sa.Column("num", sa.BigInteger, nullable=True, unique=True),
        sa.Column("upto", sa.BigInteger, nullable=False),  # indexed up to this seq
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite()
    else:
        _postgres()


def _sqlite() -> None:
    for statement in search_sqlite.create_statements():
        op.execute(statement)
    op.execute(
        "INSERT INTO chat_index (stream, num, upto) "
        f"SELECT r.id, row_number() OVER (ORDER BY r.id), min(s.last_seq, {search_sqlite.MAX_SEQ}) "
        "FROM room r JOIN stream s ON s.id = r.id"
    )
    for n in range(search_sqlite.SHARDS):
        op.execute(
            f"INSERT INTO {search_sqlite.shard(n)} (rowid, body) "
            f"SELECT (c.num << {search_sqlite.SEQ_BITS}) + e.seq, json_extract(e.data, '$.body') "
            "FROM chat_index c JOIN event e ON e.stream = c.stream "
            f"WHERE c.num % {search_sqlite.SHARDS} = {n} AND e.type = 'chat.message' "
            "AND e.seq <= c.upto AND json_extract(e.data, '$.deleted') IS NULL ORDER BY 1"
        )


def _postgres() -> None:
    op.execute(
        "CREATE TABLE chat_fts (stream VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, "
        "tsv TSVECTOR NOT NULL, PRIMARY KEY (stream, seq))"
    )
    op.execute("CREATE INDEX ix_chat_fts_tsv ON chat_fts USING gin (tsv)")
    op.execute(
        "INSERT INTO chat_index (stream, upto) "
        "SELECT r.id, s.last_seq FROM room r JOIN stream s ON s.id = r.id"
    )
    op.execute(
        "INSERT INTO chat_fts (stream, seq, tsv) "
        f"SELECT e.stream, e.seq, to_tsvector('{CONFIG}', e.data::jsonb ->> 'body') "
        "FROM chat_index c JOIN event e ON e.stream = c.stream "
        "WHERE e.type = 'chat.message' AND e.seq <= c.upto AND NOT (e.data::jsonb ? 'deleted')"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in search_sqlite.drop_statements():
            op.execute(statement)
    else:
        op.execute("DROP TABLE chat_fts")
    op.drop_table("chat_index")
