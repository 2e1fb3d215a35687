"""The feed's tables: the writer's reducer for ``feed.*`` events, and the queries REST and
the live feed read.

Posts and comments are written by the reducer, inside the transaction that stores their
event and under the feed stream's lock, so a post's ``feed_seq`` is its event's seq and
``feed.reaction`` counts are read in seq order (a later event never carries older counts).
Reaction and follow rows are plain rows: a reaction's effect on the feed is the aggregated
``feed.reaction`` event that follows it. A reaction marks its post in ``reaction_pending`` in
its own transaction, and the event that reads the counts clears the mark, so a process that
dies between the two leaves a mark for another (or its own restart) to finish.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent, Rejected, now_iso
from ..persistence.models import (
    Comment,
    Community,
    Event,
    Follow,
    Member,
    Post,
    Reaction,
    ReactionPending,
    Thread,
)
from .model import (
    COMMENT,
    DELETE,
    FEED_STREAM,
    FOLLOW_KINDS,
    POST,
    REACTION,
    Follows,
    PostRef,
    zero_counts,
)

COMMUNITY_T = Community.__table__  # type: ignore[attr-defined]
THREAD_T = Thread.__table__  # type: ignore[attr-defined]
POST_T = Post.__table__  # type: ignore[attr-defined]
COMMENT_T = Comment.__table__  # type: ignore[attr-defined]
REACTION_T = Reaction.__table__  # type: ignore[attr-defined]
PENDING_T = ReactionPending.__table__  # type: ignore[attr-defined]
FOLLOW_T = Follow.__table__  # type: ignore[attr-defined]
MEMBER_T = Member.__table__  # type: ignore[attr-defined]
EVENT_T = Event.__table__  # type: ignore[attr-defined]


def new_id() -> str:
    return uuid.uuid4().hex


# The reducer ------------------------------------------------------------------------------


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


class FeedReducer:
    """The writer's hook for ``feed.*`` events (all on the one ``feed`` stream).

    - ``feed.post``: ``data = {"post": {id, thread_id, thread_title, community_id, body,
      milestone}}`` (checked by the caller: the thread exists and is the author's);
    - ``feed.comment``: ``{"post_id", "comment_id", "body"}``;
    - ``feed.reaction``: ``{"post_id"}``; the counts are read here, under the lock;
    - ``feed.delete``: ``{"post_id"}``.
    An event about a post that does not exist or was deleted is refused (``not_found``).
    """

    prefix = "feed."

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> FeedBatch:
        ids = {str(i.data["post_id"]) for i in items if i.type != POST}
        posts: dict[str, PostRef] = {}
        if ids:
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
        deleting = {str(i.data["post_id"]) for i in items if i.type == DELETE}
        reacted = {str(i.data["post_id"]) for i in items if i.type == REACTION}
        if not reacted:
            return FeedBatch(posts, {}, deleting=deleting)
        # The marks first: a reaction committed after this read keeps its mark (and its own
        # event follows), even if the counts below already include it.
        marks = await conn.execute(
            select(PENDING_T.c.post_id, PENDING_T.c.mark).where(PENDING_T.c.post_id.in_(reacted))
        )
        seen = {r.post_id: r.mark for r in marks}
        counts = await reaction_counts(conn, reacted)
        return FeedBatch(posts, counts, marks=seen, deleting=deleting)

    def reduce(self, state: FeedBatch, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        author = {"user_id": item.author_id, "name": item.author_name}
        if item.type == POST:
            raw = item.data["post"]
            ref = PostRef(raw["id"], raw["thread_id"], raw["community_id"], item.author_id, seq)
            if ref.id in state.posts:
                raise Rejected("conflict", "this post id is taken")
            state.posts[ref.id] = ref
            state.new_posts.append(
                {
                    "id": ref.id,
                    "thread_id": ref.thread_id,
                    "community_id": ref.community_id,
                    "author_id": item.author_id,
                    "author_name": item.author_name,
                    "body": raw["body"],
                    "milestone": None
                    if raw.get("milestone") is None
                    else orjson.dumps(raw["milestone"]).decode(),
                    "feed_seq": seq,
                    "created_at": ts,
                    "deleted": False,
                }
            )
            post = {
                "id": ref.id,
                "cursor": seq,
                "thread_id": ref.thread_id,
                "thread_title": raw["thread_title"],
                "community_id": ref.community_id,
                "author": author,
                "body": raw["body"],
                "milestone": raw.get("milestone"),
                "created_at": ts,
                "reactions": zero_counts(),
                "comments": 0,
            }
            return {**ref.routing(), "post": post}
        found = state.posts.get(str(item.data.get("post_id")))
        if found is None or found.deleted:
            raise Rejected("not_found", "no such post (or it was deleted)")
        if item.type == COMMENT:
            if found.id in state.deleting:
                # Its event row would be written after save() erases the post's comments:
                # a comment racing its post's deletion is refused instead of kept.
                raise Rejected("not_found", "no such post (it is being deleted)")
            comment = {
                "id": item.data["comment_id"],
                "post_id": found.id,
                "cursor": seq,
                "author": author,
                "body": item.data["body"],
                "created_at": ts,
            }
            state.new_comments.append(
                {
                    "id": comment["id"],
                    "post_id": found.id,
                    "author_id": item.author_id,
                    "author_name": item.author_name,
                    "body": comment["body"],
                    "feed_seq": seq,
                    "created_at": ts,
                }
            )
            return {**found.routing(), "comment": comment}
        if item.type == REACTION:
            return {**found.routing(), "counts": state.counts.get(found.id, zero_counts())}
        if item.type == DELETE:
            found.deleted = True
            state.deleted.append(found)
            return found.routing()
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
            # A deleted post's words leave the database, not just the feed: the row and its
            # feed.post event keep only what routes it.
            await conn.execute(
                update(POST_T)
                .where(POST_T.c.id == bindparam("pid"))
                .values(deleted=True, body="", milestone=None),
                [{"pid": ref.id} for ref in state.deleted],
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
                    for ref in state.deleted
                ],
            )
            await _erase_comments(conn, state.deleted)


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


# Communities, threads, posts ----------------------------------------------------------------


@dataclass(slots=True)
class ThreadRecord:
    id: str
    community_id: str
    owner_id: str
    owner_name: str
    title: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "community_id": self.community_id,
            "owner": {"user_id": self.owner_id, "name": self.owner_name},
            "title": self.title,
            "created_at": self.created_at,
        }


async def create_community(conn: AsyncConnection, name: str) -> dict[str, Any]:
    row = {"id": new_id(), "name": name, "created_at": now_iso()}
    await conn.execute(insert(COMMUNITY_T).values(**row))
    return row


async def get_community(conn: AsyncConnection, community_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(COMMUNITY_T).where(COMMUNITY_T.c.id == community_id))).first()
    return None if row is None else {"id": row.id, "name": row.name, "created_at": row.created_at}


async def list_communities(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(COMMUNITY_T).order_by(COMMUNITY_T.c.name, COMMUNITY_T.c.id))
    return [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in rows]


async def create_thread(
    conn: AsyncConnection, community_id: str, owner_id: str, owner_name: str, title: str
) -> ThreadRecord:
    thread = ThreadRecord(new_id(), community_id, owner_id, owner_name, title, now_iso())
    await conn.execute(
        insert(THREAD_T).values(
            id=thread.id,
            community_id=community_id,
            owner_id=owner_id,
            owner_name=owner_name,
            title=title,
            created_at=thread.created_at,
        )
    )
    return thread


async def get_thread(conn: AsyncConnection, thread_id: str) -> ThreadRecord | None:
    row = (await conn.execute(select(THREAD_T).where(THREAD_T.c.id == thread_id))).first()
    if row is None:
        return None
    return ThreadRecord(
        row.id, row.community_id, row.owner_id, row.owner_name, row.title, row.created_at
    )


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


def in_community(community_id: str) -> ColumnElement[bool]:
    return POST_T.c.community_id == community_id  # type: ignore[no-any-return]


def in_thread(thread_id: str) -> ColumnElement[bool]:
    return POST_T.c.thread_id == thread_id  # type: ignore[no-any-return]


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
    posts = [
        {
            "id": r.id,
            "cursor": r.feed_seq,
            "thread_id": r.thread_id,
            "thread_title": r.thread_title,
            "community_id": r.community_id,
            "author": {"user_id": r.author_id, "name": r.author_name},
            "body": r.body,
            "milestone": None if r.milestone is None else orjson.loads(r.milestone),
            "created_at": r.created_at,
            "reactions": counts.get(r.id, zero_counts()),
            "comments": comments.get(r.id, 0),
            "my_reactions": sorted(mine.get(r.id, ())),
        }
        for r in rows
    ]
    return posts, has_more


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


async def comment_counts(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = await conn.execute(
        select(COMMENT_T.c.post_id, func.count())
        .where(COMMENT_T.c.post_id.in_(ids))
        .group_by(COMMENT_T.c.post_id)
    )
    return {post_id: int(n) for post_id, n in rows}


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


async def page_comments(
    conn: AsyncConnection, post_id: str, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """A post's comments, oldest first, with ``feed_seq > after``; has_more."""
    query = select(COMMENT_T).where(COMMENT_T.c.post_id == post_id)
    if after is not None:
        query = query.where(COMMENT_T.c.feed_seq > after)
    rows = list(await conn.execute(query.order_by(COMMENT_T.c.feed_seq).limit(limit + 1)))
    comments = [
        {
            "id": r.id,
            "post_id": r.post_id,
            "cursor": r.feed_seq,
            "author": {"user_id": r.author_id, "name": r.author_name},
            "body": r.body,
            "created_at": r.created_at,
        }
        for r in rows[:limit]
    ]
    return comments, len(rows) > limit


async def deleted_posts(conn: AsyncConnection, ids: Iterable[str]) -> set[str]:
    ids = list(ids)
    if not ids:
        return set()
    rows = await conn.execute(select(POST_T.c.id).where(POST_T.c.id.in_(ids), POST_T.c.deleted))
    return {r.id for r in rows}


# Reactions and follows: plain rows, toggled ---------------------------------------------


async def set_reaction(
    conn: AsyncConnection, post_id: str, user_id: str, kind: str, active: bool
) -> bool:
    """Add or remove a reaction; True if that changed anything."""
    key = and_(
        REACTION_T.c.post_id == post_id, REACTION_T.c.user_id == user_id, REACTION_T.c.kind == kind
    )
    row = {"post_id": post_id, "user_id": user_id, "kind": kind}
    changed = await _toggle(conn, REACTION_T, key, row, active)
    if changed:  # a new mark, replacing any older one (an upsert: reactions race)
        mark = {"post_id": post_id, "mark": new_id(), "marked_at": time.time()}
        dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(PENDING_T).values(**mark)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[PENDING_T.c.post_id],
                set_={"mark": stmt.excluded.mark, "marked_at": stmt.excluded.marked_at},
            )
        )
    return changed


