"""The inbox socket: ``/inbox/ws?token=T``, every room of the token's user.

Admitted like the room socket (origin, per-address slot, token, subprotocols, limits), for
a user's token only: a service token is not a member of anything (close 4403). The first
frame is ``inbox.welcome`` with every room's summary, then ``inbox.room`` whenever one of
them changes. It takes ``ping`` and ``auth.refresh``; a reconnect gets a fresh welcome (the
inbox is a view, not a log: there is nothing to resume).
"""

from __future__ import annotations

from typing import Any

from ..access.registry import Ender
from ..auth import Principal
from ..protocol import Close, ErrorCode, FrameError, decode_frame, error_frame, frame_id
from ..sockets.admission import Admission, Refused, Rules
from ..sockets.clock import refresh
from ..sockets.limits import TokenBucket
from ..sockets.receive import Ending, Limits, receive_loop
from ..sockets.transport import ASGIReceive, ASGISend, socket_transport
from .connection import InboxConnection
from .parts import InboxParts

KIND = "inbox"


async def users_only(
    principal: Principal, query: dict[str, list[str]], scope: dict[str, Any]
) -> Principal:
    """The inbox's ``authorize`` hook: any user, no service token."""
    if principal.is_service:
        raise Refused(Close.FORBIDDEN, "a service token has no inbox", "forbidden")
    return principal


def inbox_rules() -> Rules[Principal]:
    return Rules(KIND, users_only)


class InboxSocket:
    """A raw ASGI endpoint, like the room socket."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: InboxParts | None = None  # given by the lifespan (app.py)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        parts = self.parts
        assert parts is not None, "the lifespan has not started"
        async with Admission(parts.door, parts.rules, scope, receive, send) as admitted:
            if admitted is None:
                return
            transport = socket_transport(send, scope, parts.settings, parts.metrics)
            warn = parts.settings.auth_expiring_before
            conn = InboxConnection(admitted.principal, admitted.codec, transport, warn)
            live = Ender(lambda: conn.principal, transport.close_now)
            # Registered for its token's life: a revocation closes it 4401 on every process.
            async with parts.access.track(live, kind="inbox") as tracked:
                if tracked.refusal is not None:  # revoked since the handshake
                    await transport.close(tracked.refusal.code, tracked.refusal.reason)
                    return
                await _serve(parts, conn, receive, live)


async def _serve(
    parts: InboxParts, conn: InboxConnection, receive: ASGIReceive, live: Ender
) -> None:
    settings = parts.settings
    try:
        conn.clock.deadline(conn.principal.expires_at)  # expiry ends the welcome's load too
        async with parts.inbox.session(conn):
            conn.clock.set(conn.principal.expires_at)
            bucket = TokenBucket(settings.rate_per_second, settings.rate_burst)
            limits = Limits(settings.max_frame_bytes, settings.rate_strikes)
            ending = await receive_loop(
                receive, _Reader(parts, conn, live), limits, bucket, parts.metrics
            )
    finally:
        conn.clock.cancel()
    if not ending.by_peer:
        await conn.transport.close(ending.code, ending.reason)


class _Reader:
    """The inbox's side of the receive loop: ``ping`` and ``auth.refresh`` only."""

    __slots__ = ("conn", "live", "parts", "transport")

    def __init__(self, parts: InboxParts, conn: InboxConnection, live: Ender) -> None:
        self.parts = parts
        self.conn = conn
        self.live = live
        self.transport = conn.transport

    def limited(self) -> bool:
        self.parts.metrics.inc("menteo_limit_hits_total", "rate_limited")
        self.conn.send_frame(error_frame(ErrorCode.RATE_LIMITED, "slow down: frame dropped", None))
        return True

    def handle(self, data: str | bytes) -> Ending | None:
        conn = self.conn
        try:
            frame = decode_frame(conn.codec, data)
            if frame["type"] == "ping":
                conn.send_frame({"type": "pong", "id": frame_id(frame)})
            elif frame["type"] == "auth.refresh":  # as on the room socket
                conn.principal, reply = refresh(self.parts.door.tokens, conn.user_id, frame)
                self.parts.access.connections.refreshed(self.live)
                conn.clock.set(conn.principal.expires_at)
                conn.send_frame(reply)
            else:
                raise FrameError(
                    ErrorCode.UNKNOWN_TYPE,
                    "the inbox socket takes 'ping' and 'auth.refresh'",
                    frame_id(frame),
                )
        except FrameError as exc:
            conn.send_frame(error_frame(exc.code, exc.message, exc.frame_id))
        return None
