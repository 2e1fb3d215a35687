"""The feed's reads: communities, threads, pages of posts and comments, reaction counts,
follows. REST, the live feed and the reducer (reaction counts) read through these."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .model import FOLLOW_KINDS, Follows, PostRef, ThreadRecord, zero_counts
from .serialize import comment_json, decode_milestone, post_json
from .tables import (
    COMMENT_T,
    COMMUNITY_T,
    FOLLOW_T,
    MEMBER_T,
    PENDING_T,
    POST_T,
    REACTION_T,
    THREAD_T,
)

# Communities, threads, posts ----------------------------------------------------------------


async def get_community(conn: AsyncConnection, community_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(COMMUNITY_T).where(COMMUNITY_T.c.id == community_id))).first()
    return None if row is None else {"id": row.id, "name": row.name, "created_at": row.created_at}


async def list_communities(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(COMMUNITY_T).order_by(COMMUNITY_T.c.name, COMMUNITY_T.c.id))
    return [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in rows]


async def get_thread(conn: AsyncConnection, thread_id: str) -> ThreadRecord | None:
    row = (await conn.execute(select(THREAD_T).where(THREAD_T.c.id == thread_id))).first()
    if row is None:
        return None
    return ThreadRecord(
        row.id, row.community_id, row.owner_id, row.owner_name, row.title, row.created_at
    )


async def list_threads(
    conn: AsyncConnection, owner_id: str, community_id: str | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A user's threads (in one community, or in all), newest first; has_more."""
    query = select(THREAD_T).where(THREAD_T.c.owner_id == owner_id)
    if community_id is not None:
        query = query.where(THREAD_T.c.community_id == community_id)
    order = (THREAD_T.c.created_at.desc(), THREAD_T.c.id.desc())
    rows = list(await conn.execute(query.order_by(*order).limit(limit + 1)))
    threads = [
        ThreadRecord(
            r.id, r.community_id, r.owner_id, r.owner_name, r.title, r.created_at
        ).as_dict()
        for r in rows[:limit]
    ]
    return threads, len(rows) > limit


async def get_post_ref(conn: AsyncConnection, post_id: str) -> PostRef | None:
    """A post that exists and is not deleted."""
    row = (
        await conn.execute(
            select(
                POST_T.c.id,
                POST_T.c.thread_id,
                POST_T.c.community_id,
                POST_T.c.author_id,
                POST_T.c.feed_seq,
            ).where(POST_T.c.id == post_id, POST_T.c.deleted == false())
        )
    ).first()
    if row is None:
        return None
    return PostRef(row.id, row.thread_id, row.community_id, row.author_id, row.feed_seq)


async def get_comment_author(conn: AsyncConnection, post_id: str, comment_id: str) -> str | None:
    """The author of a stored comment of this post (None: no such comment)."""
    return await conn.scalar(
        select(COMMENT_T.c.author_id).where(
            COMMENT_T.c.id == comment_id, COMMENT_T.c.post_id == post_id
        )
    )


def in_community(community_id: str) -> ColumnElement[bool]:
    return POST_T.c.community_id == community_id  # type: ignore[no-any-return]


def in_thread(thread_id: str) -> ColumnElement[bool]:
    return POST_T.c.thread_id == thread_id  # type: ignore[no-any-return]


def with_id(post_id: str) -> ColumnElement[bool]:
    return POST_T.c.id == post_id  # type: ignore[no-any-return]


def followed_by(user_id: str) -> ColumnElement[bool]:
    """Posts in a community or thread the user follows, or by a user they follow."""

    def targets(kind: str) -> Any:
        return select(FOLLOW_T.c.target_id).where(
            FOLLOW_T.c.user_id == user_id, FOLLOW_T.c.kind == kind
        )

    return or_(
        POST_T.c.community_id.in_(targets("communities")),
        POST_T.c.thread_id.in_(targets("threads")),
        POST_T.c.author_id.in_(targets("users")),
    )


