"""The checklist's table: loaded and saved inside the appending transaction.

Only live items are ever loaded in bulk (an index on ``(room_id, removed)``): a removed item
stays as a small row (its title and description emptied) only so that its id is refused to
a later add, looked up by primary key for the ids a batch adds, and a room keeps at most
``MAX_REMOVED`` of them (the oldest removals are forgotten first).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections import OrderedDict, defaultdict
from typing import Any, Protocol

import asyncpg
from sqlalchemy import Connection, and_, bindparam, delete, false, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent
from ..persistence.models import ChecklistItem, ChecklistRoom, Member
from ..persistence.sql import Sql
from . import roles
from .model import MAX_REMOVED, Checklist, Item

TABLE = ChecklistItem.__table__  # type: ignore[attr-defined]
ROOMS = ChecklistRoom.__table__  # type: ignore[attr-defined]
MEMBERS = Member.__table__  # type: ignore[attr-defined]
CACHED_ROOMS = 128  # lists kept in memory by the writer (at most 500 items each)
FIELDS = (
    "title",
    "description",
    "pos",
    "done",
    "done_by",
    "done_at",
    "verified",
    "verified_by",
    "verified_at",
    "verified_title",
    "added_by",
    "removed",
    "removed_seq",
)


def load_checklists_sync(conn: Connection, rooms: set[str]) -> dict[str, Checklist]:
    """The rooms' live items (what joins, ``GET …/checklist`` and the writer read)."""
    lists = {room: Checklist() for room in rooms}
    if rooms:
        live = select(TABLE).where(TABLE.c.room_id.in_(rooms), TABLE.c.removed == false())
        for row in conn.execute(live):
            item = Item(row.item_id, **{f: getattr(row, f) for f in FIELDS})
            lists[row.room_id].items[item.id] = item
    return lists


# One room's live items, prepared once (persistence/sql.py): every room welcome reads them.
_LIVE = Sql(
    f"SELECT item_id, {', '.join(FIELDS)} FROM checklist_item "
    "WHERE room_id = :room AND removed = :removed"
)
_FLAGS = tuple(i for i, f in enumerate(FIELDS) if f in ("done", "verified", "removed"))


def load_checklist_sync(conn: Connection, room: str) -> Checklist:
    """One room's live items (a welcome's read); as ``load_checklists_sync``."""
    checklist = Checklist()
    for item_id, *values in _LIVE.each(conn, room=room, removed=False):
        for i in _FLAGS:  # SQLite's booleans are integers
            values[i] = bool(values[i])
        checklist.items[item_id] = Item(item_id, **dict(zip(FIELDS, values, strict=True)))
    return checklist


async def load_checklists(conn: AsyncConnection, rooms: set[str]) -> dict[str, Checklist]:
    return await conn.run_sync(load_checklists_sync, rooms)


async def load_checklist(conn: AsyncConnection, room: str) -> Checklist:
    return (await load_checklists(conn, {room}))[room]


async def live_ids(conn: AsyncConnection, room: str) -> set[str]:
    """The ids of the room's live items (no other column)."""
    query = select(TABLE.c.item_id).where(TABLE.c.room_id == room, TABLE.c.removed == false())
    return set((await conn.execute(query)).scalars())


