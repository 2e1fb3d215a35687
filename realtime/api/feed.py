"""REST for the community feed: communities, growth threads, posts, comments, reactions,
follows, the paged feed, and sharing a verified milestone from a room.

Every post, comment, reaction count and deletion is an event on the ``feed`` stream,
appended through the writer (``FeedReducer`` writes the rows in the same transaction); its
seq is the cursor of ``before``, ``since`` and the event stream's ``id:``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth import Principal
from ..checklist.store import load_checklist
from ..feed.limits import UserLimits, retry_after_header
from ..feed.model import (
    COMMENT,
    COMMENT_DELETE,
    DELETE,
    FEED_STREAM,
    FOLLOW_KINDS,
    MAX_COMMENT,
    MAX_ID,
    MAX_IDEMPOTENCY_KEY,
    MAX_NAME,
    MAX_POST,
    MAX_TITLE,
    POST,
    REACTION_KINDS,
    new_id,
)
from ..feed.queries import (
    follow_count,
    follow_target_exists,
    followed_by,
    get_comment_author,
    get_community,
    get_post_ref,
    get_thread,
    in_community,
    in_thread,
    is_following,
    list_communities,
    list_threads,
    load_follows,
    page_comments,
    page_posts,
    with_id,
)
from ..feed.rows import create_community, create_thread, lock_follows, set_follow, set_reaction
from ..feed.service import FilterError
from ..persistence.events import AppendResult, NewEvent, Rejected, last_seqs
from ..protocol import has_control
from ..state import State
from . import schema
from .common import (
    ApiError,
    caller,
    int_param,
    json_body,
    json_response,
    require_service,
    state_of,
    text,
)
from .rooms import visible_room

PAGE_DEFAULT = 20
PAGE_MAX = 100
REJECTED_STATUS = {"not_found": 404, "conflict": 409, "forbidden": 403, "invalid": 400}


# Helpers ----------------------------------------------------------------------------------


async def _limit(state: State, limits: UserLimits, principal: Principal, what: str) -> None:
    wait = await limits.take_shared(principal.user_id)
    if wait is not None:
        state.metrics.inc("menteo_limit_hits_total", f"feed_{what}_rate")
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what}: try again in {wait:.1f} s",
            {"Retry-After": retry_after_header(wait)},
        )


def _idempotency_key(request: Request) -> str | None:
    """``Idempotency-Key``: a retried write with the same key creates nothing new."""
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400, "invalid", f"'Idempotency-Key' must be 1..{MAX_IDEMPOTENCY_KEY} characters"
        )
    return key


async def _append(state: State, item: NewEvent) -> AppendResult:
    try:
        result = await state.writer.append(item)
    except Rejected as exc:
        raise ApiError(REJECTED_STATUS.get(exc.code, 400), exc.code, exc.message) from None
    except Exception:
        raise ApiError(503, "unavailable", "not stored; send it again") from None
    if result.event.type != item.type:
        raise ApiError(409, "conflict", "this Idempotency-Key was used for another request")
    return result


def _page(request: Request) -> tuple[int | None, int]:
    before = int_param(request, "before", None, lo=1, hi=2**62)
    limit = int_param(request, "limit", PAGE_DEFAULT, lo=1, hi=PAGE_MAX)
    assert limit is not None
    return before, limit


async def _posts_page(
    state: State, where: ColumnElement[bool], before: int | None, limit: int, viewer: str
) -> dict[str, Any]:
    """A page of posts, newest first, and ``cursor``: the feed's seq the page reflects (open
    the live feed with ``since=cursor`` to miss nothing after it)."""
    async with state.db.snapshot() as db:
        cursor = (await last_seqs(db, [FEED_STREAM])).get(FEED_STREAM, 0)
        posts, has_more = await page_posts(db, where, before=before, limit=limit, viewer=viewer)
    return {
        "posts": posts,
        "has_more": has_more,
        "next_before": posts[-1]["cursor"] if has_more and posts else None,
        "cursor": cursor,
    }


async def _new_post(
    state: State,
    principal: Principal,
    thread_id: str,
    body: str,
    key: str | None,
    milestone: dict[str, Any] | None = None,
) -> Response:
    async with state.db.read() as db:
        thread = await get_thread(db, thread_id)
    if thread is None:
        raise ApiError(404, "not_found", "no such thread")
    if thread.owner_id != principal.user_id:
        raise ApiError(403, "forbidden", "only the thread's owner posts in it")
    await _limit(state, state.feed.post_limits, principal, "posts")
    post = {
        "id": new_id(),
        "thread_id": thread.id,
        "thread_title": thread.title,
        "community_id": thread.community_id,
        "body": body,
        "milestone": milestone,
    }
    item = NewEvent(FEED_STREAM, POST, principal.user_id, principal.name, key, {"post": post})
    result = await _append(state, item)
    return json_response(result.event.data["post"], 201 if result.created else 200)


# Communities and threads ------------------------------------------------------------------


async def new_community(request: Request) -> Response:
    require_service(caller(request))
    name = text(await json_body(request), "name", MAX_NAME)
    async with state_of(request).db.write() as db:
        community = await create_community(db, name)
    return json_response(community, 201)


async def communities(request: Request) -> Response:
    caller(request)
    async with state_of(request).db.read() as db:
        return json_response({"communities": await list_communities(db)})


async def new_thread(request: Request) -> Response:
    principal = caller(request)
    data = await json_body(request)
    title = text(data, "title", MAX_TITLE)
    community_id = text(data, "community_id", 64)
    state = state_of(request)
    async with state.db.read() as db:
        community = await get_community(db, community_id)
    if community is None:
        raise ApiError(404, "not_found", "no such community")
    await _limit(state, state.feed.post_limits, principal, "posts")
    async with state.db.write() as db:
        thread = await create_thread(db, community_id, principal.user_id, principal.name, title)
    return json_response(thread.as_dict(), 201)


async def threads(request: Request) -> Response:
    """``owner=USER`` (``me``: the caller) and optionally ``community=ID``: that user's
    threads, newest first (a page may offer them as the places its reader posts in)."""
    principal = caller(request)
    owner = request.query_params.get("owner", "")
    if owner == "me":
        owner = principal.user_id
    community = request.query_params.get("community")
    for name, value in (("owner", owner), ("community", community)):
        if value is not None and (not 1 <= len(value) <= MAX_ID or has_control(value)):
            raise ApiError(
                400, "invalid", f"'{name}' must be 1..{MAX_ID} characters, no control character"
            )
    limit = int_param(request, "limit", PAGE_MAX, lo=1, hi=PAGE_MAX)
    assert limit is not None
    async with state_of(request).db.read() as db:
        found, has_more = await list_threads(db, owner, community, limit)
    return json_response({"threads": found, "has_more": has_more})


async def show_thread(request: Request) -> Response:
    principal = caller(request)
    state = state_of(request)
    async with state.db.read() as db:
        thread = await get_thread(db, request.path_params["thread_id"])
    if thread is None:
        raise ApiError(404, "not_found", "no such thread")
    before, limit = _page(request)
    page = await _posts_page(state, in_thread(thread.id), before, limit, principal.user_id)
    return json_response(thread.as_dict() | page)


# Posts and comments -----------------------------------------------------------------------


async def new_post(request: Request) -> Response:
    principal = caller(request)
    key = _idempotency_key(request)
    body = text(await json_body(request), "body", MAX_POST)
    return await _new_post(
        state_of(request), principal, request.path_params["thread_id"], body, key
    )


async def show_post(request: Request) -> Response:
    """A post and its comments, oldest first (``after=CURSOR`` for the next page)."""
    principal = caller(request)
    post_id = request.path_params["post_id"]
    after = int_param(request, "after", None, lo=0, hi=2**62)
    limit = int_param(request, "limit", 50, lo=1, hi=PAGE_MAX)
    assert limit is not None
    async with state_of(request).db.snapshot() as db:
        posts, _ = await page_posts(
            db, with_id(post_id), before=None, limit=1, viewer=principal.user_id
        )
        if not posts:
            raise ApiError(404, "not_found", "no such post")
        comments, has_more = await page_comments(db, post_id, after, limit)
    return json_response({"post": posts[0], "comments": comments, "has_more": has_more})


async def delete_post(request: Request) -> Response:
    principal = caller(request)
    state = state_of(request)
    post_id = request.path_params["post_id"]
    if len(post_id) > MAX_ID or has_control(post_id):  # no such id is ever made (uuid hex)
        raise ApiError(404, "not_found", "no such post")
    async with state.db.read() as db:
        post = await get_post_ref(db, post_id)
    if post is None:
        raise ApiError(404, "not_found", "no such post")
    if post.owner_id != principal.user_id:
        raise ApiError(403, "forbidden", "only the thread's owner deletes its posts")
    item = NewEvent(
        FEED_STREAM, DELETE, principal.user_id, principal.name, None, {"post_id": post_id}
    )
    result = await _append(state, item)
    return json_response({"id": post_id, "deleted": True, "cursor": result.event.seq})


async def new_comment(request: Request) -> Response:
    principal = caller(request)
    key = _idempotency_key(request)
    body = text(await json_body(request), "body", MAX_COMMENT)
    state = state_of(request)
    post_id = request.path_params["post_id"]
    async with state.db.read() as db:
        post = await get_post_ref(db, post_id)
    if post is None:
        raise ApiError(404, "not_found", "no such post")
    await _limit(state, state.feed.comment_limits, principal, "comments")
    data = {"post_id": post_id, "comment_id": new_id(), "body": body}
    item = NewEvent(FEED_STREAM, COMMENT, principal.user_id, principal.name, key, data)
    result = await _append(state, item)
    return json_response(result.event.data["comment"], 201 if result.created else 200)


async def delete_comment(request: Request) -> Response:
    """The comment's author deletes it; the feed hears ``feed.comment.delete``."""
    principal = caller(request)
    state = state_of(request)
    post_id, comment_id = request.path_params["post_id"], request.path_params["comment_id"]
    for part in (post_id, comment_id):
        if len(part) > MAX_ID or has_control(part):  # no such id is ever made (uuid hex)
            raise ApiError(404, "not_found", "no such comment")
    async with state.db.read() as db:
        author = await get_comment_author(db, post_id, comment_id)
    if author is None:
        raise ApiError(404, "not_found", "no such comment")
    if author != principal.user_id:
        raise ApiError(403, "forbidden", "only a comment's author deletes it")
    data = {"post_id": post_id, "comment_id": comment_id}
    item = NewEvent(FEED_STREAM, COMMENT_DELETE, principal.user_id, principal.name, None, data)
    result = await _append(state, item)
    return json_response(
        {"id": comment_id, "post_id": post_id, "deleted": True, "cursor": result.event.seq}
    )


