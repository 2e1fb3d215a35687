"""Knowing at once that the process was asked to stop, and handing its sockets over gently.

Uvicorn closes WebSockets with 1012 on SIGTERM, but an event stream is an HTTP response it
waits for until ``MENTEO_SHUTDOWN_TIMEOUT`` and then cancels. Our lifespan's shutdown runs
only after that, too late to end the streams cleanly. So, while the app runs, the signal
handlers uvicorn installed are wrapped: the signal first resolves ``Shutdown.stopping`` (event
streams end their response, readiness turns 503, new sockets are refused), then reaches
uvicorn.

In between, the process drains: it closes its WebSockets with 1012 a batch at a time, at
``MENTEO_DRAIN_RATE`` sockets a second (faster if that would take longer than
``MENTEO_DRAIN_SECONDS``), and REST keeps being served meanwhile. Closed all at once, a
process's thousand sockets reconnect to the processes that stay within a second, and every
one of them waits on a join storm there (a rolling restart sends them to a process seconds
old, its rooms all cold); in batches, the others welcome each batch as it comes, and a
client is away only for its own reconnect. A second signal stops at once.

A room socket whose client takes a hand-off (``handoff=1``, docs/protocol.md) is not
closed at its turn: it is sent ``reconnect``, and its client opens its next socket (to a
process that stays) while this one still serves it, then closes this one. A client is then
never without a live socket. One that has not closed it ``MENTEO_DRAIN_HANDOFF`` seconds
later is closed with 1012 as the others are. The moves under way are bounded (``WINDOW``):
each is a join on another process, and a process slow to welcome them makes the drain wait
for it instead of piling more joins on it, each of which would then outlast its window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from .sockets.wsproto import MenteoWebSocketProtocol, open_sockets

log = logging.getLogger("menteo.drain")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
TICK = 0.1  # seconds between two batches
# Hand-offs under way at most, in seconds of the drain rate (100 at the default 200 a
# second): a client moves in well under that on a process with room to spare, so the rate
# holds there, while on one slow to welcome the drain waits instead of piling joins on it.
WINDOW = 0.5


class _Handed:
    """Sockets sent ``reconnect``, each closed 1012 at its deadline unless gone by then."""

    def __init__(self, handoff: float) -> None:
        self.handoff = handoff
        self.waiting: deque[tuple[float, MenteoWebSocketProtocol]] = deque()  # by deadline
        self.count = 0
        self.closed = 0  # still open at their deadline: closed 1012
        self.failed = 0  # still open at their deadline, and could not be closed

    def offer(self, socket: MenteoWebSocketProtocol) -> bool:
        """Whether ``socket``'s client was asked to move (it stays open meanwhile)."""
        if self.handoff <= 0 or socket.handoff is None or not socket.handoff(self.handoff):
            return False
        self.waiting.append((time.monotonic() + self.handoff, socket))
        self.count += 1
        return True

    def close_due(self) -> None:
        """Close the sockets whose time is up (counted in ``closed`` and ``failed``)."""
        while self.waiting and self.waiting[0][0] <= time.monotonic():
            socket = self.waiting.popleft()[1]
            if socket.is_open():
                if _restart(socket):
                    self.closed += 1
                else:
                    self.failed += 1

    def open(self) -> bool:
        return any(socket.is_open() for _, socket in self.waiting)

    def next_due(self) -> float:
        return self.waiting[0][0] if self.waiting else math.inf

    def moving(self) -> int:
        """Handed-off sockets still open: their clients have not moved yet."""
        return sum(1 for _, socket in self.waiting if socket.is_open())


def _restart(socket: MenteoWebSocketProtocol) -> bool:
    try:
        socket.restart()
    except Exception:  # one socket's surprise: Uvicorn's shutdown closes it
        return False
    return True


