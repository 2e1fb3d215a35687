"""Access in a running process: the live-connection registry, the room watches and the
revocations, opened by the lifespan. It follows the ``access`` stream for the life of the
process, so a revocation stored by any process reaches this one's connections (gap-free: the
hub fills what the broker drops, and its sweep finds a lost last message)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from ..auth import Principal
from ..metrics import Metrics
from ..persistence.database import Database
from ..persistence.events import StoredEvent
from ..persistence.rooms import RoomRecord
from ..protocol import Close
from ..streams.hub import Frames, Hub
from .registry import Connections, Live
from .revocations import ACCESS_STREAM, REVOKED, Revocations, load_revocations_sync
from .watch import RoomWatch, RoomWatches


class Access:
    def __init__(self, db: Database, hub: Hub, metrics: Metrics) -> None:
        self.db = db
        self.hub = hub
        self.connections = Connections(metrics)
        self.revocations = Revocations()
        self.rooms = RoomWatches(db, hub, self.connections)
        self._subscription = AsyncExitStack()

    async def start(self) -> None:
        """Follow the ``access`` stream, then load the stored revocations: what the load
        does not show is delivered after it."""
        await self._subscription.enter_async_context(self.hub.subscribe(ACCESS_STREAM, self))
        for data in await self.db.run(load_revocations_sync):
            self.revocations.apply(data)

    async def close(self) -> None:
        await self._subscription.aclose()

    def revoked(self, principal: Principal) -> bool:
        return self.revocations.covers(principal)

    def track(self, live: Live, room_id: str | None = None, kind: str = "") -> Tracked:
        """Register ``live`` (a connection of ``kind``: room, notes, feed, inbox) for the
        ``async with`` block; see ``Tracked``."""
        return Tracked(self, live, room_id, kind)

    # The ``access`` stream's listener ----------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        if event.type != REVOKED:
            return
        self.revocations.apply(event.data)
        if "user_id" in event.data:
            user_id, before = str(event.data["user_id"]), float(event.data["issued_before"])
            self.connections.revoke_user(user_id, before)
        else:
            self.connections.revoke_token(str(event.data["jti"]))

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        return None


@dataclass(slots=True)
class Refusal:
    code: int
    reason: str


class Tracked:
    """A connection registered with access for as long as it is open. Entered after the
    handshake's checks, it checks again once registered (and, for a room, once the room's
    watch is open): a change that landed in between is caught here, one after it by the
    registry. ``refusal`` says why the connection must close now; ``room`` and ``role`` are
    the room's current record and the caller's role in it."""

    __slots__ = ("access", "kind", "live", "refusal", "role", "room", "room_id", "watch")

    def __init__(self, access: Access, live: Live, room_id: str | None, kind: str = "") -> None:
        self.access = access
        self.kind = kind
        self.live = live
        self.room_id = room_id
        self.watch: RoomWatch | None = None
        self.refusal: Refusal | None = None
        self.room: RoomRecord | None = None
        self.role = ""

    async def __aenter__(self) -> Tracked:
        access = self.access
        access.connections.add(self.live, self.room_id, self.kind)
        try:
            if self.room_id is not None:
                self.watch = await access.rooms.enter(self.room_id)
                self.room = self.watch.view
            self.refusal = self._check()
        except BaseException:
            await self._leave()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._leave()

    def _check(self) -> Refusal | None:
        principal = self.live.principal
        if self.access.revoked(principal):
            return Refusal(Close.UNAUTHORIZED, "unauthorized: token revoked")
        if self.room_id is None:
            return None
        if self.room is None:
            return Refusal(Close.NOT_FOUND, "no such room")
        member = self.room.member(principal.user_id)
        if member is None and not principal.is_service:
            return Refusal(Close.FORBIDDEN, "not a member of this room")
        self.role = member.role if member is not None else "service"
        return None

    async def _leave(self) -> None:
        self.access.connections.remove(self.live)
        watch, self.watch = self.watch, None
        if watch is not None:
            await self.access.rooms.leave(watch)