# Reactions and follows --------------------------------------------------------------------


async def react(request: Request) -> Response:
    """PUT adds the caller's reaction of a kind, DELETE removes it; both are idempotent.
    The feed learns of it through one aggregated ``feed.reaction`` event per burst."""
    principal = caller(request)
    post_id, kind = request.path_params["post_id"], request.path_params["kind"]
    if kind not in REACTION_KINDS:
        raise ApiError(400, "invalid", f"a reaction is one of {', '.join(REACTION_KINDS)}")
    active = request.method == "PUT"
    state = state_of(request)
    await _limit(state, state.feed.reaction_limits, principal, "reactions")
    async with state.db.write() as db:
        post = await get_post_ref(db, post_id)
        if post is None:
            raise ApiError(404, "not_found", "no such post")
        changed = await set_reaction(db, post_id, principal.user_id, kind, active)
    if changed:
        state.feed.reactions.touch(post_id)
    return json_response({"post_id": post_id, "kind": kind, "reacted": active, "changed": changed})


NO_TARGET = {
    "communities": "no such community",
    "threads": "no such thread",
    "users": "no such user: a user is known once a member of a room or a thread's owner",
}


async def follow(request: Request) -> Response:
    """PUT follows a community, a thread or a user (their threads); DELETE unfollows.
    Open "following" feed connections of the caller apply it at once.

    Only what exists can be followed (a user exists once the data names them: a member of
    a room, or the owner of a growth thread), and at most ``MENTEO_MAX_FOLLOWS`` at once."""
    principal = caller(request)
    kind, target = request.path_params["kind"], request.path_params["target_id"]
    if kind not in FOLLOW_KINDS:
        raise ApiError(404, "not_found", f"one follows {', '.join(FOLLOW_KINDS)}")
    if not 1 <= len(target) <= MAX_ID or has_control(target):
        raise ApiError(
            400,
            "invalid",
            f"the id must be 1..{MAX_ID} characters, no control character or lone surrogate",
        )
    active = request.method == "PUT"
    state = state_of(request)
    await _limit(state, state.feed.follow_limits, principal, "follows")
    cap = state.settings.max_follows
    async with state.db.write() as db:
        if active:
            if not await follow_target_exists(db, kind, target):
                raise ApiError(404, "not_found", NO_TARGET[kind])
            await lock_follows(db, principal.user_id)  # concurrent PUTs count one by one
            if await follow_count(db, principal.user_id) >= cap and not await is_following(
                db, principal.user_id, kind, target
            ):
                state.metrics.inc("menteo_limit_hits_total", "feed_follows_cap")
                raise ApiError(
                    409,
                    "too_many_follows",
                    f"at most {cap} follows (communities, threads and users together): "
                    "unfollow one first",
                )
        changed = await set_follow(db, principal.user_id, kind, target, active)
    if changed:
        state.feed.follow_changed(principal.user_id, kind, target, active)
    return json_response(
        {"kind": kind, "target_id": target, "following": active, "changed": changed}
    )


