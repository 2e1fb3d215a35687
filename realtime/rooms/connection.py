"""One member's socket in one room: joins the stream, catches up, then goes live."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ..auth import Principal
from ..persistence.events import AppendResult, Rejected, StoredEvent
from ..persistence.rooms import RoomRecord
from ..protocol import Codec, ErrorCode, FrameError, error_frame
from ..sockets.clock import WARN_BEFORE, TokenClock
from ..sockets.transport import Transport
from ..streams.hub import Frames

# Frames that change who a socket shows online (not typing).
LISTS = frozenset({"presence.join", "presence.leave", "presence.sync"})


class RoomConnection:
    """A hub listener. Until ``go_live`` the hub's frames are held back, so that the welcome
    frame and the catch-up from the database go first and nothing is sent twice."""

    __slots__ = (
        "__weakref__",
        "access_ended",
        "clock",
        "codec",
        "held",
        "id",
        "last_seq",
        "presence_mark",
        "principal",
        "role",
        "room",
        "transport",
    )

    def __init__(
        self,
        room: RoomRecord,
        principal: Principal,
        role: str,
        codec: Codec,
        transport: Transport,
        warn_before: float = WARN_BEFORE,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.room = room
        self.principal = principal
        self.role = role
        self.codec = codec
        self.transport = transport
        self.last_seq = 0  # the newest seq this socket has been sent
        self.held: list[tuple[int, Frames]] | None = []  # hub frames while catching up
        self.presence_mark = 0  # held frames that came before the welcome's presence list
        self.clock = TokenClock(transport, self.send_frame, warn_before)
        self.access_ended = False  # closed for its access: removed, or its token revoked

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    # Access (access/registry.py: ``Live``) -------------------------------------------------
    def end(self, code: int, reason: str) -> None:
        """Removed from the room, or the token revoked: closed now, what is queued dropped."""
        self.access_ended = True
        self.transport.close_now(code, reason)

    def role_changed(self, role: str) -> None:
        self.role = role

    def writable(self, frame_id: str | None) -> None:
        """Refuse a write (chat, checklist) while the room is archived; the socket stays open.
        ``room`` is the room's watch view, current on every process."""
        if self.room.archived:
            raise FrameError(ErrorCode.ARCHIVED, "the room is archived: it is read-only", frame_id)

    # Listener ---------------------------------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        if self.held is not None:
            self.held.append((event.seq, frames))
        elif event.seq > self.last_seq:
            self.last_seq = event.seq
            self.transport.send_frames(frames, self.codec)

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        if exclude_user == self.principal.user_id:
            return
        if self.held is not None:
            self.held.append((0, frames))
        else:
            self.transport.send_frames(frames, self.codec)

    # Catching up ----------------------------------------------------------------------
    async def send_event(self, event: StoredEvent) -> None:
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            await self.transport.send_wait(self.codec.encode(event.frame()))

    def presence_read(self) -> None:
        """The welcome's presence list is read now. The presence frames held so far are in
        it already; sent after it, they would undo what happened since (a leave sent before
        the user's rejoin, with no join to follow because the list has them)."""
        if self.held is not None:
            self.presence_mark = len(self.held)

    def go_live(self) -> None:
        held, self.held = self.held or [], None
        for i, (seq, frames) in enumerate(held):
            if i < self.presence_mark and seq == 0 and frames.frame.get("type") in LISTS:
                continue
            if seq == 0 or seq > self.last_seq:
                self.last_seq = max(self.last_seq, seq)
                self.transport.send_frames(frames, self.codec)

    def hand_off(self, close_in: float) -> bool:
        """The process is stopping: ask the client to open its next socket (to a process
        that stays) and then close this one, which serves it meanwhile. Not before the
        welcome: a socket still joining is closed 1012 at once, as without a hand-off."""
        if self.held is not None:
            return False
        self.send_frame({"type": "reconnect", "reason": "server restarting", "close_in": close_in})
        return True

    # Replies --------------------------------------------------------------------------
    def send_frame(self, frame: dict[str, Any]) -> None:
        self.transport.send(self.codec.encode(frame))

    def send_error(self, code: str, message: str, frame_id: str | None = None) -> None:
        self.send_frame(error_frame(code, message, frame_id))

    def ack_when_stored(
        self, fut: asyncio.Future[AppendResult], client_id: str, event_type: str
    ) -> None:
        def done(f: asyncio.Future[AppendResult]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if isinstance(exc, Rejected):
                self.send_error(exc.code, exc.message, client_id)
                return
            if exc is not None:
                self.send_error(ErrorCode.UNAVAILABLE, "not stored, send it again", client_id)
                return
            event = f.result().event
            if event.type != event_type:
                self.send_error(ErrorCode.CONFLICT, "this id is used by another event", client_id)
                return
            self.send_frame({"type": "ack", "id": client_id, "seq": event.seq})

        fut.add_done_callback(done)
