"""Every inbox of this process, kept live: loads, live updates, holes and sweeps.

Across processes through the hub on one pseudo-stream, ``inbox:all``: one broker
subscription per process, whatever the number of sockets or rooms. What a process's writer
committed to rooms (seq, type, author and time of each event, and the batch's newest chat
message), the markers it stored and the rooms it created go out as hub signals on it (to
this process's own listener too); each process applies what concerns its inbox users.
Signals are best effort like any broker message, so a room's events are applied in seq
order, a hole is filled from the database, and on a shared broker a sweep compares what the
inboxes show with the database every ``MENTEO_SWEEP_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from ..config import Settings
from ..faults import Faults, is_fatal
from ..persistence.chat import CHANGE_TYPES
from ..persistence.database import Database
from ..persistence.events import StoredEvent, last_seqs_sync
from ..reads.queries import (
    CHAT,
    counts_sync,
    member_rooms_sync,
    memberships_sync,
    newest_first,
    room_facts_sync,
    rooms_read_sync,
    unread_sync,
    users_markers_sync,
)
from ..streams.history import Replay
from ..streams.hub import Frames, Hub, Subscription
from .connection import InboxConnection
from .views import Light, RoomView, Tally, UserInbox

log = logging.getLogger("menteo.inbox")

INBOX_STREAM = "inbox:all"  # a hub stream with no events: its signals only
# The durable room events that change a summary: a chat message counts; every one moves
# ``last_seq`` and ``last_activity``.
ROOM_TYPES = ("chat.", "checklist.", "member.", "room.")
# After these the room's title and members are read again (who sees it, and how).
REFRESH_TYPES = frozenset({"member.added", "member.updated", "member.removed", "room.updated"})


class InboxService:
    def __init__(
        self, db: Database, hub: Hub, settings: Settings, faults: Faults | None = None
    ) -> None:
        self.db = db
        self.hub = hub
        self.settings = settings
        self.faults = faults if faults is not None else Faults()
        self.rooms: dict[str, RoomView] = {}
        self.users: dict[str, UserInbox] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.sweeper: asyncio.Task[None] | None = None
        self.subscription: Subscription | None = None
        self.updates = 0  # inbox.room frames sent

    async def start(self) -> None:
        self.subscription = self.hub.subscribe(INBOX_STREAM, self)
        await self.subscription.__aenter__()
        self.hub.on_resync.append(self.resync)
        if self.hub.broker.shared:
            self.sweeper = asyncio.create_task(self._sweep_loop(), name="menteo-inbox-sweep")

    async def close(self) -> None:
        tasks = [*self.tasks, *(v.filling for v in self.rooms.values() if v.filling)]
        if self.sweeper is not None:
            tasks.append(self.sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.subscription is not None:
            await self.subscription.__aexit__(None, None, None)

    # What this process did: told to every process --------------------------------------
    def committed(self, events: list[StoredEvent]) -> None:
        """The writer's hook, after the hub's."""
        shared = self.hub.broker.shared
        batches: dict[str, list[StoredEvent]] = {}
        for event in events:
            if not event.type.startswith(ROOM_TYPES):
                continue
            if not shared and event.stream not in self.rooms and event.type not in REFRESH_TYPES:
                continue  # no inbox shows this room and there is no other process
            batches.setdefault(event.stream, []).append(event)
        for room, batch in batches.items():
            newest = next((e for e in reversed(batch) if e.type == CHAT), None)
            frame = {
                "type": "i.events",
                "room": room,
                "events": [[e.seq, e.type, e.author_id, e.ts] for e in batch],
                "message": newest.frame() if newest is not None else None,
                # Edits and deletes: the summary's last message must not show erased words.
                "changes": [[e.type, e.data, e.ts] for e in batch if e.type in CHANGE_TYPES],
            }
            self.hub.signal(INBOX_STREAM, frame)

    def marker_moved(self, room: str, user: str, seq: int) -> None:
        """A marker this process stored."""
        self.hub.signal(INBOX_STREAM, {"type": "i.read", "room": room, "user": user, "seq": seq})

    def room_changed(self, room: str) -> None:
        """A room this process created (or changed without an event)."""
        self.hub.signal(INBOX_STREAM, {"type": "i.room", "room": room})

    # The hub's listener ----------------------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        return None  # the stream has no events

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        frame = frames.frame
        kind = frame.get("type")
        if kind == "i.events":
            self._events(frame["room"], frame["events"], frame.get("message"))
            if frame.get("changes"):
                self._changes(frame["room"], frame["changes"])
        elif kind == "i.read":
            self._read(frame["room"], frame["user"], int(frame["seq"]))
        elif kind == "i.room":
            self._changed(frame["room"])

    def _events(self, room_id: str, wires: list[list[Any]], message: Any) -> None:
        newest = message["seq"] if isinstance(message, dict) else None
        lights: list[Light] = [
            (seq, type_, author, ts, message if seq == newest else None)
            for seq, type_, author, ts in wires
        ]
        if any(light[1] in REFRESH_TYPES for light in lights):
            self._changed(room_id)
        view = self.rooms.get(room_id)
        if view is None:
            return
        if view.arrive(lights):
            self.updates += view.notify()
        if view.pending:
            self._fill_later(view)

    def _changes(self, room_id: str, changes: list[list[Any]]) -> None:
        view = self.rooms.get(room_id)
        if view is not None and view.change(changes):
            self.updates += view.notify()

    def _read(self, room_id: str, user_id: str, seq: int) -> None:
        view = self.rooms.get(room_id)
        tally = view.tallies.get(user_id) if view is not None else None
        if view is None or tally is None or seq <= tally.read_seq:
            return
        if view.facts is not None and seq >= view.facts.last_seq:
            tally.read_all(seq)
            self.updates += view.notify(tally)
            return
        tally.read_seq = seq
        if view.facts is not None:  # else its load counts, and recounts if this is newer
            self._recount(view, tally)

    def _recount(self, view: RoomView, tally: Tally) -> None:
        gen = tally.begin()
        self._spawn(self._count_one(view, tally, gen, tally.read_seq, view.last_seq))

    async def _count_one(
        self, view: RoomView, tally: Tally, gen: int, after: int, upto: int
    ) -> None:
        try:
            unread = await self.db.run(unread_sync, view.id, tally.user.id, after, upto)
        except Exception as exc:
            log.warning("counting unread messages in %s failed: %r", view.id, exc)
            unread = tally.unread  # the count it had, with what came meanwhile
        if tally.counted(gen, after, unread):
            self.updates += view.notify(tally)

    # Sockets ---------------------------------------------------------------------------
    def session(self, conn: InboxConnection) -> Session:
        return Session(self, conn)

    async def open(self, conn: InboxConnection) -> None:
        """Track the user's rooms, send the welcome, then updates."""
        user = self.users.get(conn.user_id)
        if user is None:
            user = self.users[conn.user_id] = UserInbox(conn.user_id)
        user.conns.add(conn)
        try:
            await self._track(user, await self.db.run(member_rooms_sync, user.id))
        except BaseException:
            self.leave(conn)
            raise
        rooms = [
            view.summary(view.tallies[user.id])
            for view in user.views.values()
            if view.facts is not None and user.id in view.tallies
        ]
        you = {"user_id": user.id, "name": conn.principal.name}
        conn.send_frame({"type": "inbox.welcome", "you": you, "rooms": newest_first(rooms)})
        conn.live = True

    def leave(self, conn: InboxConnection) -> None:
        user = self.users.get(conn.user_id)
        if user is None:
            return
        user.conns.discard(conn)
        if user.conns:
            return
        del self.users[user.id]
        for view in list(user.views.values()):
            self._untrack(view, user.id)

    def _untrack(self, view: RoomView, user_id: str) -> None:
        tally = view.tallies.pop(user_id, None)
        if tally is not None:
            tally.user.views.pop(view.id, None)
        if not view.tallies and self.rooms.get(view.id) is view:
            del self.rooms[view.id]
            if view.filling is not None:
                view.filling.cancel()

    async def _track(self, user: UserInbox, room_ids: list[str]) -> None:
        """Show these rooms to ``user``: rooms nobody here shows yet are loaded with the
        user's counts in one read; in rooms already shown only the user's counts are read."""
        fresh: list[RoomView] = []
        joined: list[tuple[RoomView, Tally]] = []
        waits: list[asyncio.Future[None]] = []
        for room_id in room_ids:
            view = self.rooms.get(room_id)
            if view is None:
                view = self.rooms[room_id] = RoomView(room_id)
                fresh.append(view)
            tally = view.tallies.get(user.id)
            if tally is None:
                tally = view.tallies[user.id] = Tally(user)
                user.views[room_id] = view
                if view not in fresh:
                    joined.append((view, tally))
            waits.append(tally.loaded)
        if fresh:
            await self._load(user, fresh)
        if joined:
            await self._count(joined)
        if waits:  # tallies another socket of the user is loading
            await asyncio.gather(*waits)

    async def _load(self, user: UserInbox, views: list[RoomView]) -> None:
        gens = {view.id: view.tallies[user.id].begin() for view in views}
        try:
            reads = await self.db.run(
                rooms_read_sync, user.id, [v.id for v in views], snapshot=True
            )
        except BaseException as exc:
            # Other sockets waiting for these rooms fail too (not as if they were cancelled).
            failure = exc if isinstance(exc, Exception) else RuntimeError("the load stopped")
            for view in views:
                self._drop(view, failure)
            raise
        found = {read.facts.meta["id"]: read for read in reads}
        for view in views:
            read = found.get(view.id)
            if read is None:  # gone, or the user is no longer a member
                self._drop(view, None)
                continue
            view.loaded(read.facts)
            tally = view.tallies.get(user.id)
            settled = tally is not None and tally.counted(gens[view.id], read.read_seq, read.unread)
            if tally is not None and settled and tally.read_seq > read.read_seq:
                self._recount(view, tally)  # a newer marker came meanwhile
            if view.advance():
                self.updates += view.notify()
            if view.pending:
                self._fill_later(view)

    async def _count(self, pairs: list[tuple[RoomView, Tally]]) -> None:
        await asyncio.wait({view.ready for view, _ in pairs})
        jobs = []
        for view, tally in pairs:
            if view.facts is None or self.rooms.get(view.id) is not view:
                _settle(tally.loaded, None)  # the room's load failed or it was dropped
                continue
            jobs.append((view, tally, tally.begin(), view.last_seq))
        if not jobs:
            return
        items = [(view.id, tally.user.id, upto) for view, tally, _, upto in jobs]
        try:
            counts = await self.db.run(counts_sync, items, snapshot=True)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError("the count stopped")
            for _, tally, _, _ in jobs:
                tally.side = None
                _settle(tally.loaded, failure)
            raise
        for (view, tally, gen, _), (read_seq, unread) in zip(jobs, counts, strict=True):
            if tally.counted(gen, read_seq, unread) and tally.read_seq > read_seq:
                self._recount(view, tally)

    def _drop(self, view: RoomView, exc: BaseException | None) -> None:
        """A room that could not be loaded: nobody here shows it (a socket waiting for its
        load fails with ``exc``; with None the room is just left out)."""
        if self.rooms.get(view.id) is view:
            del self.rooms[view.id]
        for tally in view.tallies.values():
            tally.user.views.pop(view.id, None)
            _settle(tally.loaded, exc)
        view.tallies.clear()
        _settle(view.ready, exc or LookupError(view.id))

    # Rooms created or changed -----------------------------------------------------------
    def _changed(self, room_id: str) -> None:
        if self.users:
            self._spawn(self._refresh(room_id))

    async def _refresh(self, room_id: str) -> None:
        """Read the room's title and members again: new members with an inbox here get it,
        members no longer get nothing more of it, the others see the new title."""
        facts = (await self.db.run(room_facts_sync, [room_id])).get(room_id)
        members = {m["user_id"] for m in facts.meta["members"]} if facts is not None else set()
        view = self.rooms.get(room_id)
        if view is not None:
            if view.facts is not None and facts is not None:
                view.facts.meta = facts.meta
            for user_id in [u for u in view.tallies if u not in members]:
                self._untrack(view, user_id)
            self.updates += view.notify()
        for user_id in sorted(members):
            user = self.users.get(user_id)
            if user is not None and room_id not in user.views:
                await self._show(user, [room_id])

    async def _show(self, user: UserInbox, room_ids: list[str]) -> None:
        """Rooms added to a user with an inbox here: tracked, then sent."""
        await self._track(user, room_ids)
        for room_id in room_ids:
            view = user.views.get(room_id)
            if view is not None and user.id in view.tallies:
                self.updates += view.notify(view.tallies[user.id])

    # Holes, sweeps, resyncs -------------------------------------------------------------
    def _fill_later(self, view: RoomView, delay: float | None = None) -> None:
        if view.filling is None and view.facts is not None:
            wait = self.settings.gap_fill_delay if delay is None else delay
            view.filling = asyncio.create_task(self._fill(view, wait))

    async def _fill(self, view: RoomView, delay: float) -> None:
        """Read what a hole (or a lost last message) hid from the database."""
        replay = Replay(view.id, self.settings.replay_page)
        applied = False
        try:
            if delay:
                await asyncio.sleep(delay)  # the broker may still bring it
            while self.rooms.get(view.id) is view and not replay.done:
                if delay and not view.pending:
                    break
                for event in await replay.next(self.db, view.last_seq):
                    if event.seq == view.last_seq + 1:
                        view.pending.pop(event.seq, None)
                        view.apply(_light(event))
                        applied = True
                        if event.type in CHANGE_TYPES:  # as its lost signal would have
                            view.change([[event.type, event.data, event.ts]])
                        if event.type in REFRESH_TYPES:
                            self._changed(view.id)
        except Exception as exc:
            self.faults.survived("inbox", log, exc, "filling %s from the database failed", view.id)
        finally:
            view.filling = None
        if self.rooms.get(view.id) is view:
            if view.advance() or applied:
                self.updates += view.notify()
            if view.pending:
                self._fill_later(view)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("the inbox sweep could not read the database: %r", exc)

    async def sweep(self) -> None:
        """Catch what lost signals hid: events (a room's last seq) and markers."""
        views = [v for v in self.rooms.values() if v.facts is not None]
        if not views:
            return
        seqs, markers = await self.db.run(_sweep_reads, [v.id for v in views], list(self.users))
        for view in views:
            if self.rooms.get(view.id) is view and seqs.get(view.id, 0) > view.last_seq:
                self._fill_later(view, delay=0.0)
        for (room, user), seq in markers.items():
            self._read(room, user, seq)

    def resync(self) -> None:
        """The broker came back: signals were lost meanwhile."""
        self._spawn(self._resync())

    async def _resync(self) -> None:
        await self.sweep()
        rooms = await self.db.run(memberships_sync, list(self.users))
        for user_id, room_ids in rooms.items():
            user = self.users.get(user_id)
            new = [r for r in room_ids if user is not None and r not in user.views]
            if user is not None and new:
                await self._show(user, new)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if is_fatal(exc):
            raise exc
        log.warning("an inbox update failed: %r", exc)


class Session:
    """``InboxService.session``: the socket is tracked while the block runs."""

    __slots__ = ("conn", "service")

    def __init__(self, service: InboxService, conn: InboxConnection) -> None:
        self.service = service
        self.conn = conn

    async def __aenter__(self) -> None:
        await self.service.open(self.conn)

    async def __aexit__(self, *exc_info: object) -> None:
        self.service.leave(self.conn)


def _light(event: StoredEvent) -> Light:
    frame = event.frame() if event.type == CHAT else None
    return (event.seq, event.type, event.author_id, event.ts, frame)


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)
        fut.exception()  # retrieved: its waiters raise their own copy


def _sweep_reads(
    conn: Any, rooms: list[str], users: list[str]
) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    return last_seqs_sync(conn, rooms), users_markers_sync(conn, users)