async def drain_sockets(rate: float, seconds: float, handoff: float = 0.0) -> int:
    """Close this process's WebSockets with 1012, ``rate`` a second (raised so it takes no
    longer than ``seconds``), or hand them off (``reconnect``, then at most ``handoff``
    seconds); returns how many were closed or handed off. ``rate`` 0: none here (Uvicorn
    closes them all at once). The sockets are listed once, then once more at the end for
    those whose handshake was under way: not a scan of every connection per batch.

    At most ``WINDOW`` seconds' worth of the rate are moving at once: while that many
    handed-off sockets are still open, the next turns wait, so the drain follows the pace
    at which the processes that stay welcome them. Once ``seconds`` have passed the window
    no longer holds: every socket left gets its turn at once."""
    pending = open_sockets()
    if rate <= 0 or not pending:
        return 0
    if seconds > 0:
        rate = max(rate, len(pending) / seconds)
    tick = max(TICK, 1 / rate)  # below 10 a second, one socket a turn, turns further apart
    batch = max(1, math.ceil(rate * tick))
    window = max(batch, math.ceil(rate * WINDOW))
    started = time.monotonic()
    handed = _Handed(handoff)
    closed = failed = 0
    tried: set[object] = set()
    while pending:
        tried.update(pending)
        queue = deque(pending)
        while queue:
            handed.close_due()  # a socket past its deadline holds no place in the window
            if time.monotonic() - started >= seconds:
                turns = len(queue)
            else:
                turns = min(batch, window - handed.moving())
            for _ in range(min(turns, len(queue))):
                socket = queue.popleft()
                if not socket.is_open():  # it may have gone meanwhile
                    continue
                try:
                    moved = handed.offer(socket)
                except Exception:  # a hook's surprise: closed at once instead
                    moved = False
                if moved:
                    continue
                if _restart(socket):
                    closed += 1
                else:
                    failed += 1
            if queue:  # the next turn, the next deadline, or the drain's end, if sooner
                end = started + seconds
                await asyncio.sleep(max(0.01, min(tick, handed.next_due() - time.monotonic(),
                                                  end - time.monotonic())))  # fmt: skip
        late = open_sockets() if time.monotonic() - started < seconds else []
        pending = [socket for socket in late if socket not in tried]
    while handed.open():  # each handed-off socket until its client closed it or its deadline
        handed.close_due()
        await asyncio.sleep(max(0.01, min(TICK, handed.next_due() - time.monotonic())))
    took = time.monotonic() - started
    log.info(
        "drain: %d sockets closed 1012, %d handed off (%d of them closed 1012 at their "
        "deadline) in %.1f s",
        closed,
        handed.count,
        handed.closed,
        took,
    )
    failed += handed.failed
    if failed:
        log.warning("drain: %d sockets could not be closed here; the shutdown closes them", failed)
    return closed + handed.count


class StopSignals:
    def __init__(
        self, on_stop: Callable[[], None], drain: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        self.on_stop = on_stop
        self.drain = drain
        self.draining: asyncio.Task[None] | None = None
        self.passed = False  # the signal reached uvicorn
        self.wrapped: dict[int, tuple[Any, Callable[[int, FrameType | None], None]]] = {}

    def install(self) -> None:
        """Wrap the current handlers (uvicorn's). Signal handlers live in the main thread
        only; elsewhere (a server run in a thread) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # SIG_DFL or SIG_IGN: nobody drains; leave it alone

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                if self.drain is None or self.draining is not None:
                    loop.call_soon_threadsafe(self.on_stop)
                    self._pass(previous, signum)  # no drain, or a second signal: now
                    return
                loop.call_soon_threadsafe(self._begin, previous, signum)

            signal.signal(sig, handler)
            self.wrapped[sig] = (previous, handler)

    def _begin(self, previous: Callable[[int, FrameType | None], None], signum: int) -> None:
        """Stopping: unready, then the drain, then uvicorn's own shutdown."""
        self.on_stop()
        if self.draining is not None:
            return
        assert self.drain is not None
        self.draining = asyncio.ensure_future(self._drain_then(previous, signum))

    async def _drain_then(
        self, previous: Callable[[int, FrameType | None], None], signum: int
    ) -> None:
        try:
            assert self.drain is not None
            await self.drain()
        except Exception:  # whatever the drain met, the process must still stop
            log.exception("the drain failed; stopping now")
        finally:
            self._pass(previous, signum)

    def _pass(self, previous: Callable[[int, FrameType | None], None], signum: int) -> None:
        """Hand the signal to uvicorn, once (a second SIGINT there would force the exit)."""
        if self.passed:
            return
        self.passed = True
        previous(signum, None)

    def stop(self) -> bool:
        """Ask the server to stop as SIGTERM would (the handler we wrapped, uvicorn's in a
        real process); False when there is none, e.g. a server run in a test."""
        wrapped = self.wrapped.get(signal.SIGTERM)
        if wrapped is None:
            return False
        wrapped[0](signal.SIGTERM, None)
        return True

    def uninstall(self) -> None:
        """Put the wrapped handlers back, unless someone replaced ours meanwhile."""
        for sig, (previous, ours) in self.wrapped.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self.wrapped.clear()
