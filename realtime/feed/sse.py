"""The event stream ``GET /feed/stream?token=T&community=ID|following=1`` (Server-Sent Events).

For read-only followers: ``EventSource`` cannot set headers, so the token may come in the
query (a Bearer header works too). Every event has ``id:`` (its seq: the cursor),
``event:`` (its type) and one ``data:`` line (the same JSON object as on the WebSocket).
A browser reconnecting sends ``Last-Event-ID`` and gets exactly what it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..auth import AuthError, bearer_token, verify_token
from ..rooms.transport import ASGIReceive, ASGISend, BufferedSend
from ..state import State
from .gate import connection_slot, counted
from .live import SSE, FeedConnection, sse_message
from .service import FilterError

KIND = "feed_sse"

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    (b"x-content-type-options", b"nosniff"),
]


class StreamTransport(BufferedSend):
    """An HTTP response body written event by event, with the room sockets' backpressure;
    past the backlog's bound the stream ends (the client resumes with Last-Event-ID)."""

    __slots__ = ("ended", "ender")

    def __init__(self, send: ASGISend, *, backlog_bytes: int) -> None:
        super().__init__(send, backlog_bytes=backlog_bytes)
        self.ender: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _message(self, data: str | bytes) -> dict[str, Any]:
        return _chunk(data.encode() if isinstance(data, str) else data)

    async def finish(self) -> None:
        """End the response (when the client is still there to read the end)."""
        if not self.closed:
            self.closed = True
            await self._flush()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send(_chunk(b"", more=False)), 2.0)
        self._lost()

    def _overflow(self) -> None:
        self.ender = asyncio.create_task(self._end_slow())

    async def _end_slow(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send(_chunk(b"", more=False)), 30.0)
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if not self.ended.done():
            self.ended.set_result(None)


def _chunk(body: bytes, *, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


class FeedStream:
    """A raw ASGI endpoint: the response is written as events happen."""

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        state: State = scope["app"].state.menteo
        async with connection_slot(state, scope, KIND) as allowed:
            if not allowed:
                await _error(send, 429, "rate_limited", "too many connections from this address")
                return
            await self._serve(state, scope, receive, send)

    async def _serve(
        self, state: State, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        metrics = state.metrics
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        token = params.get("token") or bearer_token(headers.get("authorization"))
        try:
            principal = verify_token(state.settings.secret, token)
            filter_ = await state.feed.resolve_filter(params)
        except AuthError as exc:
            metrics.inc("menteo_sockets_refused_total", "unauthorized")
            await _error(send, 401, "unauthorized", f"a valid token is required: {exc}")
            return
        except FilterError as exc:
            metrics.inc("menteo_sockets_refused_total", exc.code)
            await _error(send, exc.status, exc.code, exc.message)
            return
        if state.draining:
            await _error(send, 503, "unavailable", "the server is shutting down")
            return
        since = headers.get("last-event-id") or params.get("since")
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        transport = StreamTransport(send, backlog_bytes=state.settings.backlog_bytes)
        transport.on_slow = lambda: metrics.inc("menteo_limit_hits_total", "slow_stream")
        conn = FeedConnection(principal, filter_, SSE, transport)
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        try:
            async with counted(state, KIND), state.feed.session(conn, since, params.get("epoch")):
                # Until the client goes, the stream is ended for being slow, the process
                # is stopping, or the token expires (the client reconnects with a fresh
                # token and since=<last id>).
                left = principal.expires_at - time.time()
                done, _ = await asyncio.wait(
                    (disconnected, transport.ended, state.stopping),
                    timeout=max(0.0, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    expired = {"type": "auth.expired"}
                    transport.send(sse_message("auth.expired", orjson.dumps(expired), None))
        finally:
            if not disconnected.done():
                disconnected.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await disconnected
                await transport.finish()


async def _until_disconnect(receive: ASGIReceive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _error(send: ASGISend, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