async def follows(request: Request) -> Response:
    principal = caller(request)
    async with state_of(request).db.read() as db:
        return json_response((await load_follows(db, principal.user_id)).as_dict())


# The feed ---------------------------------------------------------------------------------


async def feed(request: Request) -> Response:
    """``community=ID`` or ``following=1``; ``before=CURSOR``, ``limit=N``; newest first."""
    principal = caller(request)
    state = state_of(request)
    try:
        filter_ = await state.feed.resolve_filter(request.query_params)
    except FilterError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    where = (
        in_community(filter_.community)
        if filter_.community is not None
        else followed_by(principal.user_id)
    )
    before, limit = _page(request)
    return json_response(await _posts_page(state, where, before, limit, principal.user_id))


# Milestones -------------------------------------------------------------------------------


async def share_milestone(request: Request) -> Response:
    """The room's mentee shares a step their mentor verified, as a post in their own thread.

    Only the step's title, the mentor's name and the verification time leave the room."""
    principal = caller(request)
    room = await visible_room(request, principal)
    member = room.member(principal.user_id)
    if member is None or member.role != "mentee":
        raise ApiError(403, "forbidden", "only the room's mentee shares their milestones")
    key = _idempotency_key(request)
    data = await json_body(request)
    thread_id = text(data, "thread_id", 64)
    body = text(data, "body", MAX_POST) if data.get("body") is not None else None
    state = state_of(request)
    async with state.db.snapshot() as db:
        checklist = await load_checklist(db, room.id)
    item = checklist.items.get(request.path_params["item_id"])
    if item is None or item.removed:
        raise ApiError(404, "not_found", "no such checklist item")
    if not item.verified or item.verified_by is None:
        raise ApiError(409, "conflict", "only a step the mentor verified can be shared")
    # The words the mentor verified, stored with the verification (a rename clears it).
    title = item.verified_title or item.title
    mentor = room.member(item.verified_by)
    milestone = {
        "title": title,
        "verified_by": mentor.name if mentor is not None else item.verified_by,
        "verified_at": item.verified_at,
    }
    return await _new_post(state, principal, thread_id, body or title, key, milestone)


