"""Rooms and their members."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .events import create_stream, now_iso
from .models import Member, Room, Stream
from .sql import Sql

ROOM = Room.__table__  # type: ignore[attr-defined]
MEMBER = Member.__table__  # type: ignore[attr-defined]
STREAM = Stream.__table__  # type: ignore[attr-defined]

ROLES = ("mentor", "mentee")
MAX_MEMBERS = 50  # members of one room, at creation and after


def notes_stream(room_id: str) -> str:
    """Each room's notes document is a stream of its own: Yjs updates, durable, unordered."""
    return "notes:" + room_id


@dataclass(slots=True)
class MemberRecord:
    user_id: str
    name: str
    role: str

    def as_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "name": self.name, "role": self.role}


@dataclass(slots=True)
class RoomRecord:
    id: str
    title: str
    created_at: str
    members: list[MemberRecord] = field(default_factory=list)
    archived: bool = False

    def member(self, user_id: str) -> MemberRecord | None:
        return next((m for m in self.members if m.user_id == user_id), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "members": [m.as_dict() for m in self.members],
            "archived": self.archived,
        }


async def create_room(
    conn: AsyncConnection, title: str, members: Sequence[MemberRecord]
) -> RoomRecord:
    room = RoomRecord(id=uuid.uuid4().hex, title=title, created_at=now_iso(), members=list(members))
    await create_stream(conn, room.id)
    await create_stream(conn, notes_stream(room.id))
    await conn.execute(insert(ROOM).values(id=room.id, title=title, created_at=room.created_at))
    if members:
        await conn.execute(insert(MEMBER), [{"room_id": room.id, **m.as_dict()} for m in members])
    return room


def room_record(row: Any, members: list[MemberRecord]) -> RoomRecord:
    """A ``room`` row and its members as a record (every reader builds it here)."""
    return RoomRecord(row.id, row.title, row.created_at, members, bool(row.archived))


# A join's reads of its room, prepared once (persistence/sql.py): every handshake into a
# room no socket here has open runs them.
_ROOM = Sql("SELECT id, title, created_at, archived FROM room WHERE id = :room")
_MEMBERS = Sql("SELECT user_id, name, role FROM member WHERE room_id = :room ORDER BY user_id")


def get_room_sync(conn: Connection, room_id: str) -> RoomRecord | None:
    rows = _ROOM.rows(conn, room=room_id)
    if not rows:
        return None
    id_, title, created_at, archived = rows[0]
    members = [MemberRecord(*r) for r in _MEMBERS.each(conn, room=room_id)]
    return RoomRecord(id_, title, created_at, members, bool(archived))


# A room with its members and its stream's seq in one statement: one state, without a
# transaction around it (a handshake's read in a reconnect storm: one round trip).
_VIEW = Sql(
    "SELECT r.id, r.title, r.created_at, r.archived, COALESCE(s.last_seq, 0), "
    "m.user_id, m.name, m.role FROM room r LEFT JOIN stream s ON s.id = r.id "
    "LEFT JOIN member m ON m.room_id = r.id WHERE r.id = :room ORDER BY m.user_id"
)


def room_views_sync(conn: Connection, room_ids: Sequence[str]) -> dict[str, tuple[RoomRecord, int]]:
    """Each room that exists with its members, and its stream's last seq, as of one state
    (a single statement; one prepared once for a lone room)."""
    if len(room_ids) == 1:
        rows = _VIEW.rows(conn, room=room_ids[0])
    else:
        query = (
            select(
                ROOM.c.id,
                ROOM.c.title,
                ROOM.c.created_at,
                ROOM.c.archived,
                func.coalesce(STREAM.c.last_seq, 0),
                MEMBER.c.user_id,
                MEMBER.c.name,
                MEMBER.c.role,
            )
            .select_from(
                ROOM.outerjoin(STREAM, STREAM.c.id == ROOM.c.id).outerjoin(
                    MEMBER, MEMBER.c.room_id == ROOM.c.id
                )
            )
            .where(ROOM.c.id.in_(room_ids))
            .order_by(MEMBER.c.user_id)
        )
        rows = list(conn.execute(query))
    views: dict[str, tuple[RoomRecord, int]] = {}
    for id_, title, created_at, archived, last_seq, user_id, name, role in rows:
        if id_ not in views:
            views[id_] = (RoomRecord(id_, title, created_at, [], bool(archived)), int(last_seq))
        if user_id is not None:
            views[id_][0].members.append(MemberRecord(user_id, name, role))
    return views


async def get_room(conn: AsyncConnection, room_id: str) -> RoomRecord | None:
    return await conn.run_sync(get_room_sync, room_id)


async def list_rooms(conn: AsyncConnection, user_id: str | None) -> list[dict[str, Any]]:
    """Rooms of ``user_id`` (all rooms when None: a service caller), with their last seq."""
    query = select(ROOM, STREAM.c.last_seq).join(STREAM, STREAM.c.id == ROOM.c.id)
    if user_id is not None:
        query = query.join(MEMBER, MEMBER.c.room_id == ROOM.c.id).where(MEMBER.c.user_id == user_id)
    rows = list(await conn.execute(query.order_by(ROOM.c.created_at, ROOM.c.id)))
    ids = [r.id for r in rows]
    members: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    if ids:
        for m in await conn.execute(
            select(MEMBER).where(MEMBER.c.room_id.in_(ids)).order_by(MEMBER.c.user_id)
        ):
            members[m.room_id].append({"user_id": m.user_id, "name": m.name, "role": m.role})
    return [
        {
            "id": r.id,
            "title": r.title,
            "created_at": r.created_at,
            "last_seq": r.last_seq,
            "members": members[r.id],
            "archived": bool(r.archived),
        }
        for r in rows
    ]