async def pending_reactions(conn: AsyncConnection, older_than: float) -> list[str]:
    """Posts marked before ``older_than`` (Unix time) whose ``feed.reaction`` is still owed."""
    rows = await conn.execute(
        select(PENDING_T.c.post_id)
        .where(PENDING_T.c.marked_at < older_than)
        .order_by(PENDING_T.c.marked_at)
        .limit(1000)
    )
    return [r.post_id for r in rows]


async def set_follow(
    conn: AsyncConnection, user_id: str, kind: str, target_id: str, active: bool
) -> bool:
    key = and_(
        FOLLOW_T.c.user_id == user_id, FOLLOW_T.c.kind == kind, FOLLOW_T.c.target_id == target_id
    )
    row = {"user_id": user_id, "kind": kind, "target_id": target_id}
    return await _toggle(conn, FOLLOW_T, key, row, active)


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


async def lock_follows(conn: AsyncConnection, user_id: str) -> None:
    """Serialize one user's follow changes until the transaction ends, so the cap is
    counted exactly (SQLite's writes are serialized already)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("follows:" + user_id))))


async def follow_count(conn: AsyncConnection, user_id: str) -> int:
    query = select(func.count()).select_from(FOLLOW_T).where(FOLLOW_T.c.user_id == user_id)
    return int((await conn.execute(query)).scalar() or 0)


async def is_following(conn: AsyncConnection, user_id: str, kind: str, target_id: str) -> bool:
    query = select(FOLLOW_T.c.user_id).where(
        FOLLOW_T.c.user_id == user_id, FOLLOW_T.c.kind == kind, FOLLOW_T.c.target_id == target_id
    )
    return (await conn.execute(query)).first() is not None


async def _toggle(
    conn: AsyncConnection, table: Any, key: ColumnElement[bool], row: dict[str, str], active: bool
) -> bool:
    if not active:
        result = await conn.execute(table.delete().where(key))
        return bool(result.rowcount)
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent twin request changes nothing twice.
    if conn.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).values(**row).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(**row).on_conflict_do_nothing()
    result = await conn.execute(stmt)
    return bool(result.rowcount)


async def load_follows(conn: AsyncConnection, user_id: str) -> Follows:
    follows = Follows()
    rows = await conn.execute(
        select(FOLLOW_T.c.kind, FOLLOW_T.c.target_id).where(FOLLOW_T.c.user_id == user_id)
    )
    for kind, target in rows:
        if kind in FOLLOW_KINDS:
            follows.of_kind(kind).add(target)
    return follows
