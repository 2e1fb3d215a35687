"""The room socket: ``/rooms/{room_id}/ws?token=T[&since=SEQ][&epoch=E]``.

Handshake checks, the welcome frame, resume with ``since``, then the receive loop that
validates frames and hands durable ones to the writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..persistence.events import NewEvent
from ..protocol import (
    JSON,
    ErrorCode,
    FrameError,
    bool_field,
    chat_body,
    client_id,
    decode_frame,
    frame_id,
    seq_field,
)
from ..sockets.admission import Admission
from ..sockets.clock import refresh
from ..sockets.limits import TokenBucket
from ..sockets.receive import Ending, Limits, receive_loop
from ..sockets.shared_rate import SharedRate
from ..sockets.transport import ASGIReceive, ASGISend, offer_handoff, socket_transport
from ..streams.history import Replay
from .chat_ops import CHAT_CHANGE_HANDLERS
from .checklist_ops import CHECKLIST_HANDLERS
from .connection import RoomConnection
from .parts import RoomParts
from .welcomes import CHAT_TYPES

log = logging.getLogger("menteo.rooms")

MAX_SEQ = 2**53  # the largest integer every JSON client reads exactly
Handler = Callable[[RoomParts, RoomConnection, dict[str, Any]], None]


def handle_chat(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    cid = client_id(frame)
    conn.writable(cid)
    body = chat_body(frame, cid)
    data: dict[str, Any] = {"body": body}
    if frame.get("reply_to") is not None:  # the writer checks it names a chat message here
        data["reply_to"] = seq_field(frame, "reply_to")
    item = NewEvent(conn.room.id, "chat.message", conn.user_id, conn.principal.name, cid, data)
    conn.ack_when_stored(state.writer.append(item), cid, "chat.message")


def handle_typing(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    # Limited per user, not per socket: five tabs type no faster than one (presence/typing).
    active = bool_field(frame, "active")
    state.presence.typing.update(conn.room.id, conn.user_id, active, state.settings.typing_interval)


def handle_ping(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    conn.send_frame({"type": "pong", "id": frame_id(frame)})


def handle_read(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    """Everything up to ``seq`` is read by this user (every tab and device): stored with the
    next marker write (coalesced), then announced as ``read.marker``; a lower ``seq`` is
    ignored, a higher one than the room's last seq is clamped to it."""
    seq = frame.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise FrameError(ErrorCode.INVALID, "'seq' must be an integer of 0..2^53", frame_id(frame))
    if conn.role == "service":
        raise FrameError(ErrorCode.FORBIDDEN, "only a member has a read marker", frame_id(frame))
    state.markers.mark(conn.room.id, conn.user_id, seq)


def handle_refresh(state: RoomParts, conn: RoomConnection, frame: dict[str, Any]) -> None:
    """A new token for the open socket: same user, later expiry."""
    conn.principal, reply = refresh(state.door.tokens, conn.user_id, frame)
    state.access.connections.refreshed(conn)  # a revocation of the new token's id finds it
    conn.clock.set(conn.principal.expires_at)
    conn.send_frame(reply)


HANDLERS: dict[str, Handler] = {
    "chat.send": handle_chat,
    "typing": handle_typing,
    "read": handle_read,
    "ping": handle_ping,
    "auth.refresh": handle_refresh,
    **CHAT_CHANGE_HANDLERS,
    **CHECKLIST_HANDLERS,
}


