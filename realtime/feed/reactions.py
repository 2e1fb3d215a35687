"""Reaction bursts become a few ``feed.reaction`` events, not one per click.

Per post and per process: the first reaction after a quiet spell goes out at once; further
ones within ``window`` seconds wait for the window to end and then go out as one event. The
event carries absolute counts, read by the writer under the feed's lock, so the last event
of a burst always has the final counts and a lost or merged event costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..metrics import NOWHERE, Metrics
from ..persistence.events import AppendResult, NewEvent, Rejected
from .model import FEED_STREAM, REACTION, SYSTEM_ID, SYSTEM_NAME

log = logging.getLogger("menteo.feed")

Append = Callable[[NewEvent], "asyncio.Future[AppendResult]"]
MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Entry:
    last: float  # when this post's last event was appended (loop time)
    timer: asyncio.TimerHandle | None = None


class ReactionAggregator:
    def __init__(self, append: Append, window: float, metrics: Metrics | None = None) -> None:
        self.append = append
        self.window = window
        self.entries: dict[str, _Entry] = {}
        self.inflight: set[asyncio.Future[AppendResult]] = set()
        self.appended = 0  # feed.reaction events asked for (for tests)
        counted = "menteo_feed_reaction_events_total"
        self._appended = metrics.counter(counted) if metrics else NOWHERE

    def touch(self, post_id: str) -> None:
        """A reaction on ``post_id`` changed: make sure an event with its counts follows."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = self.entries.get(post_id)
        if entry is None:
            if len(self.entries) >= MAX_ENTRIES:
                self._prune(now)
            entry = self.entries[post_id] = _Entry(now - self.window)
        if entry.timer is not None:
            return  # an event is due at the end of this window; it will read these counts
        wait = entry.last + self.window - now
        if wait <= 0:
            self._flush(post_id, entry)
        else:
            entry.timer = loop.call_later(wait, self._flush, post_id, entry)

    def _flush(self, post_id: str, entry: _Entry) -> None:
        entry.timer = None
        entry.last = asyncio.get_running_loop().time()
        self.appended += 1
        self._appended.inc()
        fut = self.append(
            NewEvent(FEED_STREAM, REACTION, SYSTEM_ID, SYSTEM_NAME, None, {"post_id": post_id})
        )
        self.inflight.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[AppendResult]) -> None:
        self.inflight.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None and not isinstance(exc, Rejected):  # Rejected: the post is gone
            log.warning("reaction counts not appended: %s", exc)

    def _prune(self, now: float) -> None:
        for post_id in [
            p for p, e in self.entries.items() if e.timer is None and now - e.last >= self.window
        ]:
            del self.entries[post_id]

    async def close(self) -> None:
        """Append what is waiting for its window now, and wait for every append to finish."""
        for post_id, entry in list(self.entries.items()):
            if entry.timer is not None:
                entry.timer.cancel()
                self._flush(post_id, entry)
        if self.inflight:
            await asyncio.wait(list(self.inflight))
