"""REST for chat: delete a message (service), search a room, search all of the caller's."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth import Principal
from ..feed.limits import UserLimits, retry_after_header
from ..persistence.chat import DELETED, AlreadyDeleted
from ..persistence.events import NewEvent, Rejected
from ..persistence.search import member_rooms, room_access, search
from ..persistence.search_base import Hit, QueryError, query_words
from ..protocol import MAX_SEQ
from ..state import State
from .common import ApiError, caller, int_param, json_response, require_service, state_of
from .rooms import visible_room

SEARCH_DEFAULT = 20
SEARCH_MAX = 100


async def delete_message(request: Request) -> Response:
    """``DELETE /api/rooms/{id}/messages/{seq}``: erase a message (a service token)."""
    principal = caller(request)
    require_service(principal)
    room = await visible_room(request, principal)
    seq = _seq(request.path_params["seq"])
    item = NewEvent(
        room.id,
        DELETED,
        principal.user_id,
        principal.name,
        None,
        {"target": seq, "by": principal.user_id},
        moderator=True,
    )
    try:
        await state_of(request).writer.append(item)
    except AlreadyDeleted:
        pass  # what was asked holds: the message is erased
    except Rejected as exc:
        raise ApiError(404 if exc.code == "not_found" else 403, exc.code, exc.message) from None
    except Exception:
        raise ApiError(503, "unavailable", "not deleted; send it again") from None
    return Response(status_code=204)


async def search_room(request: Request) -> Response:
    """``GET /api/rooms/{id}/search?q=TEXT[&before=SEQ][&limit=N]``."""
    principal = caller(request)
    state = state_of(request)
    room_id = await _room(state, request.path_params["room_id"], principal)
    words, limit = _query(request, state, principal)
    before = int_param(request, "before", None, lo=1, hi=MAX_SEQ)
    hits, has_more = await _search(state, [room_id], words, before, limit, across=False)
    return json_response({"results": [_result(h) for h in hits], "has_more": has_more})


async def search_all(request: Request) -> Response:
    """``GET /api/search?q=TEXT[&limit=N]``: every room the caller is a member of."""
    principal = caller(request)
    if principal.is_service:
        raise ApiError(403, "forbidden", "a service token searches one room at a time")
    state = state_of(request)
    words, limit = _query(request, state, principal)
    rooms = await member_rooms(state.db, principal.user_id)
    hits, has_more = await _search(state, rooms, words, None, limit, across=True)
    results = [_result(h) | {"room_id": h.stream} for h in hits]
    return json_response({"results": results, "has_more": has_more})


async def _room(state: State, room_id: str, principal: Principal) -> str:
    """The room, if the caller may search it (404, 403): one read, as searches are many."""
    access = await room_access(
        state.db, room_id, None if principal.is_service else principal.user_id
    )
    if access is None:
        raise ApiError(404, "not_found", "no such room")
    if not access:
        raise ApiError(403, "forbidden", "not a member of this room")
    return room_id


def _seq(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SEQ:
        raise ApiError(404, "not_found", "no such message")
    return int(raw)


def _query(request: Request, state: State, principal: Principal) -> tuple[list[str], int]:
    """The query's words and the page size; 400 for a bad one, 429 over the user's rate."""
    try:
        words = query_words(request.query_params.get("q", ""))
    except QueryError as exc:
        raise ApiError(400, "invalid", str(exc)) from None
    limit = int_param(request, "limit", SEARCH_DEFAULT, lo=1, hi=SEARCH_MAX)
    assert limit is not None
    if not principal.is_service:
        wait = _limits(request, state).take(principal.user_id)
        if wait is not None:
            state.metrics.inc("menteo_limit_hits_total", "search_rate")
            raise ApiError(
                429,
                "rate_limited",
                f"too many searches: try again in {wait:.1f} s",
                {"Retry-After": retry_after_header(wait)},
            )
    return words, limit


def _limits(request: Request, state: State) -> UserLimits:
    """This app's search budget per user, made on first use from its settings."""
    limits: UserLimits | None = getattr(request.app.state, "search_limits", None)
    if limits is None:
        settings = state.settings
        limits = UserLimits(settings.search_rate_per_second, settings.search_burst)
        request.app.state.search_limits = limits
    return limits


async def _search(
    state: State,
    rooms: list[str],
    words: list[str],
    before: int | None,
    limit: int,
    *,
    across: bool,
) -> tuple[list[Hit], bool]:
    if not rooms:
        return [], False
    try:
        return await search(state.db, rooms, words, before=before, limit=limit, across=across)
    except ApiError:
        raise
    except Exception:
        raise ApiError(503, "unavailable", "search is unavailable; try again") from None


def _result(hit: Hit) -> dict[str, Any]:
    return {
        "seq": hit.seq,
        "id": hit.client_id,
        "author": {"user_id": hit.author_id, "name": hit.author_name},
        "body": hit.data.get("body", ""),
        "ts": hit.ts,
        "snippet": hit.snippet,
    }


routes = [
    Route("/api/rooms/{room_id}/messages/{seq}", delete_message, methods=["DELETE"]),
    Route("/api/rooms/{room_id}/search", search_room, methods=["GET"]),
    Route("/api/search", search_all, methods=["GET"]),
]
