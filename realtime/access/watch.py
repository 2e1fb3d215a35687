"""Each room's current record (members, title, archive flag) in this process, for as long as
the process holds a socket of the room (room socket or notes socket): a hub listener on the
room's stream applies its ``member.*`` and ``room.updated`` events as they are delivered
(gap-free, from whichever process stored them) and closes the sockets a removal ends.

A notes socket may be the only one of its room here: the watch subscribes the room's
stream for it all the same, so a removal reaches it as fast as it reaches a room socket.

In a reconnect storm (a process stopped, its sockets all come here at once) a room's
handshakes share one read of the room and its seq (``record``), the rooms asked in one turn
of the loop are read together (``TurnReads``), and the watch opened next starts from that
read when the stream has not moved past it, instead of reading again: one read of the room
per room, not one per socket plus one for the watch.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from contextlib import AsyncExitStack
from dataclasses import replace
from functools import partial
from typing import Any

from sqlalchemy import Connection

from ..persistence.database import Database
from ..persistence.events import StoredEvent
from ..persistence.rooms import MemberRecord, RoomRecord, room_views_sync
from ..persistence.turns import TurnReads
from ..streams.hub import Frames, Hub
from .members import ADDED, REMOVED, ROOM_UPDATED, UPDATED
from .registry import Connections

KINDS = ("member.", "room.")
# Handshake reads kept for a watch to start from (each used once, checked against the
# stream's seq): a bound, since a refused handshake's read is never used.
HINTS = 1024

View = tuple[RoomRecord | None, int]  # a room's record as of a seq of its stream


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

    async def open(self, hub: Hub, db: Database, hint: View | None = None) -> None:
        """Subscribe first, then read: whatever the read does not show is delivered after.
        ``hint``, a read made before subscribing, stands for the read when the hub has
        delivered nothing after its seq: every later event then reaches this listener."""
        await self.stack.enter_async_context(hub.subscribe(self.room_id, self))
        room, seq = hint if hint is not None else (None, 0)
        delivered = hub.delivered(self.room_id)
        if room is not None and delivered is not None and delivered <= seq:
            self.view, self.seq = _copy(room), seq
        if self.view is None:
            self.view, self.seq = (await db.run(_read_views, [self.room_id]))[0]
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


def _read_views(conn: Connection, room_ids: list[str]) -> list[View]:
    """Each room and its stream's seq, as of one state (None, 0: no such room)."""
    views = room_views_sync(conn, room_ids)
    return [views.get(room_id, (None, 0)) for room_id in room_ids]


def _copy(room: RoomRecord) -> RoomRecord:
    """The watch's own record: the handshakes that shared the read keep theirs."""
    return replace(room, members=list(room.members))


class RoomWatches:
    """The process's watches, one per room with sockets here, shared by those sockets."""

    def __init__(self, db: Database, hub: Hub, connections: Connections) -> None:
        self.db = db
        self.hub = hub
        self.connections = connections
        self.watches: dict[str, RoomWatch] = {}
        self.reading: dict[str, asyncio.Future[View]] = {}  # handshake reads under way
        # The rooms the handshakes of one turn ask for, read together (a reconnect storm).
        self.views: TurnReads[str, View] = TurnReads(db, _read_views)
        self.hints: OrderedDict[str, View] = OrderedDict()  # done, for the next watch

    async def record(self, room_id: str) -> RoomRecord | None:
        """The room for a handshake: the watch's view when this process keeps one, else
        the database's, read once for every handshake of the room that asks meanwhile."""
        room = self.current(room_id)
        if room is not None:
            return room
        return await self.stored(room_id)

    async def stored(self, room_id: str) -> RoomRecord | None:
        """The room as the database has it, read once for every handshake of the room that
        asks meanwhile (a watch's view can lag a change made through another process)."""
        reading = self.reading.get(room_id)
        if reading is None:
            reading = self.reading[room_id] = asyncio.ensure_future(self._read(room_id))
            reading.add_done_callback(partial(self._read_done, room_id))
        view, _ = await asyncio.shield(reading)  # one asker gone: the others still wait
        return view

    def _read_done(self, room_id: str, reading: asyncio.Future[View]) -> None:
        if self.reading.get(room_id) is reading:
            del self.reading[room_id]
        if not reading.cancelled():
            reading.exception()  # retrieved: every asker may have gone

    async def _read(self, room_id: str) -> View:
        view = await self.views.read(room_id)
        if view[0] is not None:
            self.hints[room_id] = view
            self.hints.move_to_end(room_id)
            while len(self.hints) > HINTS:
                self.hints.popitem(last=False)
        return view

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
                    await watch.open(self.hub, self.db, self.hints.pop(room_id, None))
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
