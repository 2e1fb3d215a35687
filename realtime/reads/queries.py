"""Markers, unread counts and room summaries, read from the database.

Sync functions on a ``Connection`` (``Database.run``: one trip to SQLite's reader thread).
The unread count walks the ``(stream, type, seq)`` index from the member's marker and stops
at ``UNREAD_CAP``, so a room costs the same whatever its history; a room list costs three
statements whatever the number of rooms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, text, tuple_

from ..persistence.events import EVENT, last_seqs_sync, row_to_event
from ..persistence.models import ReadMarker
from ..persistence.rooms import MEMBER, ROOM, MemberRecord, room_record
from ..persistence.sql import Sql

MARKER = ReadMarker.__table__  # type: ignore[attr-defined]

CHAT = "chat.message"
# Counts stop here: 999 means 999 or more (a badge shows "999+").
UNREAD_CAP = 999
CHECKLIST_TYPES = (
    "checklist.add",
    "checklist.toggle",
    "checklist.rename",
    "checklist.move",
    "checklist.remove",
    "checklist.verify",
)


@dataclass(slots=True)
class RoomFacts:
    """What a room's summary shows to every member: the room, its last seq, the time of its
    newest event and its newest chat message."""

    meta: dict[str, Any]  # RoomRecord.as_dict(): id, title, created_at, members
    last_seq: int
    last_ts: str | None
    last_message: dict[str, Any] | None


def summary(facts: RoomFacts, read_seq: int, unread: int) -> dict[str, Any]:
    """A room as ``GET /api/rooms`` and the inbox socket show it to one member."""
    return {
        **facts.meta,
        "last_seq": facts.last_seq,
        "last_activity": facts.last_ts or facts.meta["created_at"],
        "last_message": facts.last_message,
        "read_seq": read_seq,
        "unread": unread,
    }


def newest_first(rooms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Room summaries by ``last_activity``, newest first (ISO times sort as text)."""
    return sorted(rooms, key=lambda r: (r["last_activity"], r["id"]), reverse=True)


_MARKERS = Sql("SELECT user_id, seq FROM read_marker WHERE room_id = :room")
_MARKER = Sql("SELECT seq FROM read_marker WHERE room_id = :room AND user_id = :user")
_UNREAD = Sql(
    "SELECT count(*) FROM (SELECT 1 AS one FROM event WHERE stream = :room "
    "AND type = 'chat.message' AND seq > :after AND seq <= :upto AND author_id <> :user "
    "LIMIT 999) AS counted"
)
# The type index leads to checklist events only.
_CHECKLIST_BY_OTHERS = Sql(
    "SELECT seq FROM event WHERE stream = :room AND type IN ("
    + ", ".join(f"'{t}'" for t in CHECKLIST_TYPES)
    + ") AND seq > :after AND author_id <> :user LIMIT 1"
)


def markers_sync(conn: Connection, room_id: str) -> dict[str, int]:
    return {user: seq for user, seq in _MARKERS.rows(conn, room=room_id)}


def markers_of_sync(conn: Connection, rooms: Sequence[str]) -> dict[str, dict[str, int]]:
    """Every member's marker in each of ``rooms`` (a room without any: absent)."""
    query = select(MARKER.c.room_id, MARKER.c.user_id, MARKER.c.seq).where(
        MARKER.c.room_id.in_(rooms)
    )
    found: dict[str, dict[str, int]] = {}
    for room, user, seq in conn.execute(query):
        found.setdefault(room, {})[user] = seq
    return found


def marker_sync(conn: Connection, room_id: str, user_id: str) -> int:
    return int(_MARKER.scalar(conn, room=room_id, user=user_id) or 0)


def unread_sync(
    conn: Connection, room_id: str, user_id: str, after: int, upto: int | None = None
) -> int:
    """Chat messages by others with ``after < seq <= upto`` (all after ``after`` when
    ``upto`` is None), counted up to ``UNREAD_CAP``."""
    bound = upto if upto is not None else 2**62
    return int(_UNREAD.scalar(conn, room=room_id, after=after, upto=bound, user=user_id))


def checklist_changed_sync(conn: Connection, room_id: str, user_id: str, after: int) -> bool:
    """Whether someone else changed the room's checklist after seq ``after``."""
    return bool(_CHECKLIST_BY_OTHERS.rows(conn, room=room_id, after=after, user=user_id))


@dataclass(slots=True)
class RoomRead:
    """One member's summary parts for one room."""

    facts: RoomFacts
    read_seq: int
    unread: int

    def summary(self) -> dict[str, Any]:
        return summary(self.facts, self.read_seq, self.unread)


# One statement for every room of the user: the newest event's time, the newest chat seq and
# the unread count are correlated subqueries on the event indexes, one seek (or a walk of at
# most UNREAD_CAP entries) per room.
_ROOMS = """
SELECT r.*, s.last_seq, COALESCE(m.seq, 0) AS read_seq,
  (SELECT e.ts FROM event e WHERE e.stream = r.id AND e.seq = s.last_seq) AS last_ts,
  (SELECT max(e.seq) FROM event e
    WHERE e.stream = r.id AND e.type = 'chat.message') AS last_chat,
  (SELECT count(*) FROM (SELECT 1 AS one FROM event e
    WHERE e.stream = r.id AND e.type = 'chat.message' AND e.seq > COALESCE(m.seq, 0)
      AND e.author_id <> :user LIMIT 999) AS counted) AS unread
FROM member mb
JOIN room r ON r.id = mb.room_id
JOIN stream s ON s.id = r.id
LEFT JOIN read_marker m ON m.room_id = mb.room_id AND m.user_id = mb.user_id
WHERE mb.user_id = :user
"""