class RoomSocket:
    """A raw ASGI endpoint: no per-frame wrapper between the server and the protocol."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: RoomParts | None = None  # given by the lifespan (app.py)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        state = self.parts
        assert state is not None, "the lifespan has not started"
        async with Admission(state.door, state.rules, scope, receive, send) as admitted:
            if admitted is None:
                return
            transport = socket_transport(send, scope, state.settings, state.metrics)
            room, role = admitted.grant
            warn = state.settings.auth_expiring_before
            conn = RoomConnection(room, admitted.principal, role, admitted.codec, transport, warn)
            if admitted.param("handoff") == "1":  # its client moves when asked (drain.py)
                offer_handoff(scope, conn.hand_off)
            await _serve(state, conn, receive, admitted.param("since"), admitted.param("epoch"))


async def _serve(
    state: RoomParts,
    conn: RoomConnection,
    receive: ASGIReceive,
    since: str | None,
    epoch: str | None,
) -> None:
    """Subscribe the room's stream (with its recent history kept: the first subscriber sets
    that, so before access's watch shares the subscription), register with access, then
    join (nothing is sent before the welcome: the hub's frames are held until then)."""
    room_id = conn.room.id
    recent = (CHAT_TYPES, state.settings.history_limit)  # the welcome's history, kept
    async with (
        state.hub.subscribe(room_id, conn, recent=recent),
        state.access.track(conn, room_id, "room") as tracked,
    ):
        if tracked.refusal is not None:  # removed or revoked since the handshake
            await conn.transport.close(tracked.refusal.code, tracked.refusal.reason)
            return
        assert tracked.room is not None
        conn.room, conn.role = tracked.room, tracked.role  # kept current by access
        await _join(state, conn, receive, since, epoch)


async def _join(
    state: RoomParts,
    conn: RoomConnection,
    receive: ASGIReceive,
    since: str | None,
    epoch: str | None,
) -> None:
    """Presence, the welcome and the catch-up, then frames until the socket ends."""
    room_id = conn.room.id
    disconnect_code = 1006
    accepted = time.perf_counter()  # for menteo_welcome_seconds
    state.presence.typing.attach(room_id, conn.user_id)
    online = await _present(state, conn)
    try:
        conn.clock.deadline(conn.principal.expires_at)  # expiry ends the catch-up too
        await _welcome(state, conn, since, epoch, accepted, online)
        conn.go_live()
        conn.clock.set(conn.principal.expires_at)
        disconnect_code = await _receive_loop(state, conn, receive)
    finally:
        conn.clock.cancel()
        state.presence.typing.detach(room_id, conn.user_id)
        # A clean close leaves at once; a drop or a server restart gets the grace period.
        # So does a socket closed for its access (removed, revoked): it will not be back.
        clean = disconnect_code in (1000, 1001) or conn.access_ended
        try:
            await state.presence.leave(room_id, conn.user_id, conn.id, clean=clean)
        except Exception as exc:
            log.warning("presence leave failed in %s: %r", room_id, exc)


async def _welcome(
    state: RoomParts,
    conn: RoomConnection,
    since: str | None,
    epoch: str | None,
    accepted: float,
    online: list[dict[str, str]],
) -> None:
    settings = state.settings
    room_id = conn.room.id
    members = [m.user_id for m in conn.room.members]
    user = None if conn.role == "service" else conn.user_id
    reader = (members, user, settings.digest_max_events, state.windows)
    resumed, history, checklist, reads = await state.welcomes.read(
        room_id, since, epoch, state.hub.recent(room_id, CHAT_TYPES), reader
    )
    welcome = {
        "type": "welcome",
        "room": conn.room.as_dict(),
        "you": {"user_id": conn.user_id, "name": conn.principal.name, "role": conn.role},
        "seq": resumed.last,
        "epoch": state.db.epoch,
        "recovered": resumed.recovered,
        # Spliced as ready JSON: the frames are encoded once, not once per join.
        "history": orjson.Fragment("[" + ",".join(history) + "]")
        if conn.codec is JSON
        else [orjson.loads(text) for text in history],
        "presence": online,
        "checklist": checklist,
        **reads,
    }
    await conn.transport.send_wait(conn.codec.encode(welcome))
    welcomed = time.perf_counter() - accepted
    state.metrics.histogram("menteo_welcome_seconds", "room").observe(welcomed)
    conn.last_seq = resumed.cursor
    # Nothing missed (a client that was live when its server went): every event after the
    # welcome's seq reaches this socket through the hub, subscribed before the welcome's
    # read, so there is nothing to read back. A reconnect storm skips a read per socket.
    if resumed.recovered and resumed.cursor < resumed.last:
        await _catch_up(state, conn)


async def _catch_up(state: RoomParts, conn: RoomConnection) -> None:
    """Every event after ``conn.last_seq``, page by page, until the database has no more or
    the socket is closed (aborted for not reading, or its token expired)."""
    replay = Replay(conn.room.id, state.settings.replay_page)
    while not conn.transport.closed and not replay.done:
        for event in await replay.next(state.db, conn.last_seq):
            await conn.send_event(event)


async def _present(state: RoomParts, conn: RoomConnection) -> list[dict[str, str]]:
    """Join presence; returns the welcome's list, read by the join itself: the presence
    frames held until the welcome from here on follow it."""
    conn.presence_read()
    try:
        return await state.presence.join(conn.room.id, conn.user_id, conn.principal.name, conn.id)
    except Exception as exc:  # presence is best effort; chat must not depend on it
        # One line, no traceback: a Redis outage fails every join and leave meanwhile.
        log.warning("presence join failed in %s: %r", conn.room.id, exc)
        return [{"user_id": conn.user_id, "name": conn.principal.name}]


async def _receive_loop(state: RoomParts, conn: RoomConnection, receive: ASGIReceive) -> int:
    """Read frames until the peer goes; returns the close code it went with.

    A socket closed for being slow (1013) ends here too: the server delivers its
    disconnect once the close handshake or the ping timeout finishes it.
    """
    settings = state.settings
    bucket = TokenBucket(settings.rate_per_second, settings.rate_burst)
    limits = Limits(settings.max_frame_bytes, settings.rate_strikes)
    ending = await receive_loop(receive, _Reader(state, conn), limits, bucket, state.metrics)
    if not ending.by_peer:
        await conn.transport.close(ending.code, ending.reason)
    return ending.code


class _Reader:
    """The room's side of the receive loop: the per-user budget, then the handler table."""

    __slots__ = ("conn", "state", "transport", "user_bucket")

    def __init__(self, state: RoomParts, conn: RoomConnection) -> None:
        self.state = state
        self.conn = conn
        self.transport = conn.transport
        settings = state.settings
        user_bucket = state.user_buckets.get(conn.user_id)  # shared by the user's sockets here
        if user_bucket is None:
            user_bucket = TokenBucket(settings.user_rate_per_second, settings.user_rate_burst)
            state.user_buckets[conn.user_id] = user_bucket
        self.user_bucket = user_bucket

    def limited(self) -> bool:
        self.state.metrics.inc("menteo_limit_hits_total", "rate_limited")
        self.conn.send_error(ErrorCode.RATE_LIMITED, "slow down: frame dropped")
        return True

    def handle(self, data: str | bytes) -> Ending | Awaitable[Ending | None] | None:
        conn = self.conn
        shared = self.state.user_rates
        if shared is not None:  # every process's sockets of the user together (Redis)
            allowed = shared.take_now(conn.user_id)
            if allowed is None:  # a new lease: one round trip, then this frame
                return self._handle_leased(shared, data)
        else:  # many tabs may not add up to more than one user's share
            allowed = self.user_bucket.take()
        if not allowed:
            self._user_limited()
            return None
        _dispatch(self.state, conn, data)
        return None

    async def _handle_leased(self, shared: SharedRate, data: str | bytes) -> None:
        if await shared.take(self.conn.user_id):
            if not self.conn.transport.closed:
                _dispatch(self.state, self.conn, data)
        else:
            self._user_limited()

    def _user_limited(self) -> None:
        self.state.metrics.inc("menteo_limit_hits_total", "user_rate_limited")
        self.conn.send_error(
            ErrorCode.RATE_LIMITED, "slow down: your sockets together send too much"
        )


def _dispatch(state: RoomParts, conn: RoomConnection, data: str | bytes) -> None:
    try:
        frame = decode_frame(conn.codec, data)
        handler = HANDLERS.get(frame["type"])
        if handler is None:
            raise FrameError(
                ErrorCode.UNKNOWN_TYPE, f"unknown type {frame['type'][:40]!r}", frame_id(frame)
            )
        handler(state, conn, frame)
    except FrameError as exc:
        conn.send_error(exc.code, exc.message, exc.frame_id)
