"""Read markers: coalesced per member and room, stored, and only then announced.

A ``read`` frame only records the highest seq asked for (``mark``). One task writes every
pending marker in one transaction, at most once per ``interval`` (the first after a quiet
spell at once), so a flood of ``read`` frames is a bounded number of writes, not one per
frame. A marker moves only forward, clamped to the room's last seq, in the database itself
(two processes may race); only the markers the transaction moved are announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress

from sqlalchemy import Connection, text

from ..faults import Faults, is_fatal
from ..persistence.database import Database
from ..persistence.events import last_seqs_sync, now_iso

log = logging.getLogger("menteo.reads")

Key = tuple[str, str]  # (room, user)
# A marker that moved: (room, user, seq), called after the commit.
Moved = Callable[[str, str, int], None]

REMEMBERED = 100_000  # markers known stored, so a repeated read skips the database
BACKOFF_MAX = 5.0

_UPSERT = text(
    "INSERT INTO read_marker (room_id, user_id, seq, updated_at) "
    "VALUES (:room, :user, :seq, :ts) "
    "ON CONFLICT (room_id, user_id) DO UPDATE SET seq = excluded.seq, "
    "updated_at = excluded.updated_at WHERE read_marker.seq < excluded.seq "
    "RETURNING seq"
)


def store_markers_sync(conn: Connection, batch: dict[Key, int], ts: str) -> dict[Key, int]:
    """Store ``batch`` (each clamped to its room's last seq); the markers that moved."""
    last = last_seqs_sync(conn, sorted({room for room, _ in batch}))
    moved: dict[Key, int] = {}
    for (room, user), seq in sorted(batch.items()):  # one row order: no deadlock
        seq = min(seq, last.get(room, 0))
        if seq <= 0:
            continue
        stored = conn.execute(_UPSERT, {"room": room, "user": user, "seq": seq, "ts": ts})
        if stored.scalar() is not None:  # inserted, or moved forward
            moved[(room, user)] = seq
    return moved


class MarkerStore:
    def __init__(
        self,
        db: Database,
        *,
        interval: float,
        faults: Faults | None = None,
        moved: Moved | None = None,
    ) -> None:
        self.db = db
        self.interval = interval
        self.faults = faults if faults is not None else Faults()
        self.moved: Moved = moved if moved is not None else _nothing
        self.pending: dict[Key, int] = {}
        self.known: OrderedDict[Key, int] = OrderedDict()  # stored here, newest last
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.last_write = -interval
        self.failures = 0
        self.writes = 0  # transactions
        self.stored = 0  # markers moved

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="menteo-read-markers")

    def mark(self, room: str, user: str, seq: int) -> None:
        """``user`` has read ``room`` up to ``seq``: stored with the next write."""
        key = (room, user)
        if seq <= self.known.get(key, 0) or seq <= self.pending.get(key, 0):
            return  # a lower (or the same) marker is ignored
        self.pending[key] = seq
        self.wake.set()

    async def close(self) -> None:
        """Stop, then store what is pending (a read acknowledged by nothing may be lost
        only if the database is down now)."""
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        with suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            backoff = min(BACKOFF_MAX, self.interval * 2**self.failures) if self.failures else 0
            wait = self.last_write + max(self.interval, backoff) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.flush()

    async def flush(self) -> None:
        batch, self.pending = self.pending, {}
        if not batch:
            return
        self.last_write = asyncio.get_running_loop().time()
        try:
            async with self.db.write() as conn:
                moved = await conn.run_sync(store_markers_sync, batch, now_iso())
        except BaseException as exc:
            if is_fatal(exc) or isinstance(exc, asyncio.CancelledError):
                self._requeue(batch)
                raise
            self.failures += 1
            log.warning("storing %d read markers failed (%r); trying again", len(batch), exc)
            self._requeue(batch)
            self.wake.set()
            return
        self.failures = 0
        self.writes += 1
        self.stored += len(moved)
        for (room, user), seq in moved.items():
            self._remember((room, user), seq)
            try:
                self.moved(room, user, seq)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                self.faults.survived("reads", log, exc, "announcing a read marker failed")

    def _requeue(self, batch: dict[Key, int]) -> None:
        for key, seq in batch.items():
            if seq > self.pending.get(key, 0):
                self.pending[key] = seq

    def _remember(self, key: Key, seq: int) -> None:
        self.known[key] = seq
        self.known.move_to_end(key)
        if len(self.known) > REMEMBERED:
            self.known.popitem(last=False)


def _nothing(room: str, user: str, seq: int) -> None:
    pass
