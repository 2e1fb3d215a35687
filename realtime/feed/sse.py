"""The event stream ``GET /feed/stream?token=T&community=ID|following=1`` (Server-Sent Events).

For read-only followers: ``EventSource`` cannot set headers, so the token may come in the
query (a Bearer header works too). Every event has ``id:`` (``EPOCH:SEQ``: the database's
epoch and the cursor), ``event:`` (its type) and one ``data:`` line (the same JSON object
as on the WebSocket). A browser reconnecting sends ``Last-Event-ID`` and gets exactly what
it missed; an id from another database (a different epoch) resumes nothing.

A reader that takes nothing for ``send_timeout`` (catch-up included) is aborted, and the
token's expiry ends the stream whatever it is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from ..access.registry import Ender
from ..auth import AuthError, Principal, bearer_token
from ..sockets.admission import counted
from ..sockets.transport import Abort, ASGIReceive, ASGISend, BufferedSend, aborter
from ..streams.history import parse_resume_id
from .live import FeedConnection, sse_message
from .model import FeedFilter
from .parts import FeedParts
from .service import FilterError

if TYPE_CHECKING:
    from ..metrics import Metrics

KIND = "feed_sse"

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
    (b"x-content-type-options", b"nosniff"),
]


class StreamTransport(BufferedSend):
    """An HTTP response body written event by event, with the room sockets' backpressure;
    past the backlog's bound the stream ends (the client resumes with Last-Event-ID). Its
    end never waits on the reader past ``send_timeout``: then the connection is aborted."""

    __slots__ = ("ended", "ender", "linger")

    def __init__(
        self,
        send: ASGISend,
        *,
        backlog_bytes: int,
        send_timeout: float,
        metrics: Metrics | None = None,
        abort: Abort | None = None,
    ) -> None:
        super().__init__(
            send,
            backlog_bytes=backlog_bytes,
            send_timeout=send_timeout,
            metrics=metrics,
            abort=abort,
        )
        self.linger = abort
        self.ender: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _message(self, data: str | bytes) -> dict[str, Any]:
        return _chunk(data.encode() if isinstance(data, str) else data)

    async def finish(self, *, patient: bool = True) -> None:
        """End the response (when the client is still there to read the end): after what is
        queued, or (not ``patient``: the token expired) at once, aborting a reader that
        cannot take the end now."""
        if not self.closed:
            self.closed = True
            if patient:
                await self._flush()
            else:
                self._drop()
            await self._end(self.send_timeout if patient else 0.0)
        self._lost()

    async def _end(self, patience: float) -> None:
        """The response's last chunk, within ``patience``; then what is still buffered has
        ``send_timeout`` to reach the reader before the connection is aborted."""
        if self.aborted:
            return
        try:
            async with asyncio.timeout(patience):
                await self._send(_chunk(b"", more=False))
        except TimeoutError:
            self._stalled()
            return
        except Exception:
            return
        if self.linger is not None:
            self.linger(self.send_timeout)

    def _overflow(self) -> None:
        self.ender = asyncio.create_task(self._end_slow())

    async def _end_slow(self) -> None:
        await self._end(self.send_timeout)
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if not self.ended.done():
            self.ended.set_result(None)


def _chunk(body: bytes, *, more: bool = True) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


class FeedStream:
    """A raw ASGI endpoint: the response is written as events happen."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: FeedParts | None = None  # given by the lifespan (app.py)

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        state = self.parts
        assert state is not None, "the lifespan has not started"
        async with state.door.slots.held(scope) as allowed:
            if not allowed:
                await _error(send, 429, "rate_limited", "too many connections from this address")
                return
            await self._serve(state, scope, receive, send)

    async def _serve(
        self, state: FeedParts, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend
    ) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        admitted = await _admit(state, headers, params, send)
        if admitted is None:
            return
        principal, filter_ = admitted
        # A revocation (access/registry.py) ends the stream with ``event: auth.revoked``.
        revoked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live = Ender(lambda: principal, lambda code, reason: _resolve(revoked))
        async with state.access.track(live, kind="feed") as tracked:
            if tracked.refusal is not None:  # revoked since the token was checked
                await _error(send, 401, "unauthorized", "a valid token is required: revoked")
                return
            # EPOCH:SEQ (or a bare SEQ) in Last-Event-ID, which wins, or in since.
            since, epoch = parse_resume_id(headers.get("last-event-id") or params.get("since"))
            epoch = epoch or params.get("epoch")
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            transport = _transport(state, scope, send)
            conn = FeedConnection(principal, filter_, state.feed.sse, transport)
            await self._follow(state, conn, receive, revoked, (since, epoch))

    async def _follow(
        self,
        state: FeedParts,
        conn: FeedConnection,
        receive: ASGIReceive,
        revoked: asyncio.Future[None],
        resume: tuple[str | None, str | None],
    ) -> None:
        """Events until the client goes or the stream must end (see ``_serve``)."""
        principal, transport = conn.principal, conn.transport
        assert isinstance(transport, StreamTransport)
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        expired = False
        try:
            async with counted(state.metrics, KIND):
                # Until the client goes, the stream is ended for being slow, the process
                # is stopping, or the token expires or is revoked, catch-up included (the
                # client reconnects with a fresh token and Last-Event-ID).
                left = max(0.0, principal.expires_at - time.time())
                try:
                    async with asyncio.timeout(left) as deadline:
                        inside = [True]

                        def now(_: object) -> None:  # a revocation: the deadline is now
                            if inside[0]:
                                deadline.reschedule(asyncio.get_running_loop().time())

                        revoked.add_done_callback(now)
                        try:
                            async with state.feed.session(conn, *resume):
                                await asyncio.wait(
                                    (disconnected, transport.ended, state.stopping),
                                    return_when=asyncio.FIRST_COMPLETED,
                                )
                        finally:
                            inside[0] = False
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    expired = True  # ends at once, what is queued dropped
                    _last_word(transport, "auth.revoked" if revoked.done() else "auth.expired")
        finally:
            await _close(transport, disconnected, expired=expired)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _last_word(transport: StreamTransport, event: str) -> None:
    """The stream's last event: ``auth.expired`` or ``auth.revoked`` (then it ends)."""
    transport.send(sse_message(event, orjson.dumps({"type": event}), None))


