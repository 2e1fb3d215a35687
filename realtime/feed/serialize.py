"""The public shape of a post and of a comment: one builder each, used by the reducer (the
``feed.post`` and ``feed.comment`` events) and by the queries (REST pages), so a post reads
the same live and paged.

Both build from the stored row (the ``post`` or ``comment`` table's columns by name, a dict
or a ``RowMapping``): the reducer from the row it is about to insert, the queries from the
rows they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def encode_milestone(milestone: Any) -> str | None:
    """A shared milestone as its ``post.milestone`` column holds it (JSON text)."""
    return None if milestone is None else orjson.dumps(milestone).decode()


def decode_milestone(stored: str | None) -> Any:
    return None if stored is None else orjson.loads(stored)


def post_json(
    row: Mapping[Any, Any],
    *,
    thread_title: str,
    milestone: Any,
    reactions: dict[str, int],
    comments: int,
) -> dict[str, Any]:
    """A post from its row; ``milestone`` decoded (the reducer has it at hand already),
    ``reactions`` the counts per kind, ``comments`` how many it has."""
    return {
        "id": row["id"],
        "cursor": row["feed_seq"],
        "thread_id": row["thread_id"],
        "thread_title": thread_title,
        "community_id": row["community_id"],
        "author": {"user_id": row["author_id"], "name": row["author_name"]},
        "body": row["body"],
        "milestone": milestone,
        "created_at": row["created_at"],
        "reactions": reactions,
        "comments": comments,
    }


def comment_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A comment from its row."""
    return {
        "id": row["id"],
        "post_id": row["post_id"],
        "cursor": row["feed_seq"],
        "author": {"user_id": row["author_id"], "name": row["author_name"]},
        "body": row["body"],
        "created_at": row["created_at"],
    }