class _Rows(Protocol):
    """The statements the reducer runs: on a SQLAlchemy connection (every database) or raw
    on SQLite (the writer's one-hop path, ``streams/sqlite_batches.py``)."""

    def versions(self, rooms: set[str]) -> dict[str, str]: ...

    def live(self, rooms: set[str]) -> dict[str, Checklist]: ...

    def roles(self, rooms: set[str]) -> dict[str, dict[str, str]]: ...

    def taken(self, room: str, ids: set[str]) -> set[str]: ...

    def write(self, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None: ...

    def forget_removed(self, room: str) -> None: ...

    def set_version(self, room: str, version: str, *, new: bool) -> None: ...


class _CoreRows:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def versions(self, rooms: set[str]) -> dict[str, str]:
        query = select(ROOMS.c.room_id, ROOMS.c.version).where(ROOMS.c.room_id.in_(rooms))
        return {row.room_id: row.version for row in self.conn.execute(query)}

    def live(self, rooms: set[str]) -> dict[str, Checklist]:
        return load_checklists_sync(self.conn, rooms)

    def roles(self, rooms: set[str]) -> dict[str, dict[str, str]]:
        query = select(MEMBERS.c.room_id, MEMBERS.c.user_id, MEMBERS.c.role)
        return _by_room(self.conn.execute(query.where(MEMBERS.c.room_id.in_(rooms))))

    def taken(self, room: str, ids: set[str]) -> set[str]:
        found = select(TABLE.c.item_id).where(TABLE.c.room_id == room, TABLE.c.item_id.in_(ids))
        return set(self.conn.execute(found).scalars())

    def write(self, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        if inserts:
            self.conn.execute(insert(TABLE), inserts)
        if updates:
            renamed = [{"r_room": u["room_id"], "r_item": u["item_id"], **u} for u in updates]
            for row in renamed:
                del row["room_id"], row["item_id"]
            where = and_(
                TABLE.c.room_id == bindparam("r_room"), TABLE.c.item_id == bindparam("r_item")
            )
            self.conn.execute(update(TABLE).where(where), renamed)

    def forget_removed(self, room: str) -> None:
        removed = and_(TABLE.c.room_id == room, TABLE.c.removed)
        count = self.conn.execute(select(func.count()).select_from(TABLE).where(removed)).scalar()
        if count is None or count <= MAX_REMOVED:
            return
        oldest = (
            select(TABLE.c.item_id)
            .where(removed)
            .order_by(TABLE.c.removed_seq, TABLE.c.item_id)
            .limit(count - MAX_REMOVED)
        )
        self.conn.execute(
            delete(TABLE).where(removed, TABLE.c.item_id.in_(oldest.scalar_subquery()))
        )

    def set_version(self, room: str, version: str, *, new: bool) -> None:
        if new:
            self.conn.execute(insert(ROOMS).values(room_id=room, version=version))
        else:
            where = ROOMS.c.room_id == room
            self.conn.execute(update(ROOMS).where(where).values(version=version))


def _by_room(rows: Any) -> dict[str, dict[str, str]]:
    """(room, user, role) rows as each room's roles by user."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for room, user, role in rows:
        out[room][user] = role
    return out


def _versioned(lists: dict[str, Checklist], versions: dict[str, str]) -> dict[str, Checklist]:
    for room, checklist in lists.items():
        checklist.version = versions.get(room)
    return lists


def _added_ids(items: list[NewEvent]) -> dict[str, set[str]]:
    """The ids a batch adds, per room: looked up by primary key (removed ids are refused)."""
    adds: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if item.type == "checklist.add":
            adds[item.stream].add(item.data["item_id"])
    return adds


def _changes(
    state: dict[str, Checklist],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Rows to insert and to update, and the rooms that removed items."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    removals: list[str] = []
    for room, checklist in state.items():
        for item_id in checklist.dirty:
            item = checklist.items[item_id]
            row = {"room_id": room, "item_id": item_id, **{f: getattr(item, f) for f in FIELDS}}
            if item.removed:  # a tombstone: only its id matters now
                row.update(title="", description="")
                if room not in removals:
                    removals.append(room)
            (inserts if item_id in checklist.new else updates).append(row)
    return inserts, updates, removals


_COLUMNS = ("room_id", "item_id", *FIELDS)
_INSERT = (
    f"INSERT INTO checklist_item ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_UPDATE = (
    f"UPDATE checklist_item SET {', '.join(f + ' = ?' for f in FIELDS)} "
    "WHERE room_id = ? AND item_id = ?"
)


# The writer's PostgreSQL statements: arrays, one round trip each, prepared once by asyncpg.
# Versions (kind 'v'), the added ids already taken, live or removed ('t'), and the members'
# roles ('r': room, user, role).
_STATE_PG = (
    "SELECT 'v', room_id, version, NULL FROM checklist_room WHERE room_id = ANY($1::text[]) "
    "UNION ALL SELECT 't', i.room_id, i.item_id, NULL FROM checklist_item i "
    "JOIN unnest($2::text[], $3::text[]) AS k(room_id, item_id) "
    "ON i.room_id = k.room_id AND i.item_id = k.item_id "
    "UNION ALL SELECT 'r', room_id, user_id, role FROM member WHERE room_id = ANY($1::text[])"
)
_LIVE_PG = (
    f"SELECT room_id, item_id, {', '.join(FIELDS)} FROM checklist_item "
    "WHERE room_id = ANY($1::text[]) AND NOT removed"
)
_TYPES_PG = {"done": "bool", "verified": "bool", "removed": "bool", "removed_seq": "bigint"}
# New rows and changed ones alike (the stream rows are locked: nobody else writes them).
_UPSERT_PG = (
    f"INSERT INTO checklist_item ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${n}::{_TYPES_PG.get(c, 'text')}[]" for n, c in enumerate(_COLUMNS, 1))
    + ") ON CONFLICT (room_id, item_id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS)
)
# After the rows (this statement sees them): forget each room's oldest tombstones past the
# bound ($1 the rooms that removed items, $2 the bound), and set the new versions.
_TAIL_PG = (
    "WITH old AS (SELECT room_id, item_id FROM (SELECT room_id, item_id, row_number() OVER "
    "(PARTITION BY room_id ORDER BY removed_seq DESC, item_id DESC) AS n FROM checklist_item "
    "WHERE room_id = ANY($1::text[]) AND removed) r WHERE n > $2), "
    "forgot AS (DELETE FROM checklist_item d USING old "
    "WHERE d.room_id = old.room_id AND d.item_id = old.item_id) "
    "INSERT INTO checklist_room (room_id, version) SELECT * FROM unnest($3::text[], $4::text[]) "
    "ON CONFLICT (room_id) DO UPDATE SET version = EXCLUDED.version"
)


class _RawRows:
    """The same statements on a ``sqlite3`` connection: no SQLAlchemy per statement."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def versions(self, rooms: set[str]) -> dict[str, str]:
        marks = ",".join("?" * len(rooms))
        query = f"SELECT room_id, version FROM checklist_room WHERE room_id IN ({marks})"
        return dict(self.conn.execute(query, sorted(rooms)).fetchall())

    def live(self, rooms: set[str]) -> dict[str, Checklist]:
        lists = {room: Checklist() for room in rooms}
        for room in rooms:
            rows = self.conn.execute(
                f"SELECT item_id, {', '.join(FIELDS)} FROM checklist_item "
                "WHERE room_id = ? AND removed = 0",
                (room,),
            )
            for raw in rows:
                values = dict(zip(FIELDS, raw[1:], strict=True))
                for flag in ("done", "verified", "removed"):
                    values[flag] = bool(values[flag])
                lists[room].items[raw[0]] = Item(raw[0], **values)
        return lists

    def roles(self, rooms: set[str]) -> dict[str, dict[str, str]]:
        marks = ",".join("?" * len(rooms))
        query = f"SELECT room_id, user_id, role FROM member WHERE room_id IN ({marks})"
        return _by_room(self.conn.execute(query, sorted(rooms)))

    def taken(self, room: str, ids: set[str]) -> set[str]:
        marks = ",".join("?" * len(ids))
        query = f"SELECT item_id FROM checklist_item WHERE room_id = ? AND item_id IN ({marks})"
        return {r[0] for r in self.conn.execute(query, [room, *sorted(ids)])}

    def write(self, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        if inserts:
            self.conn.executemany(_INSERT, [tuple(r[c] for c in _COLUMNS) for r in inserts])
        if updates:
            keys = (*FIELDS, "room_id", "item_id")
            self.conn.executemany(_UPDATE, [tuple(r[c] for c in keys) for r in updates])

    def forget_removed(self, room: str) -> None:
        where = "room_id = ? AND removed = 1"
        (count,) = self.conn.execute(
            f"SELECT count(*) FROM checklist_item WHERE {where}", (room,)
        ).fetchone()
        if count <= MAX_REMOVED:
            return
        self.conn.execute(
            f"DELETE FROM checklist_item WHERE {where} AND item_id IN (SELECT item_id FROM "
            f"checklist_item WHERE {where} ORDER BY removed_seq, item_id LIMIT ?)",
            (room, room, count - MAX_REMOVED),
        )

    def set_version(self, room: str, version: str, *, new: bool) -> None:
        if new:
            sql = "INSERT INTO checklist_room (version, room_id) VALUES (?, ?)"
        else:
            sql = "UPDATE checklist_room SET version = ? WHERE room_id = ?"
        self.conn.execute(sql, (version, room))


class ChecklistReducer:
    """The writer's hook for ``checklist.*`` events.

    It keeps the lists of recently active rooms in memory (at most ``cached_rooms``) with
    the room's version as saved; a batch reads one version row per room and uses the kept
    list while the version matches (another process changed nothing), else reads the live
    rows again. A list taken for a batch leaves the cache until the batch saves it, so a
    batch that fails never leaves a half-applied list behind.
    """

    prefix = "checklist."

    def __init__(self, cached_rooms: int = CACHED_ROOMS) -> None:
        self.cached_rooms = cached_rooms
        self.cache: OrderedDict[str, Checklist] = OrderedDict()
        self.reads = 0  # rooms whose live rows were read (not served from memory)

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> dict[str, Checklist]:
        return await conn.run_sync(lambda sync: self._load(_CoreRows(sync), items))

    async def save(self, conn: AsyncConnection, state: dict[str, Checklist]) -> None:
        await conn.run_sync(lambda sync: self._save(_CoreRows(sync), state))

    def load_raw(self, conn: sqlite3.Connection, items: list[NewEvent]) -> dict[str, Checklist]:
        return self._load(_RawRows(conn), items)

    def save_raw(self, conn: sqlite3.Connection, state: dict[str, Checklist]) -> None:
        self._save(_RawRows(conn), state)

    def _load(self, rows: _Rows, items: list[NewEvent]) -> dict[str, Checklist]:
        versions = rows.versions({item.stream for item in items})
        lists, stale = self._kept(items, versions)
        if stale:
            lists.update(_versioned(rows.live(stale), versions))
        for room, ids in _added_ids(items).items():
            lists[room].taken.update(rows.taken(room, ids))
        members = rows.roles(set(lists))
        for room, checklist in lists.items():
            checklist.roles = members.get(room, {})
        return lists

    def _kept(
        self, items: list[NewEvent], versions: dict[str, str]
    ) -> tuple[dict[str, Checklist], set[str]]:
        """The lists kept in memory whose version is still the database's, and the rooms
        whose live rows must be read (then given their version: ``_versioned``)."""
        rooms = {item.stream for item in items}
        lists: dict[str, Checklist] = {}
        for room in rooms:
            kept = self.cache.pop(room, None)
            if kept is not None and kept.version is not None and kept.version == versions.get(room):
                lists[room] = kept
        stale = rooms - set(lists)
        self.reads += len(stale)
        return lists, stale

    async def load_pg(
        self, conn: asyncpg.Connection, items: list[NewEvent]
    ) -> dict[str, Checklist]:
        """``load`` on an asyncpg connection (the writer's PostgreSQL path): the versions, the
        batch's added ids already taken and the members' roles in one round trip, the live
        rows in a second only for rooms whose kept list is stale."""
        rooms = sorted({item.stream for item in items})
        adds = [(room, i) for room, ids in _added_ids(items).items() for i in sorted(ids)]
        found = await conn.fetch(_STATE_PG, rooms, [room for room, _ in adds], [i for _, i in adds])
        versions = {r[1]: r[2] for r in found if r[0] == "v"}
        lists, stale = self._kept(items, versions)
        if stale:
            fresh = {room: Checklist() for room in stale}
            for r in await conn.fetch(_LIVE_PG, sorted(stale)):
                fresh[r[0]].items[r[1]] = Item(r[1], **{f: r[f] for f in FIELDS})
            lists.update(_versioned(fresh, versions))
        members = _by_room((r[1], r[2], r[3]) for r in found if r[0] == "r")
        for room, checklist in lists.items():
            checklist.roles = members.get(room, {})
        for r in found:
            if r[0] == "t":
                lists[r[1]].taken.add(r[2])
        return lists

    def reduce(
        self, state: dict[str, Checklist], item: NewEvent, seq: int, ts: str
    ) -> dict[str, Any]:
        checklist = state[item.stream]
        op = item.type.removeprefix(self.prefix)
        target = None if op == "add" else checklist.live(item.data["item_id"])  # not_found first
        role = checklist.roles.get(item.author_id) or (roles.SERVICE if item.service else None)
        roles.check(role, item.author_id, op, item.data, target)
        data = checklist.resolve(op, item.data)
        checklist.apply(op, data, item.author_id, ts)
        if op == "remove":
            checklist.items[data["item_id"]].removed_seq = seq
        return data

    def _save(self, rows: _Rows, state: dict[str, Checklist]) -> None:
        inserts, updates, removals = _changes(state)
        rows.write(inserts, updates)
        for room in removals:
            rows.forget_removed(room)
        for room, version, new in self._new_versions(state):
            rows.set_version(room, version, new=new)
        for room, checklist in state.items():
            self._keep(room, checklist)

    async def save_pg(self, conn: asyncpg.Connection, state: dict[str, Checklist]) -> None:
        """``save`` on an asyncpg connection (the writer's PostgreSQL path): the rows in one
        statement, then the tombstone bound and the versions in another."""
        inserts, updates, removals = _changes(state)
        rows = inserts + updates
        if rows:
            await conn.execute(_UPSERT_PG, *([r[c] for r in rows] for c in _COLUMNS))
        changed = self._new_versions(state)
        if changed or removals:
            await conn.execute(
                _TAIL_PG,
                sorted(removals),
                MAX_REMOVED,
                [room for room, _, _ in changed],
                [version for _, version, _ in changed],
            )
        for room, checklist in state.items():
            self._keep(room, checklist)

    def _new_versions(self, state: dict[str, Checklist]) -> list[tuple[str, str, bool]]:
        """A new random version for each changed room (random: a failed commit's version
        never matches a later one): (room, version, no row yet)."""
        out = []
        for room, checklist in state.items():
            if checklist.dirty:
                version = secrets.token_hex(8)
                out.append((room, version, checklist.version is None))
                checklist.version = version
        return out

    def _keep(self, room: str, checklist: Checklist) -> None:
        """Keep the saved list for the room's next batch (if the commit fails, the version
        in the database stays the old one and the next batch reads the rows instead)."""
        for item_id in checklist.dirty:
            if checklist.items[item_id].removed:
                del checklist.items[item_id]
        checklist.dirty.clear()
        checklist.new.clear()
        checklist.taken.clear()
        self.cache[room] = checklist
        while len(self.cache) > self.cached_rooms:
            self.cache.popitem(last=False)