async def _admit(
    state: FeedParts, headers: dict[str, str], params: dict[str, str], send: ASGISend
) -> tuple[Principal, FeedFilter] | None:
    """The caller and what it follows; None when refused (the error response is sent)."""
    metrics = state.metrics
    token = params.get("token") or bearer_token(headers.get("authorization"))
    try:
        principal = state.door.tokens.verify(token)
        filter_ = await state.feed.resolve_filter(params)
    except AuthError as exc:
        metrics.inc("menteo_sockets_refused_total", "unauthorized")
        await _error(send, 401, "unauthorized", f"a valid token is required: {exc}")
        return None
    except FilterError as exc:
        metrics.inc("menteo_sockets_refused_total", exc.code)
        await _error(send, exc.status, exc.code, exc.message)
        return None
    if state.draining:
        await _error(send, 503, "unavailable", "the server is shutting down")
        return None
    return principal, filter_


def _transport(state: FeedParts, scope: dict[str, Any], send: ASGISend) -> StreamTransport:
    """The response body's transport, counting a slow reader's end as a limit hit."""
    metrics = state.metrics
    transport = StreamTransport(
        send,
        backlog_bytes=state.settings.backlog_bytes,
        send_timeout=state.settings.send_timeout,
        metrics=metrics,
        abort=aborter(scope),
    )
    transport.on_slow = lambda: metrics.inc("menteo_limit_hits_total", "slow_stream")
    return transport


async def _close(
    transport: StreamTransport, disconnected: asyncio.Future[None], *, expired: bool
) -> None:
    """End the response if the client is still there, then wait out its disconnect."""
    if not disconnected.done():
        await transport.finish(patient=not expired)
    if transport.aborted:  # the server reports the disconnect right after the abort
        await asyncio.wait((disconnected,), timeout=1.0)
    if not disconnected.done():
        disconnected.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await disconnected


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