async def page_posts(
    conn: AsyncConnection,
    where: ColumnElement[bool],
    *,
    before: int | None,
    limit: int,
    viewer: str,
    post_id: str | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Live posts matching ``where``, newest first, with ``feed_seq < before``; has_more."""
    query = (
        select(POST_T, THREAD_T.c.title.label("thread_title"))
        .join(THREAD_T, THREAD_T.c.id == POST_T.c.thread_id)
        .where(POST_T.c.deleted == false(), where)
    )
    if post_id is not None:
        query = query.where(POST_T.c.id == post_id)
    if before is not None:
        query = query.where(POST_T.c.feed_seq < before)
    rows = list(await conn.execute(query.order_by(POST_T.c.feed_seq.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    ids = [r.id for r in rows]
    counts = await reaction_counts(conn, ids)
    comments = await comment_counts(conn, ids)
    mine = await own_reactions(conn, ids, viewer)
    posts = []
    for r in rows:
        post = post_json(
            r._mapping,
            thread_title=r.thread_title,
            milestone=decode_milestone(r.milestone),
            reactions=counts.get(r.id, zero_counts()),
            comments=comments.get(r.id, 0),
        )
        post["my_reactions"] = sorted(mine.get(r.id, ()))
        posts.append(post)
    return posts, has_more


async def deleted_posts(conn: AsyncConnection, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    if not ids:
        return set()
    rows = await conn.execute(select(POST_T.c.id).where(POST_T.c.id.in_(ids), POST_T.c.deleted))
    return {r.id for r in rows}


# Comments and reactions ---------------------------------------------------------------------


async def page_comments(
    conn: AsyncConnection, post_id: str, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A post's comments, oldest first, with ``feed_seq > after``; has_more."""
    query = select(COMMENT_T).where(COMMENT_T.c.post_id == post_id)
    if after is not None:
        query = query.where(COMMENT_T.c.feed_seq > after)
    rows = list(await conn.execute(query.order_by(COMMENT_T.c.feed_seq).limit(limit + 1)))
    comments = [comment_json(r._mapping) for r in rows[:limit]]
    return comments, len(rows) > limit


async def comment_counts(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(COMMENT_T.c.post_id, func.count())
        .where(COMMENT_T.c.post_id.in_(ids))
        .group_by(COMMENT_T.c.post_id)
    )
    return {post_id: int(n) for post_id, n in rows}


async def reaction_counts(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, dict[str, int]]:
    ids = list(ids)
    counts: dict[str, dict[str, int]] = {}
    if not ids:
        return counts
    rows = await conn.execute(
        select(REACTION_T.c.post_id, REACTION_T.c.kind, func.count())
        .where(REACTION_T.c.post_id.in_(ids))
        .group_by(REACTION_T.c.post_id, REACTION_T.c.kind)
    )
    for post_id, kind, n in rows:
        counts.setdefault(post_id, zero_counts())[kind] = int(n)
    return counts


async def own_reactions(conn: AsyncConnection, ids: list[str], user_id: str) -> dict[str, set[str]]:
    mine: dict[str, set[str]] = {}
    if ids:
        rows = await conn.execute(
            select(REACTION_T.c.post_id, REACTION_T.c.kind).where(
                REACTION_T.c.post_id.in_(ids), REACTION_T.c.user_id == user_id
            )
        )
        for post_id, kind in rows:
            mine.setdefault(post_id, set()).add(kind)
    return mine


async def pending_reactions(conn: AsyncConnection, older_than: float) -> list[str]:
    """Posts marked before ``older_than`` (Unix time) whose ``feed.reaction`` is still owed."""
    rows = await conn.execute(
        select(PENDING_T.c.post_id)
        .where(PENDING_T.c.marked_at < older_than)
        .order_by(PENDING_T.c.marked_at)
        .limit(1000)
    )
    return [r.post_id for r in rows]


# Follows ------------------------------------------------------------------------------------


async def follow_target_exists(conn: AsyncConnection, kind: str, target_id: str) -> bool:
    """A community or thread that exists; a user the data names: a member of a room (the
    platform named them when it created the room) or a growth thread's owner (they created
    it with their own token). Posts and comments come from thread owners and members."""
    if kind == "communities":
        query = select(COMMUNITY_T.c.id).where(COMMUNITY_T.c.id == target_id)
    elif kind == "threads":
        query = select(THREAD_T.c.id).where(THREAD_T.c.id == target_id)
    else:
        owner = select(THREAD_T.c.owner_id).where(THREAD_T.c.owner_id == target_id).limit(1)
        member = select(MEMBER_T.c.user_id).where(MEMBER_T.c.user_id == target_id).limit(1)
        query = select(owner.exists() | member.exists())
        return bool((await conn.execute(query)).scalar())
    return (await conn.execute(query.limit(1))).first() is not None


async def follow_count(conn: AsyncConnection, user_id: str) -> int:
    query = select(func.count()).select_from(FOLLOW_T).where(FOLLOW_T.c.user_id == user_id)
    return int((await conn.execute(query)).scalar() or 0)


async def is_following(conn: AsyncConnection, user_id: str, kind: str, target_id: str) -> bool:
    query = select(FOLLOW_T.c.user_id).where(
        FOLLOW_T.c.user_id == user_id, FOLLOW_T.c.kind == kind, FOLLOW_T.c.target_id == target_id
    )
    return (await conn.execute(query)).first() is not None


async def load_follows(conn: AsyncConnection, user_id: str) -> Follows:
    follows = Follows()
    rows = await conn.execute(
        select(FOLLOW_T.c.kind, FOLLOW_T.c.target_id).where(FOLLOW_T.c.user_id == user_id)
    )
    for kind, target in rows:
        if kind in FOLLOW_KINDS:
            follows.of_kind(kind).add(target)
    return follows
