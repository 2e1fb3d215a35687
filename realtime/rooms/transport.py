"""What room logic needs of a socket: the raw ASGI send and receive callables.

Sends go straight to the transport while it keeps up. Only when the server's transport is
full (its ``send`` would wait) does a socket get a bounded backlog and a task to drain it;
past the bound the socket is closed with 1013. The fan-out loop never awaits a socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any, cast

from ..protocol import Close

log = logging.getLogger("menteo.socket")

ASGISend = Callable[[dict[str, Any]], Awaitable[None]]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]


def _message(data: str | bytes) -> dict[str, Any]:
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": data}


class Transport:
    """A WebSocket's outbound side with backpressure that costs nothing while it keeps up."""

    __slots__ = (
        "_send",
        "backlog",
        "backlog_limit",
        "backlog_size",
        "close_code",
        "closed",
        "closer",
        "drainer",
        "on_lost",
        "on_slow",
    )

    def __init__(self, send: ASGISend, *, backlog_bytes: int) -> None:
        self._send = send
        self.backlog_limit = backlog_bytes
        self.backlog: deque[str | bytes] | None = None
        self.backlog_size = 0
        self.drainer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.on_lost: Callable[[int], None] = lambda code: None
        self.on_slow: Callable[[], None] = lambda: None  # counted by the caller's metrics

    def send(self, data: str | bytes) -> None:
        """Send without waiting: straight to the transport, or to the backlog if it is full."""
        if self.closed:
            return
        if self.backlog is not None:
            self._enqueue(data)
            return
        coro = cast(Coroutine[Any, Any, None], self._send(_message(data)))
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
            await self._send(_message(data))
        except Exception:
            self._lost()

    async def close(self, code: int, reason: str = "") -> None:
        """Close after what is already queued; never waits longer than a few seconds."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        if self.drainer is not None:
            with suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(asyncio.shield(self.drainer), 2.0)
            self.drainer.cancel()
        with suppress(Exception):
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": code, "reason": reason}), 2.0
            )

    def close_soon(self, code: int, reason: str = "") -> None:
        """``close`` from a callback that cannot await."""
        if not self.closed and self.closer is None:
            self.closer = asyncio.create_task(self.close(code, reason))

    def _enqueue(self, data: str | bytes) -> None:
        assert self.backlog is not None
        self.backlog_size += len(data)
        if self.backlog_size > self.backlog_limit:
            # Nobody waits for a slow reader: drop its backlog and close it; it can resume.
            self.backlog.clear()
            self.backlog_size = 0
            self.closed = True
            self.close_code = Close.TRY_AGAIN
            self.on_slow()
            if self.drainer is not None:
                self.drainer.cancel()
            self.closer = asyncio.create_task(self._close_slow())
            return
        self.backlog.append(data)

    async def _close_slow(self) -> None:
        with suppress(Exception):
            await asyncio.wait_for(
                self._send(
                    {"type": "websocket.close", "code": Close.TRY_AGAIN, "reason": "too slow"}
                ),
                30.0,
            )
        self.on_lost(Close.TRY_AGAIN)

    async def _drain(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _finish(coro, waiting)
            while self.backlog:
                data = self.backlog.popleft()
                self.backlog_size -= len(data)
                await self._send(_message(data))
            self.backlog = None
        except asyncio.CancelledError:
            pass
        except Exception:
            self._lost()
        finally:
            self.drainer = None

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = 1006
            self.on_lost(1006)


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
