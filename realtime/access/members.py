"""A room's members and its title and archive flag, kept beside its ``member.*`` and
``room.updated`` events: checked and written in the appending transaction, under the room's
stream lock, so two changes from two processes never both pass a check that only one could.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent, Rejected
from ..persistence.rooms import (
    MAX_MEMBERS,
    MEMBER,
    ROOM,
    MemberRecord,
    RoomRecord,
    room_views_sync,
)

ADDED, UPDATED, REMOVED = "member.added", "member.updated", "member.removed"
ROOM_UPDATED = "room.updated"

# ``Rejected`` codes (api/rooms.py turns them into HTTP answers).
EXISTS = "exists"  # a ``member.added`` for a member: the caller retries as an update
MISSING = "not_found"  # an update or removal of a non-member, or no such room
TOO_MANY = "too_many_members"


class RoomChanges:
    """What one batch changed: the rooms as loaded and changed, and which rows to write."""

    __slots__ = ("members", "rooms", "touched")

    def __init__(self, rooms: dict[str, RoomRecord]) -> None:
        self.rooms = rooms
        self.members: set[tuple[str, str]] = set()  # (room, user) whose row changed
        self.touched: set[str] = set()  # rooms whose title or archive flag changed


class RoomReducer:
    """The writer's hook for ``member.*`` and ``room.updated`` (SQLAlchemy only: these are
    rare, service-made changes)."""

    prefix = ("member.", "room.")

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> RoomChanges:
        return await conn.run_sync(_load, {item.stream for item in items})

    def reduce(self, state: RoomChanges, item: NewEvent, seq: int, ts: str) -> dict[str, Any]:
        room = state.rooms.get(item.stream)
        if room is None:
            raise Rejected(MISSING, "no such room")
        if item.type == ROOM_UPDATED:
            return _update_room(state, room, item.data)
        if item.type == REMOVED:
            return _remove(state, room, str(item.data["user_id"]))
        if item.type in (ADDED, UPDATED):
            return _put(state, room, item.type, item.data["member"])
        raise Rejected(MISSING, f"unknown event {item.type}")

    async def save(self, conn: AsyncConnection, state: RoomChanges) -> None:
        await conn.run_sync(_save, state)


def _load(conn: Connection, rooms: set[str]) -> RoomChanges:
    views = room_views_sync(conn, sorted(rooms))  # one statement for the batch's rooms
    return RoomChanges({room_id: room for room_id, (room, _) in views.items()})


def _put(state: RoomChanges, room: RoomRecord, kind: str, raw: dict[str, str]) -> dict[str, Any]:
    member = MemberRecord(raw["user_id"], raw["name"], raw["role"])
    current = room.member(member.user_id)
    if kind == ADDED and current is not None:
        raise Rejected(EXISTS, "already a member")
    if kind == UPDATED and current is None:
        raise Rejected(MISSING, "not a member of this room")
    if current is None:
        if len(room.members) >= MAX_MEMBERS:
            raise Rejected(TOO_MANY, f"a room holds at most {MAX_MEMBERS} members")
        room.members.append(member)
        room.members.sort(key=lambda m: m.user_id)
    else:
        current.name, current.role = member.name, member.role
    state.members.add((room.id, member.user_id))
    return {"member": member.as_dict()}


def _remove(state: RoomChanges, room: RoomRecord, user_id: str) -> dict[str, Any]:
    if room.member(user_id) is None:
        raise Rejected(MISSING, "not a member of this room")
    room.members = [m for m in room.members if m.user_id != user_id]
    state.members.add((room.id, user_id))
    return {"user_id": user_id}


def _update_room(state: RoomChanges, room: RoomRecord, patch: dict[str, Any]) -> dict[str, Any]:
    if "title" in patch:
        room.title = str(patch["title"])
    if "archived" in patch:
        room.archived = bool(patch["archived"])
    state.touched.add(room.id)
    return {"room": room.as_dict()}


def _save(conn: Connection, state: RoomChanges) -> None:
    for room_id, user_id in sorted(state.members):
        where = and_(MEMBER.c.room_id == room_id, MEMBER.c.user_id == user_id)
        conn.execute(delete(MEMBER).where(where))
        member = state.rooms[room_id].member(user_id)
        if member is not None:
            conn.execute(insert(MEMBER).values(room_id=room_id, **member.as_dict()))
    for room_id in sorted(state.touched):
        room = state.rooms[room_id]
        values = {"title": room.title, "archived": room.archived}
        conn.execute(update(ROOM).where(ROOM.c.id == room_id).values(**values))
