"""The checklist's table: loaded and saved inside the appending transaction.

Only live items are ever loaded in bulk (an index on ``(room_id, removed)``): a removed item
stays as a small row (its title and description emptied) only so that its id is refused to
a later add, looked up by primary key for the ids a batch adds, and a room keeps at most
``MAX_REMOVED`` of them (the oldest removals are forgotten first).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, defaultdict
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, false, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent
from ..persistence.models import ChecklistItem, ChecklistRoom
from .model import MAX_REMOVED, Checklist, Item

TABLE = ChecklistItem.__table__  # type: ignore[attr-defined]
ROOMS = ChecklistRoom.__table__  # type: ignore[attr-defined]
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


async def load_checklists(conn: AsyncConnection, rooms: set[str]) -> dict[str, Checklist]:
    return await conn.run_sync(load_checklists_sync, rooms)


async def load_checklist(conn: AsyncConnection, room: str) -> Checklist:
    return (await load_checklists(conn, {room}))[room]


def _forget_removed_sync(conn: Connection, rooms: list[str]) -> None:
    """Keep each room's newest ``MAX_REMOVED`` removed rows; delete the older ones."""
    for room in rooms:
        removed = and_(TABLE.c.room_id == room, TABLE.c.removed)
        count = conn.execute(select(func.count()).select_from(TABLE).where(removed)).scalar_one()
        if count <= MAX_REMOVED:
            continue
        oldest = (
            select(TABLE.c.item_id)
            .where(removed)
            .order_by(TABLE.c.removed_seq, TABLE.c.item_id)
            .limit(count - MAX_REMOVED)
        )
        conn.execute(delete(TABLE).where(removed, TABLE.c.item_id.in_(oldest.scalar_subquery())))


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
        return await conn.run_sync(self.load_sync, items)

    async def save(self, conn: AsyncConnection, state: dict[str, Checklist]) -> None:
        await conn.run_sync(self.save_sync, state)

    def load_sync(self, conn: Connection, items: list[NewEvent]) -> dict[str, Checklist]:
        rooms = {item.stream for item in items}
        query = select(ROOMS.c.room_id, ROOMS.c.version).where(ROOMS.c.room_id.in_(rooms))
        versions: dict[str, str] = {row.room_id: row.version for row in conn.execute(query)}
        lists: dict[str, Checklist] = {}
        for room in rooms:
            kept = self.cache.pop(room, None)
            if kept is not None and kept.version is not None and kept.version == versions.get(room):
                lists[room] = kept
        stale = rooms - set(lists)
        self.reads += len(stale)
        lists.update(load_checklists_sync(conn, stale))
        for room, checklist in lists.items():
            checklist.version = versions.get(room)
        adds: dict[str, set[str]] = defaultdict(set)
        for item in items:
            if item.type == "checklist.add":
                adds[item.stream].add(item.data["item_id"])
        for room, ids in adds.items():  # by primary key: removed ids an add may not reuse
            found = select(TABLE.c.item_id).where(TABLE.c.room_id == room, TABLE.c.item_id.in_(ids))
            lists[room].taken.update(conn.execute(found).scalars())
        return lists

    def reduce(
        self, state: dict[str, Checklist], item: NewEvent, seq: int, ts: str
    ) -> dict[str, Any]:
        checklist = state[item.stream]
        op = item.type.removeprefix(self.prefix)
        data = checklist.resolve(op, item.data)
        checklist.apply(op, data, item.author_id, ts)
        if op == "remove":
            checklist.items[data["item_id"]].removed_seq = seq
        return data

    def save_sync(self, conn: Connection, state: dict[str, Checklist]) -> None:
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        removals: list[str] = []
        for room, checklist in state.items():
            for item_id in checklist.dirty:
                item = checklist.items[item_id]
                row = {f: getattr(item, f) for f in FIELDS}
                if item.removed:  # a tombstone: only its id matters now
                    row.update(title="", description="")
                    if room not in removals:
                        removals.append(room)
                if item_id in checklist.new:
                    inserts.append({"room_id": room, "item_id": item_id, **row})
                else:
                    updates.append({"r_room": room, "r_item": item_id, **row})
        if inserts:
            conn.execute(insert(TABLE), inserts)
        if updates:
            where = and_(
                TABLE.c.room_id == bindparam("r_room"), TABLE.c.item_id == bindparam("r_item")
            )
            conn.execute(update(TABLE).where(where), updates)
        if removals:
            _forget_removed_sync(conn, removals)
        for room, checklist in state.items():
            if checklist.dirty:
                self._new_version(conn, room, checklist)
            self._keep(room, checklist)

    def _new_version(self, conn: Connection, room: str, checklist: Checklist) -> None:
        version = secrets.token_hex(8)  # random: a failed commit can never match a later one
        if checklist.version is None:
            conn.execute(insert(ROOMS).values(room_id=room, version=version))
        else:
            conn.execute(update(ROOMS).where(ROOMS.c.room_id == room).values(version=version))
        checklist.version = version

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
