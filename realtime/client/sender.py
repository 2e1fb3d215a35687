"""Sending the outbox on the room socket: a few operations in flight at a time, paced under
the server's rate limit, everything not acked sent again (same ids) on every new socket, and
what acks and errors say about each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..protocol import ErrorCode
from .errors import FrameRefused
from .outbox import Frame, Outbox, Pending

IN_FLIGHT = 10  # operations sent and not yet acked, at most
RETRY_AFTER = 1.0  # seconds, after "unavailable" or "rate_limited"
# The server's default per-socket rate is 20 frames/s, burst 50 (MENTEO_RATE_PER_SECOND,
# MENTEO_RATE_BURST): the outbox stays under it, keeping room for typing and pings.
RATE = 15.0
BURST = 40.0
RETRYABLE = {ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED}


class Bucket:
    """A token bucket: ``take()`` one if there is one; ``wait()`` seconds until there is."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def _fill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self) -> bool:
        self._fill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self) -> float:
        self._fill()
        return max(0.0, (1 - self.tokens) / self.rate)


class Sender:
    """``send(frame) -> bool`` puts a frame on the live socket (False when there is none)."""

    def __init__(
        self, outbox: Outbox, send: Callable[[Frame], bool], rate: tuple[float, float]
    ) -> None:
        self.outbox = outbox
        self._send = send
        self._bucket = Bucket(*rate)
        self._in_flight: set[str] = set()
        self._live = False
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, frame: Frame) -> Pending:
        pending = self.outbox.add(frame)
        self.flush()
        return pending

    def flush(self) -> None:
        """Send what waits, oldest first, while live, in the window and under the rate."""
        if not self._live or self._timer is not None:
            return
        for frame in self.outbox.frames():
            if len(self._in_flight) >= IN_FLIGHT:
                return
            if frame["id"] in self._in_flight:
                continue
            if not self._bucket.take():
                self._later(self._bucket.wait())
                return
            if not self._send(frame):
                return
            self._in_flight.add(frame["id"])

    def live(self) -> None:
        """A new socket was welcomed: everything not acked goes (again) on it."""
        self._live = True
        self._in_flight.clear()
        self.flush()

    def down(self) -> None:
        self._live = False
        self._in_flight.clear()
        self._cancel_timer()

    def settled(self, cid: str, seq: int) -> None:
        """An ack, or my event seen in the room (live, replayed or in a welcome's history)."""
        self._in_flight.discard(cid)
        self.outbox.settle(cid, seq)
        self.flush()

    def error(self, frame: Frame) -> None:
        """An ``error`` frame: about one of mine (by id), or ``rate_limited`` (no id)."""
        cid, code = frame.get("id"), frame.get("code")
        if code in RETRYABLE:
            if cid is None:  # rate_limited: which frame was dropped is not said
                self._in_flight.clear()
            self._in_flight.discard(str(cid))
            self._later(RETRY_AFTER)
        elif isinstance(cid, str) and (refused := self.outbox.frame(cid)) is not None:
            error = FrameRefused(str(code), str(frame.get("message", "")), refused)
            self._in_flight.discard(cid)
            self.outbox.settle(cid, None, error)
            self.flush()

    def _later(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, self._again)

    def _again(self) -> None:
        self._timer = None
        self.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
