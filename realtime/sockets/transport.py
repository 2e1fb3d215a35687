"""What room logic needs of a socket: the raw ASGI send and receive callables.

Sends go straight to the transport while it keeps up. Only when the server's transport is
full (its ``send`` would wait) does a socket get a bounded backlog and a task to drain it;
past the bound the socket is closed with 1013. The fan-out loop never awaits a socket.

Every send has a deadline (``send_timeout``): a peer that takes nothing for that long, in
catch-up or live, is aborted (its connection dropped without waiting for it), so its slot,
presence and memory are released. A close, too, never waits on the peer longer than that.

Where the server offers it (``realtime.sockets.wsproto`` under Uvicorn), "straight to the
transport" is a write of ready frame bytes (``DirectWriter``); any other ASGI server gets
the same semantics through its ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..protocol import Close, Codec
from ..streams.hub import Frames
from .wire import CORK, frame_bytes, ws_frame

if TYPE_CHECKING:
    from ..config import Settings
    from ..metrics import Metrics

log = logging.getLogger("menteo.socket")

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]

DIRECT_SEND = "menteo.direct_send"  # the scope extension that holds a DirectWriter
ABORT = "menteo.abort"  # an HTTP scope extension: drops the connection without waiting
STALLED = "send_timeout"  # the limit-hit label of a peer aborted for not reading


class DirectWriter(Protocol):
    """A server connection that takes ready WebSocket frame bytes."""

    def write_wire(self, data: bytes) -> bool:
        """Write ``data`` now and return True, or False if the ASGI send must be used."""
        ...

    def close_now(self, code: int, reason: str, linger: float) -> None:
        """Queue a close frame even when the transport is full, and abort the connection if
        it has not closed ``linger`` seconds later."""
        ...

    def abort(self) -> None:
        """Drop the connection now, without waiting for the peer."""
        ...


def direct_writer(scope: dict[str, Any]) -> DirectWriter | None:
    """The server's direct write path for this socket, if it offers one."""
    writer: DirectWriter | None = (scope.get("extensions") or {}).get(DIRECT_SEND)
    return writer


# Asks the client to move to another process before the drain closes this socket; given the
# seconds until then. False: it cannot (the socket is closed with 1012 at its turn).
Handoff = Callable[[float], bool]


def offer_handoff(scope: dict[str, Any], handoff: Handoff | None) -> None:
    """A live socket whose client moves on request (drain.py): the drain asks ``handoff``
    instead of closing it at once. None withdraws the offer."""
    server = (scope.get("extensions") or {}).get(DIRECT_SEND)
    if server is not None:
        server.handoff = handoff


class Abort(Protocol):
    """Drop a connection without waiting for the peer: now, or ``delay`` seconds from now
    if it is still open then."""

    def __call__(self, delay: float = 0.0) -> None: ...


def aborter(scope: dict[str, Any]) -> Abort | None:
    """The server's way to drop this HTTP connection, if it offers one."""
    abort: Abort | None = (scope.get("extensions") or {}).get(ABORT)
    return abort


