"""The feed socket ``GET /feed/ws?token=T&community=ID|following=1[&since=CURSOR]``.

Read-only apart from ``ping`` and ``auth.refresh``: a ``welcome`` frame with the feed's
cursor, then (with ``since``) every matching event after it, in order, then live events.
"""

from __future__ import annotations

from typing import Any

from ..access.registry import Ender
from ..auth import Principal
from ..protocol import ErrorCode, FrameError, decode_frame, error_frame, frame_id
from ..sockets.admission import Admission, Admitted, Refused, Rules, last_token
from ..sockets.clock import TokenClock, refresh
from ..sockets.limits import TokenBucket
from ..sockets.receive import Ending, Limits, receive_loop
from ..sockets.transport import ASGIReceive, ASGISend, Transport, socket_transport
from .live import FeedConnection
from .model import FeedFilter
from .parts import FeedParts
from .service import FilterError

KIND = "feed"


class FeedSocket:
    __slots__ = ("parts", "rules")

    def __init__(self) -> None:
        self.parts: FeedParts | None = None  # given by the lifespan (app.py)
        self.rules: Rules[FeedFilter] | None = None

    def open(self, parts: FeedParts) -> None:
        """Given the parts by the lifespan: the handshake resolves the filter."""

        async def authorize(
            principal: Principal, query: dict[str, list[str]], scope: dict[str, Any]
        ) -> FeedFilter:
            try:  # as dict(parse_qsl(...)) reads them: the last value of each
                return await parts.feed.resolve_filter({k: v[-1] for k, v in query.items()})
            except FilterError as exc:
                raise Refused(exc.close_code, exc.message, exc.code) from None

        self.parts = parts
        self.rules = Rules(
            KIND,
            authorize,
            crowded="too many connections",
            busy=False,
            token=last_token,
        )

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        parts, rules = self.parts, self.rules
        assert parts is not None and rules is not None, "the lifespan has not started"
        async with Admission(parts.door, rules, scope, receive, send) as admitted:
            if admitted is not None:
                await _serve(parts, admitted, scope, receive, send)


async def _serve(
    state: FeedParts,
    admitted: Admitted[FeedFilter],
    scope: dict[str, Any],
    receive: ASGIReceive,
    send: ASGISend,
) -> None:
    metrics = state.metrics
    principal = admitted.principal
    transport = socket_transport(send, scope, state.settings, metrics)
    conn = FeedConnection(principal, admitted.grant, admitted.codec, transport)
    live = Ender(lambda: conn.principal, transport.close_now)
    async with state.access.track(live, kind="feed") as tracked:
        if tracked.refusal is not None:  # revoked since the handshake
            await transport.close(tracked.refusal.code, tracked.refusal.reason)
            return
        await _follow(state, conn, live, admitted.query, receive)


async def _follow(
    state: FeedParts,
    conn: FeedConnection,
    live: Ender,
    query: dict[str, list[str]],
    receive: ASGIReceive,
) -> None:
    """Welcome, catch up, then live events and the socket's frames until it ends."""
    transport = conn.transport
    assert isinstance(transport, Transport)
    clock = TokenClock(
        transport,
        lambda frame: transport.send(conn.codec.encode(frame)),
        state.settings.auth_expiring_before,
    )
    since, epoch = _last(query, "since"), _last(query, "epoch")
    try:
        clock.deadline(conn.principal.expires_at)  # expiry ends the catch-up too
        async with state.feed.session(conn, since, epoch):
            clock.set(conn.principal.expires_at)
            ending = await _receive_loop(state, conn, clock, live, receive)
    finally:
        clock.cancel()
    if not ending.by_peer:
        await transport.close(ending.code)


def _last(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


async def _receive_loop(
    state: FeedParts, conn: FeedConnection, clock: TokenClock, live: Ender, receive: ASGIReceive
) -> Ending:
    """Answer frames until the peer goes or the socket must be closed."""
    settings = state.settings
    bucket = TokenBucket(settings.rate_per_second, settings.rate_burst)
    limits = Limits(settings.max_frame_bytes, settings.rate_strikes)
    reader = _Reader(state, conn, clock, live)
    return await receive_loop(receive, reader, limits, bucket, state.metrics)


class _Reader:
    """The feed's side of the receive loop: read-only apart from ping and auth.refresh."""

    __slots__ = ("clock", "conn", "live", "state", "transport")

    def __init__(
        self, state: FeedParts, conn: FeedConnection, clock: TokenClock, live: Ender
    ) -> None:
        self.state, self.conn, self.clock, self.live = state, conn, clock, live
        self.transport = conn.transport

    def limited(self) -> bool:
        self.state.metrics.inc("menteo_limit_hits_total", "rate_limited")
        self.transport.send(self.conn.encode(error_frame(ErrorCode.RATE_LIMITED, "slow down")))
        return True

    def handle(self, data: str | bytes) -> Ending | None:
        conn = self.conn
        try:
            _handle(self.state, conn, self.clock, self.live, decode_frame(conn.codec, data))
        except FrameError as exc:
            conn.transport.send(conn.encode(error_frame(exc.code, exc.message, exc.frame_id)))
        return None


def _handle(
    state: FeedParts, conn: FeedConnection, clock: TokenClock, live: Ender, frame: dict[str, Any]
) -> None:
    if frame["type"] == "ping":
        conn.transport.send(conn.encode({"type": "pong", "id": frame_id(frame)}))
    elif frame["type"] == "auth.refresh":  # as on the room socket
        conn.principal, reply = refresh(state.door.tokens, conn.user_id, frame)
        state.access.connections.refreshed(live)
        clock.set(conn.principal.expires_at)
        conn.transport.send(conn.encode(reply))
    else:
        raise FrameError(
            ErrorCode.UNKNOWN_TYPE,
            "the feed socket is read-only: it takes 'ping' and 'auth.refresh'",
            frame_id(frame),
        )