routes = [
    Route("/api/communities", new_community, methods=["POST"]),
    Route("/api/communities", communities, methods=["GET"]),
    Route("/api/threads", new_thread, methods=["POST"]),
    Route("/api/threads", threads, methods=["GET"]),
    Route("/api/threads/{thread_id}", show_thread, methods=["GET"]),
    Route("/api/threads/{thread_id}/posts", new_post, methods=["POST"]),
    Route("/api/posts/{post_id}", show_post, methods=["GET"]),
    Route("/api/posts/{post_id}", delete_post, methods=["DELETE"]),
    Route("/api/posts/{post_id}/comments", new_comment, methods=["POST"]),
    Route("/api/posts/{post_id}/comments/{comment_id}", delete_comment, methods=["DELETE"]),
    Route("/api/posts/{post_id}/reactions/{kind}", react, methods=["PUT", "DELETE"]),
    Route("/api/follows", follows, methods=["GET"]),
    Route("/api/follows/{kind}/{target_id}", follow, methods=["PUT", "DELETE"]),
    Route("/api/feed", feed, methods=["GET"]),
    Route("/api/rooms/{room_id}/checklist/{item_id}/share", share_milestone, methods=["POST"]),
]


# The OpenAPI description of these routes (api/schema.py) ----------------------------------