def rooms_read_sync(
    conn: Connection, user_id: str, room_ids: Sequence[str] | None = None
) -> list[RoomRead]:
    """The member's rooms (or those of ``room_ids`` they are a member of) with their facts,
    the member's marker and unread count: three statements whatever the number of rooms."""
    query = text(_ROOMS)
    params: dict[str, Any] = {"user": user_id}
    if room_ids is not None:
        if not room_ids:
            return []
        query = text(_ROOMS + " AND mb.room_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        params["ids"] = list(room_ids)
    rows = list(conn.execute(query, params))
    ids = [row.id for row in rows]
    members = _members(conn, ids)
    messages = _events(conn, [(row.id, row.last_chat) for row in rows if row.last_chat])
    return [
        RoomRead(
            RoomFacts(
                room_record(row, members.get(row.id, [])).as_dict(),
                row.last_seq,
                row.last_ts,
                messages.get((row.id, row.last_chat)),
            ),
            row.read_seq,
            row.unread,
        )
        for row in rows
    ]


def _members(conn: Connection, room_ids: list[str]) -> dict[str, list[MemberRecord]]:
    out: dict[str, list[MemberRecord]] = {}
    if room_ids:
        query = select(MEMBER).where(MEMBER.c.room_id.in_(room_ids))
        for m in conn.execute(query.order_by(MEMBER.c.room_id, MEMBER.c.user_id)):
            out.setdefault(m.room_id, []).append(MemberRecord(m.user_id, m.name, m.role))
    return out


def _events(
    conn: Connection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, Any]]:
    """Frames of the events at (stream, seq), in one statement."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    if conn.dialect.name == "sqlite":  # a row-value IN scans there; each OR term seeks
        match = or_(*(and_(EVENT.c.stream == s, EVENT.c.seq == q) for s, q in keys))
    else:
        match = tuple_(EVENT.c.stream, EVENT.c.seq).in_(keys)
    events = (row_to_event(row) for row in conn.execute(select(EVENT).where(match)))
    return {(e.stream, e.seq): e.frame() for e in events}


def room_facts_sync(conn: Connection, room_ids: Sequence[str]) -> dict[str, RoomFacts]:
    """Facts of rooms, whoever asks (the inbox reloads a room whose title or members
    changed); rooms that do not exist are left out."""
    if not room_ids:
        return {}
    rows = list(conn.execute(select(ROOM).where(ROOM.c.id.in_(room_ids))))
    ids = [row.id for row in rows]
    last = last_seqs_sync(conn, ids)
    members = _members(conn, ids)
    out: dict[str, RoomFacts] = {}
    for row in rows:
        seq = last.get(row.id, 0)
        ts = conn.execute(
            select(EVENT.c.ts).where(EVENT.c.stream == row.id, EVENT.c.seq == seq)
        ).scalar()
        chat = conn.execute(
            select(EVENT)
            .where(EVENT.c.stream == row.id, EVENT.c.type == CHAT)
            .order_by(EVENT.c.seq.desc())
            .limit(1)
        ).first()
        meta = room_record(row, members.get(row.id, [])).as_dict()
        message = row_to_event(chat).frame() if chat is not None else None
        out[row.id] = RoomFacts(meta, seq, ts, message)
    return out


def member_rooms_sync(conn: Connection, user_id: str) -> list[str]:
    rows = conn.execute(select(MEMBER.c.room_id).where(MEMBER.c.user_id == user_id))
    return sorted(row.room_id for row in rows)


def counts_sync(conn: Connection, items: Sequence[tuple[str, str, int]]) -> list[tuple[int, int]]:
    """For each (room, user, upto): the user's marker, and the messages by others after it
    up to seq ``upto``."""
    out: list[tuple[int, int]] = []
    for room, user, upto in items:
        marker = marker_sync(conn, room, user)
        out.append((marker, unread_sync(conn, room, user, marker, upto)))
    return out


CHUNK = 500  # ids per IN list


def users_markers_sync(conn: Connection, users: Sequence[str]) -> dict[tuple[str, str], int]:
    """Every marker of these users, by (room, user)."""
    out: dict[tuple[str, str], int] = {}
    for start in range(0, len(users), CHUNK):
        query = select(MARKER.c.room_id, MARKER.c.user_id, MARKER.c.seq).where(
            MARKER.c.user_id.in_(users[start : start + CHUNK])
        )
        out.update({(row.room_id, row.user_id): row.seq for row in conn.execute(query)})
    return out


def memberships_sync(conn: Connection, users: Sequence[str]) -> dict[str, list[str]]:
    """The rooms of each of these users."""
    out: dict[str, list[str]] = {}
    for start in range(0, len(users), CHUNK):
        query = select(MEMBER.c.user_id, MEMBER.c.room_id).where(
            MEMBER.c.user_id.in_(users[start : start + CHUNK])
        )
        for row in conn.execute(query):
            out.setdefault(row.user_id, []).append(row.room_id)
    return out
