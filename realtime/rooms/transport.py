"""What room logic needs of a socket: the raw ASGI send and receive callables.

Sends go straight to the transport while it keeps up. Only when the server's transport is
full (its ``send`` would wait) does a socket get a bounded backlog and a task to drain it;
past the bound the socket is closed with 1013. The fan-out loop never awaits a socket.

Where the server offers it (``realtime.wsproto`` under Uvicorn), "straight to the
transport" is a write of ready frame bytes (``DirectWriter``); any other ASGI server gets
the same semantics through its ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, Protocol, cast

from ..protocol import Close, Codec
from ..streams.hub import CORK, Frames, ws_frame

log = logging.getLogger("menteo.socket")

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]

DIRECT_SEND = "menteo.direct_send"  # the scope extension that holds a DirectWriter


class DirectWriter(Protocol):
    """A server connection that takes ready WebSocket frame bytes."""

    def write_wire(self, data: bytes) -> bool:
        """Write ``data`` now and return True, or False if the ASGI send must be used."""
        ...


def direct_writer(scope: dict[str, Any]) -> DirectWriter | None:
    """The server's direct write path for this socket, if it offers one."""
    writer: DirectWriter | None = (scope.get("extensions") or {}).get(DIRECT_SEND)
    return writer


class BufferedSend:
    """An outbound stream with backpressure that costs nothing while it keeps up.

    ``send`` drives the server's send coroutine by hand: while the transport has room it
    completes at once (no task, no queue). When it would wait, that send and every later
    one go to a bounded backlog drained by a task; past the bound ``_overflow`` ends the
    stream. Subclasses say what a message is and how the stream ends.
    """

    __slots__ = (
        "_send",
        "backlog",
        "backlog_limit",
        "backlog_size",
        "closed",
        "corked",
        "direct",
        "drainer",
        "on_slow",
    )

    def __init__(
        self, send: ASGISend, *, backlog_bytes: int, direct: DirectWriter | None = None
    ) -> None:
        self._send = send
        self.direct = direct
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
        """Send and wait for room in the transport (used where a loop must not outrun it)."""
        if self.backlog is not None or self.drainer is not None:
            self.send(data)
            while self.drainer is not None and not self.closed:
                await asyncio.wait((self.drainer,))
            return
        if self.closed:
            return
        try:
            if self.direct is not None and self.direct.write_wire(ws_frame(data)):
                return
            await self._send(self._message(data))
        except Exception:
            self._lost()

    async def _flush(self) -> None:
        """Give the backlog a moment to go out before the stream ends."""
        if self.drainer is not None:
            with suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self.drainer), 2.0)
            self.drainer.cancel()

    def _enqueue(self, data: str | bytes) -> None:
        assert self.backlog is not None
        self.backlog_size += len(data)
        if self.backlog_size > self.backlog_limit:
            # Nobody waits for a slow reader: drop its backlog and end it; it can resume.
            self.backlog.clear()
            self.backlog_size = 0
            self.closed = True
            self.on_slow()
            if self.drainer is not None:
                self.drainer.cancel()
            self._overflow()
            return
        self.backlog.append(data)

    async def _drain(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _finish(coro, waiting)
            while self.backlog:
                data = self.backlog.popleft()
                self.backlog_size -= len(data)
                await self._send(self._message(data))
            self.backlog = None
        except asyncio.CancelledError:
            pass
        except Exception:
            self._lost()
        finally:
            self.drainer = None


class Transport(BufferedSend):
    """A WebSocket's outbound side; a slow reader is closed with 1013."""

    __slots__ = ("close_code", "closer", "on_lost")

    def __init__(
        self, send: ASGISend, *, backlog_bytes: int, direct: DirectWriter | None = None
    ) -> None:
        super().__init__(send, backlog_bytes=backlog_bytes, direct=direct)
        self.closer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.on_lost: Callable[[int], None] = _ignore_code

    def send_frames(self, frames: Frames, codec: Codec) -> None:
        """Send a hub frame: with a direct writer, the frame bytes built once per event."""
        if self.direct is not None and self.backlog is None:
            self.send(frames.encoded(codec), frames.wire(codec))
        else:
            self.send(frames.encoded(codec))

    def _message(self, data: str | bytes) -> dict[str, Any]:
        if isinstance(data, str):
            return {"type": "websocket.send", "text": data}
        return {"type": "websocket.send", "bytes": data}

    async def close(self, code: int, reason: str = "") -> None:
        """Close after what is already queued; never waits longer than a few seconds."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        await self._flush()
        with suppress(Exception):
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": code, "reason": reason}), 2.0
            )

    def close_soon(self, code: int, reason: str = "") -> None:
        """``close`` from a callback that cannot await."""
        if not self.closed and self.closer is None:
            self.closer = asyncio.create_task(self.close(code, reason))

    def _overflow(self) -> None:
        self.close_code = Close.TRY_AGAIN
        self.closer = asyncio.create_task(self._close_slow())

    async def _close_slow(self) -> None:
        with suppress(Exception):
            await asyncio.wait_for(
                self._send(
                    {"type": "websocket.close", "code": Close.TRY_AGAIN, "reason": "too slow"}
                ),
                30.0,
            )
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