TEXT = schema.string()
CURSOR = schema.integer(1)
COMMUNITY = schema.component(
    "Community", schema.obj({"id": TEXT, "name": TEXT, "created_at": TEXT})
)
THREAD = {
    "id": TEXT,
    "community_id": TEXT,
    "owner": schema.AUTHOR,
    "title": TEXT,
    "created_at": TEXT,
}
POST_SCHEMA = schema.component(
    "Post",
    schema.obj(
        {"id": TEXT, "cursor": CURSOR, "thread_id": TEXT, "thread_title": TEXT}
        | {"community_id": TEXT, "author": schema.AUTHOR, "body": TEXT}
        | {"milestone": schema.nullable(schema.ANY_OBJECT), "created_at": TEXT}
        | {"reactions": {"type": "object", "additionalProperties": schema.integer(0)}}
        | {"comments": schema.integer(0)},
        {"my_reactions": schema.array(schema.enum(*REACTION_KINDS))},
    ),
)
COMMENT_SCHEMA = schema.component(
    "Comment",
    schema.obj(
        {"id": TEXT, "post_id": TEXT, "cursor": CURSOR, "author": schema.AUTHOR}
        | {"body": TEXT, "created_at": TEXT}
    ),
)
POSTS_PAGE = {
    "posts": schema.array(POST_SCHEMA),
    "has_more": schema.BOOLEAN,
    "next_before": schema.nullable(CURSOR),
    "cursor": schema.SEQ,
}
BEFORE = schema.Param("before", schema.integer(1, 2**62), "posts with a cursor below this")
LIMIT = schema.Param("limit", schema.integer(1, PAGE_MAX), f"default {PAGE_DEFAULT}")
FOLLOW_TARGET = {"kind": schema.enum(*FOLLOW_KINDS), "target_id": schema.string(1, MAX_ID)}
FOLLOW = schema.obj(
    {"kind": schema.enum(*FOLLOW_KINDS), "target_id": TEXT}
    | {"following": schema.BOOLEAN, "changed": schema.BOOLEAN}
)
REACTION = schema.obj(
    {"post_id": TEXT, "kind": schema.enum(*REACTION_KINDS)}
    | {"reacted": schema.BOOLEAN, "changed": schema.BOOLEAN}
)


def _twice(methods: tuple[str, str], path: str, summary: str, **kw: Any) -> list[schema.Op]:
    return [schema.Op(method, path, f"{summary} ({method})", **kw) for method in methods]


