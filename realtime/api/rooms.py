"""REST for the platform's backend: rooms, members and history."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..access.members import ADDED, EXISTS, MISSING, REMOVED, ROOM_UPDATED, UPDATED
from ..auth import Principal
from ..persistence.events import SYSTEM_KIND, NewEvent, Rejected, StoredEvent
from ..persistence.rooms import (
    MAX_MEMBERS,
    ROLES,
    MemberRecord,
    RoomRecord,
    create_room,
    get_room,
    list_rooms,
)
from ..protocol import FrameError, chat_body, client_id
from ..reads.digest import digest_sync
from ..reads.queries import marker_sync, newest_first, rooms_read_sync
from ..state import State
from ..streams.history import page_before
from . import schema
from .common import (
    ApiError,
    caller,
    int_param,
    json_body,
    json_response,
    label,
    require_service,
    state_of,
    text,
)

CHAT_TYPES = ("chat.message",)
MAX_TITLE = 200
PUT_TRIES = 3  # a PUT that races another change of the same member looks again this often


async def create(request: Request) -> Response:
    principal = caller(request)
    require_service(principal)
    data = await json_body(request)
    title = text(data, "title", MAX_TITLE)
    raw_members = data.get("members")
    if not isinstance(raw_members, list) or len(raw_members) > MAX_MEMBERS:
        raise ApiError(400, "invalid", f"'members' must be a list of at most {MAX_MEMBERS}")
    members: list[MemberRecord] = []
    for raw in raw_members:
        if not isinstance(raw, dict):
            raise ApiError(400, "invalid", "each member is an object")
        role = raw.get("role")
        if role not in ROLES:
            raise ApiError(400, "invalid", f"a member's 'role' is one of {', '.join(ROLES)}")
        members.append(MemberRecord(text(raw, "user_id", 128), text(raw, "name", 128), role))
    if len({m.user_id for m in members}) != len(members):
        raise ApiError(400, "invalid", "a user is listed twice in 'members'")
    state = state_of(request)
    async with state.db.write() as db:
        room = await create_room(db, title, members)
    state.inbox.room_changed(room.id)  # a room added to each member's inbox
    return json_response(room.as_dict() | {"last_seq": 0}, 201)


async def index(request: Request) -> Response:
    """A member's rooms with what they have read, newest activity first; a service's: every
    room, as created."""
    principal = caller(request)
    state = state_of(request)
    if principal.is_service:
        async with state.db.read() as db:
            return json_response({"rooms": await list_rooms(db, None)})
    reads = await state.db.run(rooms_read_sync, principal.user_id, snapshot=True)
    return json_response({"rooms": newest_first([read.summary() for read in reads])})


async def visible_room(request: Request, principal: Principal) -> RoomRecord:
    """The room in the path, if the caller may see it (404 and 403 otherwise)."""
    async with state_of(request).db.read() as db:
        room = await get_room(db, request.path_params["room_id"])
    if room is None:
        raise ApiError(404, "not_found", "no such room")
    if not principal.is_service and room.member(principal.user_id) is None:
        raise ApiError(403, "forbidden", "not a member of this room")
    return room


async def show(request: Request) -> Response:
    room = await visible_room(request, caller(request))
    return json_response(room.as_dict())


async def messages(request: Request) -> Response:
    room = await visible_room(request, caller(request))
    before = int_param(request, "before", None, lo=1, hi=2**62)
    limit = int_param(request, "limit", 50, lo=1, hi=100)
    assert limit is not None
    events, has_more = await page_before(state_of(request).db, room.id, CHAT_TYPES, before, limit)
    page: dict[str, Any] = {"messages": [e.frame() for e in events], "has_more": has_more}
    return json_response(page)


async def digest(request: Request) -> Response:
    """What the others did in the room after ``since`` (default: the caller's marker; a
    service, which has none, from the beginning)."""
    principal = caller(request)
    room = await visible_room(request, principal)
    since = int_param(request, "since", None, lo=0, hi=2**62)
    state = state_of(request)
    user = principal.user_id
    limit = state.settings.digest_max_events

    def read(conn: Any) -> dict[str, Any]:
        start = since
        if start is None:
            start = 0 if principal.is_service else marker_sync(conn, room.id, user)
        return digest_sync(conn, room.id, user, start, limit, state.windows)

    return json_response(await state.db.run(read, snapshot=True))


async def post_message(request: Request) -> Response:
    """A system message from the platform's backend: a ``chat.message`` with ``kind:
    "system"``, validated like ``chat.send`` and idempotent by its ``id`` like it (201 when
    stored, 200 with the stored message when the id was already used)."""
    principal = caller(request)
    require_service(principal)
    room = await visible_room(request, principal)
    data = await json_body(request)
    try:
        cid = client_id(data)
        body = chat_body(data, cid)
    except FrameError as exc:
        raise ApiError(400, "invalid", exc.message) from None
    item = NewEvent(
        room.id,
        "chat.message",
        principal.user_id,
        principal.name,
        cid,
        {"body": body, "kind": SYSTEM_KIND},
    )
    try:
        result = await state_of(request).writer.append(item)
    except Rejected as exc:  # the room refused it (its state, not the request)
        raise ApiError(409, exc.code, exc.message) from None
    except Exception:
        raise ApiError(503, "unavailable", "not stored; send it again with the same id") from None
    event = result.event
    if event.type != item.type or event.data.get("kind") != SYSTEM_KIND:
        raise ApiError(409, "conflict", "this id is used by another kind of event")
    return json_response(event.frame(), 201 if result.created else 200)


async def _change(
    state: State, principal: Principal, room_id: str, kind: str, data: dict[str, Any]
) -> StoredEvent:
    """Append a change of the room (a durable event on its stream, checked and applied to
    the room's rows by ``access.members.RoomReducer`` in the same transaction)."""
    try:
        result = await state.writer.append(
            NewEvent(room_id, kind, principal.user_id, principal.name, None, data)
        )
    except Rejected:
        raise
    except Exception:
        raise ApiError(503, "unavailable", "the change was not stored; send it again") from None
    return result.event


async def _room(state: State, room_id: str) -> RoomRecord:
    async with state.db.read() as db:
        room = await get_room(db, room_id)
    if room is None:
        raise ApiError(404, "not_found", "no such room")
    return room


async def put_member(request: Request) -> Response:
    """Add a member (201) or change one's name or role (200); ``member.added`` or
    ``member.updated`` on the room's stream. The same name and role again: 200, no event."""
    principal = caller(request)
    require_service(principal)
    user_id = label(request.path_params["user_id"], "user_id", 128)
    data = await json_body(request)
    name = label(data.get("name"), "name", 128).strip()
    if not name:
        raise ApiError(400, "invalid", "'name' must not be blank")
    role = data.get("role")
    if role not in ROLES:
        raise ApiError(400, "invalid", f"'role' is one of {', '.join(ROLES)}")
    member = MemberRecord(user_id, name, role)
    state = state_of(request)
    for _ in range(PUT_TRIES):
        room = await _room(state, request.path_params["room_id"])
        current = room.member(user_id)
        if current == member:
            return json_response({"member": member.as_dict(), "seq": None})
        kind = ADDED if current is None else UPDATED
        try:
            event = await _change(state, principal, room.id, kind, {"member": member.as_dict()})
        except Rejected as exc:
            if exc.code in (EXISTS, MISSING):
                continue  # another change of this member came first: look again
            raise ApiError(409, exc.code, exc.message) from None  # too_many_members
        body = {"member": member.as_dict(), "seq": event.seq}
        return json_response(body, 201 if kind == ADDED else 200)
    raise ApiError(409, "conflict", "the member kept changing meanwhile: send it again")


async def delete_member(request: Request) -> Response:
    """Remove a member: ``member.removed``; their sockets of the room close 4403."""
    principal = caller(request)
    require_service(principal)
    user_id = label(request.path_params["user_id"], "user_id", 128)
    state = state_of(request)
    room = await _room(state, request.path_params["room_id"])  # else the append fails: 503
    try:
        await _change(state, principal, room.id, REMOVED, {"user_id": user_id})
    except Rejected as exc:
        raise ApiError(404 if exc.code == MISSING else 409, exc.code, exc.message) from None
    return Response(status_code=204)


async def update_room(request: Request) -> Response:
    """Change the title or archive the room (``room.updated``); 200 with the room."""
    principal = caller(request)
    require_service(principal)
    data = await json_body(request)
    patch: dict[str, Any] = {}
    if "title" in data:
        patch["title"] = text(data, "title", MAX_TITLE)
    if "archived" in data:
        if not isinstance(data["archived"], bool):
            raise ApiError(400, "invalid", "'archived' must be a boolean")
        patch["archived"] = data["archived"]
    if not patch:
        raise ApiError(400, "invalid", "give 'title', 'archived' or both")
    state = state_of(request)
    room = await _room(state, request.path_params["room_id"])
    if all(getattr(room, key) == value for key, value in patch.items()):
        return json_response(room.as_dict())  # nothing changes: no event
    try:
        event = await _change(state, principal, room.id, ROOM_UPDATED, patch)
    except Rejected as exc:
        raise ApiError(404 if exc.code == MISSING else 409, exc.code, exc.message) from None
    return json_response(event.data["room"])


routes = [
    Route("/api/rooms", create, methods=["POST"]),
    Route("/api/rooms", index, methods=["GET"]),
    Route("/api/rooms/{room_id}", show, methods=["GET"]),
    Route("/api/rooms/{room_id}", update_room, methods=["PATCH"]),
    Route("/api/rooms/{room_id}/messages", messages, methods=["GET"]),
    Route("/api/rooms/{room_id}/messages", post_message, methods=["POST"]),
    Route("/api/rooms/{room_id}/members/{user_id}", put_member, methods=["PUT"]),
    Route("/api/rooms/{room_id}/members/{user_id}", delete_member, methods=["DELETE"]),
    Route("/api/rooms/{room_id}/digest", digest, methods=["GET"]),
]


# The OpenAPI description of these routes (api/schema.py) ----------------------------------

MEMBER = schema.component(
    "Member",
    schema.obj(
        {
            "user_id": schema.string(1, 128),
            "name": schema.string(1, 128),
            "role": schema.enum(*ROLES),
        }
    ),
)
ROOM = schema.component(
    "Room",
    schema.obj(
        {
            "id": schema.string(),
            "title": schema.string(),
            "created_at": schema.string(),
            "members": schema.array(MEMBER),
            "archived": schema.BOOLEAN,
        }
    ),
)
CHAT_MESSAGE = schema.component(
    "ChatMessage",
    schema.obj(
        {
            "type": schema.enum("chat.message"),
            "seq": schema.integer(1),
            "id": schema.string(),
            "author": schema.AUTHOR,
            "kind": schema.enum("user", SYSTEM_KIND),
            "body": schema.string(),
            "ts": schema.string(),
        }
    ),
)
ROOM_CREATED = schema.obj(
    {
        "id": schema.string(),
        "title": schema.string(),
        "created_at": schema.string(),
        "members": schema.array(MEMBER),
        "archived": schema.BOOLEAN,
        "last_seq": schema.SEQ,
    }
)
ROOM_SUMMARY = schema.obj(
    {
        "id": schema.string(),
        "title": schema.string(),
        "created_at": schema.string(),
        "members": schema.array(MEMBER),
        "last_seq": schema.SEQ,
    },
    {"archived": schema.BOOLEAN},
)
BEFORE = schema.Param("before", schema.integer(1, 2**62), "only what has a seq below this")
LIMIT = schema.Param("limit", schema.integer(1, 100), "at most this many (default 50)")
USER_ID = {"user_id": schema.string(1, 128)}
MEMBER_BODY = schema.obj({"name": schema.string(1, 128), "role": schema.enum(*ROLES)})
MEMBER_CHANGE = schema.obj({"member": MEMBER, "seq": schema.nullable(schema.integer(1))})

operations = [
    schema.Op(
        "POST",
        "/api/rooms",
        "Create a room with its members",
        {201: ROOM_CREATED},
        auth="service",
        body=schema.obj(
            {
                "title": schema.string(1, MAX_TITLE),
                "members": schema.array(MEMBER, MAX_MEMBERS),
            }
        ),
    ),
    schema.Op(
        "GET",
        "/api/rooms",
        "The caller's rooms (every room for a service token)",
        {200: schema.obj({"rooms": schema.array(ROOM_SUMMARY)})},
    ),
    schema.Op("GET", "/api/rooms/{room_id}", "A room", {200: ROOM}, errors=(403, 404)),
    schema.Op(
        "PATCH",
        "/api/rooms/{room_id}",
        "Change a room's title or archive it (`room.updated`)",
        {200: ROOM},
        auth="service",
        body=schema.obj({}, {"title": schema.string(1, MAX_TITLE), "archived": schema.BOOLEAN})
        | {"minProperties": 1},
        errors=(404, 409),
    ),
    schema.Op(
        "GET",
        "/api/rooms/{room_id}/messages",
        "A page of chat messages, oldest to newest",
        {200: schema.obj({"messages": schema.array(CHAT_MESSAGE), "has_more": schema.BOOLEAN})},
        query=(BEFORE, LIMIT),
        errors=(403, 404),
    ),
    schema.Op(
        "POST",
        "/api/rooms/{room_id}/messages",
        "Post a system message (idempotent by its `id`)",
        {201: CHAT_MESSAGE, 200: CHAT_MESSAGE},
        auth="service",
        body=schema.obj({"id": schema.string(1, 64), "body": schema.string(1, 4000)}),
        errors=(404, 409),
    ),
    schema.Op(
        "PUT",
        "/api/rooms/{room_id}/members/{user_id}",
        "Add a member (201) or change one's name or role (200)",
        {201: MEMBER_CHANGE, 200: MEMBER_CHANGE},
        auth="service",
        body=MEMBER_BODY,
        errors=(404, 409),
        path_params=USER_ID,
    ),
    schema.Op(
        "DELETE",
        "/api/rooms/{room_id}/members/{user_id}",
        "Remove a member (`member.removed`; their sockets of the room close 4403)",
        {204: None},
        auth="service",
        errors=(400, 404, 409),
        path_params=USER_ID,
    ),
]
