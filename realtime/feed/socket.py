"""The feed socket ``GET /feed/ws?token=T&community=ID|following=1[&since=CURSOR]``.

Read-only apart from ``ping`` and ``auth.refresh``: a ``welcome`` frame with the feed's
cursor, then (with ``since``) every matching event after it, in order, then live events.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from ..auth import AuthError, verify_token
from ..protocol import (
    Close,
    ErrorCode,
    FrameError,
    choose_codec,
    decode_frame,
    error_frame,
    frame_id,
)
from ..sockets.clock import TokenClock, iso
from ..sockets.limits import TokenBucket
from ..sockets.origin import origin_allowed
from ..sockets.transport import ASGIReceive, ASGISend, Transport, direct_writer
from ..state import State
from .gate import connection_slot, counted
from .live import FeedConnection
from .service import FilterError

KIND = "feed"


class FeedSocket:
    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        state: State = scope["app"].state.menteo
        async with connection_slot(state, scope, KIND) as allowed:
            if (await receive())["type"] != "websocket.connect":
                return
            if not allowed:
                await _refuse(
                    send, {"type": "websocket.accept"}, Close.TRY_AGAIN, "too many connections"
                )
                return
            await self._serve(state, scope, receive, send)

    async def _serve(
        self, state: State, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        metrics = state.metrics
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        offered = list(scope.get("subprotocols") or [])
        codec = choose_codec(offered)
        if (
            state.draining
            or codec is None
            or not origin_allowed(
                headers.get("origin"), headers.get("host"), state.settings.allowed_origins
            )
        ):
            metrics.inc("menteo_sockets_refused_total", "handshake")
            await send({"type": "websocket.close", "code": Close.POLICY})  # HTTP 403
            return
        accept = {"type": "websocket.accept", "subprotocol": codec.name if offered else None}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            principal = verify_token(state.settings.secret, params.get("token"))
            filter_ = await state.feed.resolve_filter(params)
        except AuthError as exc:
            metrics.inc("menteo_sockets_refused_total", "unauthorized")
            await _refuse(send, accept, Close.UNAUTHORIZED, f"unauthorized: {exc}"[:120])
            return
        except FilterError as exc:
            metrics.inc("menteo_sockets_refused_total", exc.code)
            await _refuse(send, accept, exc.close_code, exc.message[:120])
            return
        await send(accept)
        transport = Transport(
            send,
            backlog_bytes=state.settings.backlog_bytes,
            direct=direct_writer(scope),
            send_timeout=state.settings.send_timeout,
            metrics=metrics,
        )
        transport.on_slow = lambda: metrics.inc("menteo_limit_hits_total", "slow_1013")
        conn = FeedConnection(principal, filter_, codec, transport)
        clock = TokenClock(transport, lambda frame: transport.send(codec.encode(frame)))
        async with counted(state, KIND):
            try:
                clock.deadline(principal.expires_at)  # expiry ends the catch-up too
                async with state.feed.session(conn, params.get("since"), params.get("epoch")):
                    clock.set(principal.expires_at)
                    code = await _receive_loop(state, conn, clock, receive)
            finally:
                clock.cancel()
            if code is not None:
                await transport.close(code)


async def _receive_loop(
    state: State, conn: FeedConnection, clock: TokenClock, receive: ASGIReceive
) -> int | None:
    """Answer frames until the peer goes (None) or must be closed (the close code)."""
    settings = state.settings
    bucket = TokenBucket(settings.rate_per_second, settings.rate_burst)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if conn.transport.closed:
            continue  # closing (too slow, token expired): what still arrives is not acted on
        if len(data) > settings.max_frame_bytes:
            state.metrics.inc("menteo_limit_hits_total", "frame_too_big")  # as on room sockets
            return Close.TOO_BIG
        if not bucket.take():
            if bucket.strikes > settings.rate_strikes:
                state.metrics.inc("menteo_limit_hits_total", "rate_close_1008")
                return Close.POLICY
            state.metrics.inc("menteo_limit_hits_total", "rate_limited")
            conn.transport.send(conn.encode(error_frame(ErrorCode.RATE_LIMITED, "slow down")))
            continue
        try:
            _handle(state, conn, clock, decode_frame(conn.codec, data))
        except FrameError as exc:
            conn.transport.send(conn.encode(error_frame(exc.code, exc.message, exc.frame_id)))


def _handle(state: State, conn: FeedConnection, clock: TokenClock, frame: dict[str, Any]) -> None:
    if frame["type"] == "ping":
        conn.transport.send(conn.encode({"type": "pong", "id": frame_id(frame)}))
    elif frame["type"] == "auth.refresh":  # as on the room socket
        try:
            principal = verify_token(state.settings.secret, frame.get("token"))
        except AuthError as exc:
            raise FrameError(ErrorCode.INVALID, f"token refused: {exc}", frame_id(frame)) from None
        if principal.user_id != conn.user_id:
            raise FrameError(ErrorCode.FORBIDDEN, "the token is for another user", frame_id(frame))
        conn.principal = principal
        clock.set(principal.expires_at)
        reply = {"type": "auth.refreshed", "id": frame_id(frame)}
        conn.transport.send(conn.encode(reply | {"expires_at": iso(principal.expires_at)}))
    else:
        raise FrameError(
            ErrorCode.UNKNOWN_TYPE,
            "the feed socket is read-only: it takes 'ping' and 'auth.refresh'",
            frame_id(frame),
        )


async def _refuse(send: ASGISend, accept: dict[str, Any], code: int, reason: str) -> None:
    await send(accept)
    await send({"type": "websocket.close", "code": code, "reason": reason})
