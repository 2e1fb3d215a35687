"""The writer's reducer for ``feed.*`` events: it writes posts and comments inside the
transaction that stores their event.

It runs under the feed stream's lock, so a post's ``feed_seq`` is its event's seq and
``feed.reaction`` counts are read in seq order (a later event never carries older counts).
Reaction and follow rows are plain rows (``rows.py``): a reaction's effect on the feed is the
aggregated ``feed.reaction`` event that follows it. A reaction marks its post in
``reaction_pending`` in its own transaction, and the event that reads the counts clears the
mark, so a process that dies between the two leaves a mark for another (or its own restart)
to finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent, Rejected
from .model import (
    COMMENT,
    COMMENT_DELETE,
    DELETE,
    FEED_STREAM,
    POST,
    REACTION,
    PostRef,
    zero_counts,
)
from .queries import reaction_counts
from .serialize import comment_json, encode_milestone, post_json
from .tables import COMMENT_T, EVENT_T, PENDING_T, POST_T


@dataclass(slots=True)
class FeedBatch:
    """What one appending transaction knows of the posts its ``feed.*`` events touch."""

    posts: dict[str, PostRef]
    counts: dict[str, dict[str, int]]
    new_posts: list[dict[str, Any]] = field(default_factory=list)
    new_comments: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[PostRef] = field(default_factory=list)
    deleting: set[str] = field(default_factory=set)  # posts a feed.delete of this batch names
    marks: dict[str, str] = field(default_factory=dict)  # reaction marks these events clear
    # comment id -> (post id, feed_seq): stored comments a feed.comment.delete of this batch names
    comments: dict[str, tuple[str, int]] = field(default_factory=dict)
    erased: list[tuple[str, PostRef, int]] = field(default_factory=list)  # (comment, post, seq)


class FeedReducer:
    """The writer's hook for ``feed.*`` events (all on the one ``feed`` stream).

    - ``feed.post``: ``data = {"post": {id, thread_id, thread_title, community_id, body,
      milestone}}`` (checked by the caller: the thread exists and is the author's);
    - ``feed.comment``: ``{"post_id", "comment_id", "body"}``;
    - ``feed.reaction``: ``{"post_id"}``; the counts are read here, under the lock;
    - ``feed.delete``: ``{"post_id"}``;
    - ``feed.comment.delete``: ``{"post_id", "comment_id"}`` (checked by the caller: the
      comment is the author's).
    An event about a post that does not exist or was deleted is refused (``not_found``).
    """

    prefix = "feed."

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> FeedBatch:
        posts = await _post_refs(conn, {str(i.data["post_id"]) for i in items if i.type != POST})
        deleting = {str(i.data["post_id"]) for i in items if i.type == DELETE}
        reacted = {str(i.data["post_id"]) for i in items if i.type == REACTION}
        comments = await _comment_refs(
            conn, {str(i.data["comment_id"]) for i in items if i.type == COMMENT_DELETE}
        )
        if not reacted:
            return FeedBatch(posts, {}, deleting=deleting, comments=comments)
        # The marks first: a reaction committed after this read keeps its mark (and its own
        # event follows), even if the counts below already include it.
        marks = await conn.execute(
            select(PENDING_T.c.post_id, PENDING_T.c.mark).where(PENDING_T.c.post_id.in_(reacted))
        )
        seen = {r.post_id: r.mark for r in marks}
        counts = await reaction_counts(conn, reacted)
        return FeedBatch(posts, counts, marks=seen, deleting=deleting, comments=comments)

    def reduce(self, state: FeedBatch, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        if item.type == POST:
            return _post(state, item, seq, ts)
        found = state.posts.get(str(item.data.get("post_id")))
        if found is None or found.deleted:
            raise Rejected("not_found", "no such post (or it was deleted)")
        if item.type == COMMENT:
            return _comment(state, found, item, seq, ts)
        if item.type == REACTION:
            return {**found.routing(), "counts": state.counts.get(found.id, zero_counts())}
        if item.type == DELETE:
            found.deleted = True
            state.deleted.append(found)
            return found.routing()
        if item.type == COMMENT_DELETE:
            return _comment_delete(state, found, item)
        raise Rejected("invalid", f"unknown feed event {item.type!r}")

    async def save(self, conn: AsyncConnection, state: FeedBatch) -> None:
        if state.marks:
            await conn.execute(
                delete(PENDING_T).where(
                    PENDING_T.c.post_id == bindparam("pid"), PENDING_T.c.mark == bindparam("m")
                ),
                [{"pid": pid, "m": mark} for pid, mark in state.marks.items()],
            )
        if state.new_posts:
            await conn.execute(insert(POST_T), state.new_posts)
        if state.new_comments:
            await conn.execute(insert(COMMENT_T), state.new_comments)
        if state.deleted:
            await _erase_posts(conn, state.deleted)
            await _erase_comments(conn, state.deleted)
        if state.erased:
            await _erase_comment_events(conn, state.erased)


async def _comment_refs(conn: AsyncConnection, ids: set[str]) -> dict[str, tuple[str, int]]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(COMMENT_T.c.id, COMMENT_T.c.post_id, COMMENT_T.c.feed_seq).where(
            COMMENT_T.c.id.in_(ids)
        )
    )
    return {r.id: (r.post_id, r.feed_seq) for r in rows}


def _comment_delete(state: FeedBatch, found: PostRef, item: NewEvent) -> dict[str, Any]:
    comment_id = str(item.data["comment_id"])
    # pop: a second deletion of the same comment in this batch finds nothing, like a later one.
    stored = state.comments.pop(comment_id, None)
    if stored is None or stored[0] != found.id or found.id in state.deleting:
        raise Rejected("not_found", "no such comment (or it was deleted)")
    state.erased.append((comment_id, found, stored[1]))
    return {**found.routing(), "comment_id": comment_id}


async def _post_refs(conn: AsyncConnection, ids: set[str]) -> dict[str, PostRef]:
    """The posts these events name, deleted ones included (their events are refused)."""
    posts: dict[str, PostRef] = {}
    if not ids:
        return posts
    rows = await conn.execute(
        select(
            POST_T.c.id,
            POST_T.c.thread_id,
            POST_T.c.community_id,
            POST_T.c.author_id,
            POST_T.c.feed_seq,
            POST_T.c.deleted,
        ).where(POST_T.c.id.in_(ids))
    )
    for r in rows:
        posts[r.id] = PostRef(
            r.id, r.thread_id, r.community_id, r.author_id, r.feed_seq, bool(r.deleted)
        )
    return posts


def _post(state: FeedBatch, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
    raw = item.data["post"]
    ref = PostRef(raw["id"], raw["thread_id"], raw["community_id"], item.author_id, seq)
    if ref.id in state.posts:
        raise Rejected("conflict", "this post id is taken")
    state.posts[ref.id] = ref
    row = {
        "id": ref.id,
        "thread_id": ref.thread_id,
        "community_id": ref.community_id,
        "author_id": item.author_id,
        "author_name": item.author_name,
        "body": raw["body"],
        "milestone": encode_milestone(raw.get("milestone")),
        "feed_seq": seq,
        "created_at": ts,
        "deleted": False,
    }
    state.new_posts.append(row)
    post = post_json(
        row,
        thread_title=raw["thread_title"],
        milestone=raw.get("milestone"),
        reactions=zero_counts(),
        comments=0,
    )
    return {**ref.routing(), "post": post}


def _comment(state: FeedBatch, found: PostRef, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
    if found.id in state.deleting:
        # Its event row would be written after save() erases the post's comments:
        # a comment racing its post's deletion is refused instead of kept.
        raise Rejected("not_found", "no such post (it is being deleted)")
    row = {
        "id": item.data["comment_id"],
        "post_id": found.id,
        "author_id": item.author_id,
        "author_name": item.author_name,
        "body": item.data["body"],
        "feed_seq": seq,
        "created_at": ts,
    }
    state.new_comments.append(row)
    return {**found.routing(), "comment": comment_json(row)}


async def _erase_posts(conn: AsyncConnection, posts: list[PostRef]) -> None:
    """A deleted post's words leave the database, not just the feed: the row and its
    feed.post event keep only what routes it."""
    await conn.execute(
        update(POST_T)
        .where(POST_T.c.id == bindparam("pid"))
        .values(deleted=True, body="", milestone=None),
        [{"pid": ref.id} for ref in posts],
    )
    await conn.execute(
        update(EVENT_T)
        .where(EVENT_T.c.stream == FEED_STREAM, EVENT_T.c.seq == bindparam("s"))
        .values(data=bindparam("d")),
        [
            {
                "s": ref.feed_seq,
                "d": orjson.dumps(
                    {**ref.routing(), "post": {"id": ref.id, "deleted": True}}
                ).decode(),
            }
            for ref in posts
        ],
    )


async def _erase_comments(conn: AsyncConnection, posts: list[PostRef]) -> None:
    """A deleted post's comments go too: their rows (body and author), and their feed.comment
    events keep only what routes them (replays leave them out already)."""
    refs = {ref.id: ref for ref in posts}
    rows = list(
        await conn.execute(
            select(COMMENT_T.c.id, COMMENT_T.c.post_id, COMMENT_T.c.feed_seq).where(
                COMMENT_T.c.post_id.in_(list(refs))
            )
        )
    )
    if not rows:
        return
    await conn.execute(delete(COMMENT_T).where(COMMENT_T.c.post_id.in_(list(refs))))
    await conn.execute(
        update(EVENT_T)
        .where(EVENT_T.c.stream == FEED_STREAM, EVENT_T.c.seq == bindparam("s"))
        .values(data=bindparam("d")),
        [
            {
                "s": r.feed_seq,
                "d": orjson.dumps(
                    {
                        **refs[r.post_id].routing(),
                        "comment": {"id": r.id, "post_id": r.post_id, "deleted": True},
                    }
                ).decode(),
            }
            for r in rows
        ],
    )


async def _erase_comment_events(
    conn: AsyncConnection, erased: list[tuple[str, PostRef, int]]
) -> None:
    """A deleted comment's row goes, and its feed.comment event keeps only what routes it
    (as when its post is deleted): its words leave the database."""
    await conn.execute(delete(COMMENT_T).where(COMMENT_T.c.id.in_([c for c, _, _ in erased])))
    await conn.execute(
        update(EVENT_T)
        .where(EVENT_T.c.stream == FEED_STREAM, EVENT_T.c.seq == bindparam("s"))
        .values(data=bindparam("d")),
        [
            {
                "s": seq,
                "d": orjson.dumps(
                    {
                        **ref.routing(),
                        "comment": {"id": comment, "post_id": ref.id, "deleted": True},
                    }
                ).decode(),
            }
            for comment, ref, seq in erased
        ],
    )
