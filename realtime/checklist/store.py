"""The checklist's table: loaded and saved inside the appending transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..persistence.events import NewEvent
from ..persistence.models import ChecklistItem
from .model import Checklist, Item

TABLE = ChecklistItem.__table__  # type: ignore[attr-defined]
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
    "removed",
)


def load_checklists_sync(conn: Connection, rooms: set[str]) -> dict[str, Checklist]:
    lists = {room: Checklist() for room in rooms}
    if rooms:
        for row in conn.execute(select(TABLE).where(TABLE.c.room_id.in_(rooms))):
            item = Item(row.item_id, **{f: getattr(row, f) for f in FIELDS})
            lists[row.room_id].items[item.id] = item
    return lists


async def load_checklists(conn: AsyncConnection, rooms: set[str]) -> dict[str, Checklist]:
    return await conn.run_sync(load_checklists_sync, rooms)


async def load_checklist(conn: AsyncConnection, room: str) -> Checklist:
    return (await load_checklists(conn, {room}))[room]


class ChecklistReducer:
    """The writer's hook for ``checklist.*`` events."""

    prefix = "checklist."

    async def load(self, conn: AsyncConnection, items: list[NewEvent]) -> dict[str, Checklist]:
        return await load_checklists(conn, {item.stream for item in items})

    def reduce(
        self, state: dict[str, Checklist], item: NewEvent, seq: int, ts: str
    ) -> dict[str, Any]:
        checklist = state[item.stream]
        op = item.type.removeprefix(self.prefix)
        data = checklist.resolve(op, item.data)
        checklist.apply(op, data, item.author_id, ts)
        return data

    async def save(self, conn: AsyncConnection, state: dict[str, Checklist]) -> None:
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for room, checklist in state.items():
            for item_id in checklist.dirty:
                item = checklist.items[item_id]
                row = {f: getattr(item, f) for f in FIELDS}
                if item_id in checklist.new:
                    inserts.append({"room_id": room, "item_id": item_id, **row})
                else:
                    updates.append({"r_room": room, "r_item": item_id, **row})
        if inserts:
            await conn.execute(insert(TABLE), inserts)
        if updates:
            where = and_(
                TABLE.c.room_id == bindparam("r_room"), TABLE.c.item_id == bindparam("r_item")
            )
            await conn.execute(update(TABLE).where(where), updates)
