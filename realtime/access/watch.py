"""Each room's current record (members, title, archive flag) in this process, for as long as
the process holds a socket of the room (room socket or notes socket): a hub listener on the
room's stream applies its ``member.*`` and ``room.updated`` events as they are delivered
(gap-free, from whichever process stored them) and closes the sockets a removal ends.

A notes socket may be the only one of its room here: the watch subscribes the room's
stream for it all the same, so a removal reaches it as fast as it reaches a room socket.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import Connection

from ..persistence.database import Database
from ..persistence.events import StoredEvent, last_seqs_sync
from ..persistence.rooms import MemberRecord, RoomRecord, get_room_sync
from ..streams.hub import Frames, Hub
from .members import ADDED, REMOVED, ROOM_UPDATED, UPDATED
from .registry import Connections

KINDS = ("member.", "room.")


class RoomWatch:
    """One room's record as of ``seq``, kept current by the hub."""

    __slots__ = ("connections", "held", "ready", "room_id", "seq", "stack", "users", "view")

    def __init__(self, room_id: str, connections: Connections) -> None:
        self.room_id = room_id
        self.connections = connections
        self.view: RoomRecord | None = None  # None until read (or: no such room)
        self.seq = 0  # the room's seq the view reflects
        self.held: list[StoredEvent] | None = []  # delivered while the view is read
        self.users = 0  # connections holding the watch
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stack = AsyncExitStack()

    async def open(self, hub: Hub, db: Database) -> None:
        """Subscribe first, then read: whatever the read does not show is delivered after."""
        await self.stack.enter_async_context(hub.subscribe(self.room_id, self))
        self.view, self.seq = await db.run(_read_view, self.room_id, snapshot=True)
        held, self.held = self.held or [], None
        for event in held:
            self._apply(event)

    # Listener --------------------------------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        if not event.type.startswith(KINDS):
            return
        if self.held is not None:
            self.held.append(event)
        else:
            self._apply(event)

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        return None

    def _apply(self, event: StoredEvent) -> None:
        view = self.view
        if view is None or event.seq <= self.seq:
            return  # the view already shows it
        self.seq = event.seq
        data: dict[str, Any] = event.data
        if event.type == REMOVED:
            user_id = str(data["user_id"])
            view.members = [m for m in view.members if m.user_id != user_id]
            self.connections.removed(self.room_id, user_id)
        elif event.type in (ADDED, UPDATED):
            raw = data["member"]
            member = MemberRecord(str(raw["user_id"]), str(raw["name"]), str(raw["role"]))
            others = [m for m in view.members if m.user_id != member.user_id]
            view.members = sorted([*others, member], key=lambda m: m.user_id)
            self.connections.role_changed(self.room_id, member.user_id, member.role)
        elif event.type == ROOM_UPDATED:
            room = data["room"]
            view.title, view.archived = str(room["title"]), bool(room["archived"])


def _read_view(conn: Connection, room_id: str) -> tuple[RoomRecord | None, int]:
    """The room and its stream's seq, in one snapshot."""
    seq = last_seqs_sync(conn, [room_id]).get(room_id, 0)
    return get_room_sync(conn, room_id), seq


class RoomWatches:
    """The process's watches, one per room with sockets here, shared by those sockets."""

    def __init__(self, db: Database, hub: Hub, connections: Connections) -> None:
        self.db = db
        self.hub = hub
        self.connections = connections
        self.watches: dict[str, RoomWatch] = {}

    def current(self, room_id: str) -> RoomRecord | None:
        """The room as it is now, if a watch here keeps it (else: read the database)."""
        watch = self.watches.get(room_id)
        if watch is None or not watch.ready.done() or watch.ready.exception() is not None:
            return None
        return watch.view

    async def enter(self, room_id: str) -> RoomWatch:
        """The room's watch, opened by its first user; ``leave`` it when done."""
        watch = self.watches.get(room_id)
        first = watch is None
        if watch is None:
            watch = self.watches[room_id] = RoomWatch(room_id, self.connections)
        watch.users += 1
        try:
            if first:
                try:
                    await watch.open(self.hub, self.db)
                except BaseException as exc:
                    watch.ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
                    watch.ready.exception()  # retrieved: waiters re-raise their own copy
                    raise
                watch.ready.set_result(None)
            else:
                await asyncio.shield(watch.ready)
        except BaseException:
            await self.leave(watch)
            raise
        return watch

    async def leave(self, watch: RoomWatch) -> None:
        watch.users -= 1
        if watch.users > 0:
            return
        if self.watches.get(watch.room_id) is watch:
            del self.watches[watch.room_id]
        await watch.stack.aclose()