operations = [
    schema.Op(
        "POST",
        "/api/communities",
        "Create a community",
        {201: COMMUNITY},
        auth="service",
        body=schema.obj({"name": schema.string(1, MAX_NAME)}),
    ),
    schema.Op(
        "GET",
        "/api/communities",
        "Every community",
        {200: schema.obj({"communities": schema.array(COMMUNITY)})},
    ),
    schema.Op(
        "POST",
        "/api/threads",
        "Start a growth thread (the caller owns it)",
        {201: schema.obj(THREAD)},
        body=schema.obj(
            {"title": schema.string(1, MAX_TITLE), "community_id": schema.string(1, 64)}
        ),
        errors=(404, 429),
    ),
    schema.Op(
        "GET",
        "/api/threads",
        "A user's growth threads, newest first",
        {
            200: schema.obj(
                {"threads": schema.array(schema.obj(THREAD)), "has_more": schema.BOOLEAN}
            )
        },
        query=(
            schema.Param("owner", schema.string(1, MAX_ID), "a user id, or `me`", required=True),
            schema.Param("community", schema.string(1, MAX_ID), "only this community's"),
            schema.Param("limit", schema.integer(1, PAGE_MAX), f"default {PAGE_MAX}"),
        ),
        errors=(400,),
    ),
    schema.Op(
        "GET",
        "/api/threads/{thread_id}",
        "A thread and a page of its posts, newest first",
        {200: schema.obj(THREAD | POSTS_PAGE)},
        query=(BEFORE, LIMIT),
        errors=(404,),
    ),
    schema.Op(
        "POST",
        "/api/threads/{thread_id}/posts",
        "Post in one's own thread",
        {201: POST_SCHEMA, 200: POST_SCHEMA},
        body=schema.obj({"body": schema.string(1, MAX_POST)}),
        idempotency_key=True,
        errors=(403, 404, 409, 429),
    ),
    schema.Op(
        "GET",
        "/api/posts/{post_id}",
        "A post and a page of its comments, oldest first",
        {
            200: schema.obj(
                {"post": POST_SCHEMA, "comments": schema.array(COMMENT_SCHEMA)}
                | {"has_more": schema.BOOLEAN}
            )
        },
        query=(
            schema.Param("after", schema.integer(0, 2**62), "comments after this cursor"),
            schema.Param("limit", schema.integer(1, PAGE_MAX), "default 50"),
        ),
        errors=(404,),
    ),
    schema.Op(
        "DELETE",
        "/api/posts/{post_id}",
        "Delete a post of one's own thread",
        {200: schema.obj({"id": TEXT, "deleted": {"const": True}, "cursor": CURSOR})},
        errors=(400, 403, 404, 409),
    ),
    schema.Op(
        "POST",
        "/api/posts/{post_id}/comments",
        "Comment on a post",
        {201: COMMENT_SCHEMA, 200: COMMENT_SCHEMA},
        body=schema.obj({"body": schema.string(1, MAX_COMMENT)}),
        idempotency_key=True,
        errors=(404, 409, 429),
    ),
    schema.Op(
        "DELETE",
        "/api/posts/{post_id}/comments/{comment_id}",
        "Delete one's own comment",
        {
            200: schema.obj(
                {"id": TEXT, "post_id": TEXT, "deleted": {"const": True}, "cursor": CURSOR}
            )
        },
        errors=(403, 404),
    ),
    *_twice(
        ("PUT", "DELETE"),
        "/api/posts/{post_id}/reactions/{kind}",
        "Add or remove the caller's reaction",
        responses={200: REACTION},
        errors=(400, 404, 429),
        path_params={"kind": schema.enum(*REACTION_KINDS)},
    ),
    schema.Op(
        "GET",
        "/api/follows",
        "What the caller follows",
        {200: schema.obj({kind: schema.array(TEXT) for kind in FOLLOW_KINDS})},
    ),
    *_twice(
        ("PUT", "DELETE"),
        "/api/follows/{kind}/{target_id}",
        "Follow or unfollow a community, a thread or a user",
        responses={200: FOLLOW},
        errors=(400, 404, 409, 429),
        path_params=FOLLOW_TARGET,
    ),
    schema.Op(
        "GET",
        "/api/feed",
        "A page of the feed, newest first: `community=ID` or `following=1`",
        {200: schema.obj(POSTS_PAGE)},
        query=(
            schema.Param("community", schema.string(1), "one community's posts"),
            schema.Param("following", schema.enum("1"), "what the caller follows"),
            BEFORE,
            LIMIT,
        ),
        errors=(404,),
    ),
    schema.Op(
        "POST",
        "/api/rooms/{room_id}/checklist/{item_id}/share",
        "Share a verified step as a post in one's own thread (the room's mentee)",
        {201: POST_SCHEMA, 200: POST_SCHEMA},
        body=schema.obj(
            {"thread_id": schema.string(1, 64)},
            {"body": schema.nullable(schema.string(1, MAX_POST))},
        ),
        idempotency_key=True,
        errors=(403, 404, 409, 429),
    ),
]