class BufferedSend:
    """An outbound stream with backpressure that costs nothing while it keeps up.

    ``send`` drives the server's send coroutine by hand: while the transport has room it
    completes at once (no task, no queue). When it would wait, that send and every later
    one go to a bounded backlog drained by a task; past the bound ``_overflow`` ends the
    stream. A send that waits longer than ``send_timeout`` aborts the stream (``_stalled``).
    Subclasses say what a message is and how the stream ends.
    """

    __slots__ = (
        "_send",
        "abort",
        "aborted",
        "backlog",
        "backlog_limit",
        "backlog_size",
        "closed",
        "corked",
        "direct",
        "drainer",
        "metrics",
        "on_slow",
        "send_timeout",
    )

    def __init__(
        self,
        send: ASGISend,
        *,
        backlog_bytes: int,
        direct: DirectWriter | None = None,
        send_timeout: float = 10.0,
        metrics: Metrics | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self.direct = direct
        self.send_timeout = send_timeout
        self.metrics = metrics  # counts the stalled peers it aborts
        self.abort = abort if abort is not None or direct is None else direct.abort
        self.aborted = False
        self.backlog_limit = backlog_bytes
        self.backlog: deque[str | bytes] | None = None
        self.backlog_size = 0
        self.drainer: asyncio.Task[None] | None = None
        self.closed = False
        self.corked: list[tuple[str | bytes, bytes]] | None = None  # held during a hub batch
        self.on_slow: Callable[[], None] = _nothing  # counted by the caller's metrics

    def _message(self, data: str | bytes) -> dict[str, Any]:
        raise NotImplementedError

    def _overflow(self) -> None:
        """The backlog passed its bound (it has been dropped): end the stream."""
        raise NotImplementedError

    def _lost(self) -> None:
        """The peer is gone (a send failed)."""
        raise NotImplementedError

    def send(self, data: str | bytes, wire: bytes | None = None) -> None:
        """Send without waiting: straight to the transport, or to the backlog if it is full.

        ``wire`` is ``data`` as a ready WebSocket frame when the caller has it (built once
        for every recipient of an event); only a direct writer uses it.
        """
        if self.closed:
            return
        if self.backlog is not None:
            self._enqueue(data)
            return
        direct = self.direct
        if direct is not None:
            if CORK.depth:  # the hub is delivering a batch: one write at its end
                if self.corked is None:
                    self.corked = []
                    CORK.held.append(self)
                self.corked.append((data, wire or ws_frame(data)))
                return
            try:
                if direct.write_wire(wire or ws_frame(data)):
                    return  # the fast path: no ASGI message, no coroutine
            except Exception:  # as for a failed ASGI send: the peer is gone
                self._lost()
                return
        coro = cast(Coroutine[Any, Any, None], self._send(self._message(data)))
        try:
            waiting = coro.send(None)
        except StopIteration:
            return  # written to the transport: the fast path
        except Exception:
            self._lost()
            return
        # The transport is full: this send resumes, and later ones queue, in a drainer task.
        self.backlog = deque()
        self.backlog_size = 0
        self.drainer = asyncio.create_task(self._drain(coro, waiting))

    def uncork(self) -> None:
        """Write what was held during the hub's batch: in one piece if the transport takes
        it now, else frame by frame through ``send`` (to the backlog, in order)."""
        held, self.corked = self.corked, None
        if not held:
            return
        if len(held) > 1 and not self.closed and self.backlog is None and self.direct is not None:
            try:
                if self.direct.write_wire(b"".join([wire for _, wire in held])):
                    return
            except Exception:
                self._lost()
                return
        for data, wire in held:
            self.send(data, wire)

    async def send_wait(self, data: str | bytes) -> None:
        """Send and wait for room in the transport (used where a loop must not outrun it).
        The wait is the drainer's, so it has the same deadline, and a close ends it."""
        self.send(data)
        while self.drainer is not None and not self.closed:
            await asyncio.wait((self.drainer,))

    async def _flush(self) -> None:
        """Give the backlog up to ``send_timeout`` to go out before the stream ends; a peer
        that does not take it is aborted."""
        if self.drainer is not None:
            await asyncio.wait((self.drainer,), timeout=self.send_timeout)
            if self.drainer is not None:
                self._stalled()

    def _drop(self) -> None:
        """Give up what is queued (ending without waiting for it)."""
        if self.backlog is not None:
            self.backlog.clear()
            self.backlog_size = 0
        drainer = self.drainer
        if drainer is not None and drainer is not asyncio.current_task():
            drainer.cancel()

    def _stalled(self) -> None:
        """The peer took nothing for ``send_timeout``: drop what is queued and abort the
        connection (a close handshake would wait on the same peer). The server then reports
        the disconnect, which ends the connection's handler and releases what it holds."""
        if self.aborted:
            return
        self.aborted = True
        self._lost()
        self.closed = True
        self._drop()
        if self.metrics is not None:
            self.metrics.inc("menteo_limit_hits_total", STALLED)
        if self.abort is not None:
            with suppress(Exception):  # already gone
                self.abort()

    def overflow(self) -> None:
        """End the stream as too slow, as when its backlog passes the bound (it can resume)."""
        if not self.closed:
            self.closed = True
            self.on_slow()
            if self.drainer is not None:
                self.drainer.cancel()
            self._overflow()

    def _enqueue(self, data: str | bytes) -> None:
        assert self.backlog is not None
        self.backlog_size += len(data)
        if self.backlog_size > self.backlog_limit:
            # Nobody waits for a slow reader: drop its backlog and end it; it can resume.
            self.backlog.clear()
            self.backlog_size = 0
            self.overflow()
            return
        self.backlog.append(data)

    async def _drain(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):  # each send has its own deadline
                await _finish(coro, waiting)
            while self.backlog:
                data = self.backlog.popleft()
                self.backlog_size -= len(data)
                async with asyncio.timeout(self.send_timeout):
                    await self._send(self._message(data))
            self.backlog = None
        except asyncio.CancelledError:
            pass
        except TimeoutError:
            self._stalled()
        except Exception:
            self._lost()
        finally:
            self.drainer = None


class Transport(BufferedSend):
    """A WebSocket's outbound side; a slow reader is closed with 1013."""

    __slots__ = ("close_code", "closer", "on_lost")

    def __init__(
        self,
        send: ASGISend,
        *,
        backlog_bytes: int,
        direct: DirectWriter | None = None,
        send_timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(
            send,
            backlog_bytes=backlog_bytes,
            direct=direct,
            send_timeout=send_timeout,
            metrics=metrics,
        )
        self.closer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.on_lost: Callable[[int], None] = _ignore_code

    def send_frames(self, frames: Frames, codec: Codec) -> None:
        """Send a hub frame: with a direct writer, the frame bytes built once per event."""
        if self.direct is not None and self.backlog is None:
            self.send(frames.encoded(codec), frame_bytes(frames, codec))
        else:
            self.send(frames.encoded(codec))

    def _message(self, data: str | bytes) -> dict[str, Any]:
        if isinstance(data, str):
            return {"type": "websocket.send", "text": data}
        return {"type": "websocket.send", "bytes": data}

    async def close(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """Close after what is already queued (or, without ``flush``, at once, dropping it);
        never waits on the peer past ``send_timeout``. Closed already from a callback
        (``close_now``, ``close_soon``): wait for that close frame to go, so an endpoint that
        returns next does not drop its connection without one."""
        if self.closed:
            closer = self.closer
            if closer is not None and closer is not asyncio.current_task():
                await asyncio.wait((closer,))
            return
        self.closed = True
        self.close_code = code
        if flush:
            await self._flush()
        else:
            self._drop()
        if not self.aborted:
            await self._shut(code, reason)

    async def _shut(self, code: int, reason: str) -> None:
        """Send the close frame even to a peer that stopped reading: the server queues it past
        a full transport and aborts the connection if it has not closed ``send_timeout``
        later; without that, the close waits ``send_timeout`` for room, then aborts."""
        if self.direct is not None:
            with suppress(Exception):  # the connection is gone already
                self.direct.close_now(code, reason, self.send_timeout)
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except TimeoutError:
            self._stalled()
        except Exception:
            pass

    def close_soon(self, code: int, reason: str = "", *, flush: bool = True) -> None:
        """``close`` from a callback that cannot await."""
        if not self.closed and self.closer is None:
            self.closer = asyncio.create_task(self.close(code, reason, flush=flush))

    def close_now(self, code: int, reason: str = "") -> None:
        """Close from a callback, and send nothing more from this moment: what is queued,
        held in the hub's cork, or delivered later in the same batch is dropped (a removed
        member's or a revoked token's socket gets no event stored after the change)."""
        if self.closed or self.closer is not None:
            return
        self.closed = True
        self.close_code = code
        self._drop()
        if not self.aborted:
            self.closer = asyncio.create_task(self._shut(code, reason))

    def _overflow(self) -> None:
        self.close_code = Close.TRY_AGAIN
        self.closer = asyncio.create_task(self._close_slow())

    async def _close_slow(self) -> None:
        await self._shut(Close.TRY_AGAIN, "too slow")
        self.on_lost(Close.TRY_AGAIN)

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = 1006
            self.on_lost(1006)


# Shared defaults: a lambda per socket would be a function object per socket.
def _nothing() -> None:
    pass


def _ignore_code(code: int) -> None:
    pass


async def _finish(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Run a coroutine that was started by hand and suspended on ``waiting`` to its end."""
    try:
        while True:
            if isinstance(waiting, asyncio.Future):
                await asyncio.wait((waiting,))
            else:
                await asyncio.sleep(0)
            waiting = coro.send(None)
    except StopIteration:
        pass
    finally:
        coro.close()


def socket_transport(
    send: ASGISend, scope: dict[str, Any], settings: Settings, metrics: Metrics
) -> Transport:
    """A socket's outbound side with the server's limits, as every socket kind opens it:
    the direct write path when the server offers one, and a reader closed 1013 for being
    slow counted as ``slow_1013``."""
    transport = Transport(
        send,
        backlog_bytes=settings.backlog_bytes,
        direct=direct_writer(scope),
        send_timeout=settings.send_timeout,
        metrics=metrics,
    )
    transport.on_slow = lambda: metrics.inc("menteo_limit_hits_total", "slow_1013")
    return transport
