"""the community feed: communities, threads, posts, comments, reactions, follows, feed stream

The one ``feed`` stream carries every feed event; its seq is the feed's cursor.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_communities_and_threads()
    _create_posts()
    _create_comments()
    _create_reactions_and_follows()
    _insert_feed_stream()


def _create_communities_and_threads() -> None:
    op.create_table(
        "community",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "thread",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("community_id", sa.String(64), sa.ForeignKey("community.id"), nullable=False),
        sa.Column("owner_id", sa.String(128), nullable=False),
        sa.Column("owner_name", sa.String(128), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_thread_owner_id", "thread", ["owner_id"])
    op.create_index("ix_thread_community", "thread", ["community_id", "created_at"])


def _create_posts() -> None:
    op.create_table(
        "post",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("thread.id"), nullable=False),
        sa.Column("community_id", sa.String(64), sa.ForeignKey("community.id"), nullable=False),
        sa.Column("author_id", sa.String(128), nullable=False),
        sa.Column("author_name", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("milestone", sa.Text, nullable=True),
        sa.Column("feed_seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_post_community_seq", "post", ["community_id", "feed_seq"])
    op.create_index("ix_post_thread_seq", "post", ["thread_id", "feed_seq"])
    op.create_index("ix_post_author_seq", "post", ["author_id", "feed_seq"])


def _create_comments() -> None:
    op.create_table(
        "comment",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("post_id", sa.String(64), sa.ForeignKey("post.id"), nullable=False),
        sa.Column("author_id", sa.String(128), nullable=False),
        sa.Column("author_name", sa.String(128), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("feed_seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_comment_post_seq", "comment", ["post_id", "feed_seq"])


def _create_reactions_and_follows() -> None:
    op.create_table(
        "reaction",
        sa.Column("post_id", sa.String(64), sa.ForeignKey("post.id"), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
    )
    op.create_table(
        "follow",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("target_id", sa.String(128), primary_key=True),
    )
    op.create_index("ix_follow_target", "follow", ["kind", "target_id"])


def _insert_feed_stream() -> None:
    """The one stream every feed event goes to; its seq is the feed's cursor."""
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    stream = sa.table(
        "stream", sa.column("id", sa.String), sa.column("last_seq"), sa.column("created_at")
    )
    op.bulk_insert(stream, [{"id": "feed", "last_seq": 0, "created_at": created}])


def downgrade() -> None:
    op.execute("DELETE FROM event WHERE stream = 'feed'")
    op.execute("DELETE FROM stream WHERE id = 'feed'")
    for table in ("follow", "reaction", "comment", "post", "thread", "community"):
        op.drop_table(table)
