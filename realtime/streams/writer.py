"""The group-commit writer: one per process, one transaction for many appends.

Appends from every stream queue up while a commit runs; the next transaction takes them all
(up to ``batch``), so durability costs one commit per batch instead of one per message.
Each waiter's future resolves only after its transaction committed.

On PostgreSQL the streams with an event a reducer keeps (checklist, feed) go to a second
loop, the reducer lane, with its own connection and its own batches: the chat of every
other room is committed, acked and delivered by the main loop without waiting for any
reducer transaction (measured: a mixed batch's ack waited for its checklist part, about
twice a chat batch, and the next batch queued behind both). A stream stays in the lane
while it has events there, so its events keep their queue order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from sqlalchemy import make_url

from ..faults import Faults, is_fatal
from ..metrics import NOWHERE, Metrics
from ..persistence.chat import DELETED, ChatReducer
from ..persistence.database import Database
from ..persistence.events import (
    AppendResult,
    NewEvent,
    Reducer,
    StoredEvent,
    append_batch,
)
from .pg_batches import PgBatches, pg_reducers
from .sqlite_batches import SQLiteBatches, raw_reducers

log = logging.getLogger("menteo.writer")

Committed = Callable[[list[StoredEvent]], None]
Pending = list[tuple[NewEvent, asyncio.Future[AppendResult]]]
Store = Callable[[list[NewEvent]], Awaitable[list[AppendResult | Exception]]]


class WriterClosed(RuntimeError):
    pass


class AppendFailed(RuntimeError):
    """An item could not be stored (its cause is chained): clients get ``unavailable``.
    Always an ``Exception``, whatever its cause was, so every waiter's handler sees it."""


def _fail(
    pending: Pending,
    kind: type[RuntimeError],
    message: str,
    cause: BaseException | None,
) -> None:
    for _, fut in pending:
        if not fut.done():
            error = kind(message)
            error.__cause__ = cause
            fut.set_exception(error)


class Writer:
    def __init__(
        self,
        db: Database,
        on_committed: Committed,
        *,
        batch: int = 512,
        reducers: list[Reducer] | None = None,
        faults: Faults | None = None,
        metrics: Metrics | None = None,
        chat: ChatReducer | None = None,
    ) -> None:
        self.db = db
        self.faults = faults if faults is not None else Faults()
        # Bound once: a commit counts without a label lookup.
        self._commits = metrics.counter("menteo_commits_total") if metrics else NOWHERE
        self._appended = metrics.counter("menteo_events_appended_total") if metrics else NOWHERE
        self._commit_seconds = metrics.histogram("menteo_commit_seconds") if metrics else NOWHERE
        self.reducers = reducers or []
        # Chat edits, deletes and replies: planned by every path inside its transaction
        # (not a routing reducer: plain chat keeps the fast appender).
        self.chat = chat if chat is not None else ChatReducer()
        self.on_committed = on_committed
        self.batch = batch
        self.queue: asyncio.Queue[tuple[NewEvent, asyncio.Future[AppendResult]] | None] = (
            asyncio.Queue()
        )
        self.task: asyncio.Task[None] | None = None
        # The reducer lane (PostgreSQL): what the main loop handed over, and per stream how
        # many of its events are queued or in flight there.
        self.lane: asyncio.Queue[Pending | None] = asyncio.Queue()
        self.lane_task: asyncio.Task[None] | None = None
        self.in_lane: Counter[str] = Counter()
        self.closed = False
        self._batches: SQLiteBatches | None = None
        self._pg: PgBatches | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="menteo-writer")

    def append(self, item: NewEvent) -> asyncio.Future[AppendResult]:
        """Queue ``item``; the future resolves after commit, or fails (nothing stored)."""
        fut: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(WriterClosed("the server is shutting down"))
        else:
            self.queue.put_nowait((item, fut))
        return fut

    async def close(self) -> None:
        """Commit everything queued so far, then stop and release the reducer paths."""
        if self.closed:
            return
        self.closed = True
        self.queue.put_nowait(None)
        try:
            if self.task is not None:
                await self.task
        finally:
            await self._release()

    async def _release(self) -> None:
        """The SQLite reducer path's thread and connection (the PostgreSQL one borrows a
        pooled connection per batch and holds nothing between batches)."""
        batches, self._batches, self._pg = self._batches, None, None
        if batches is not None:
            await asyncio.to_thread(_release_sqlite, batches)

    def _split(self) -> bool:
        """Whether reducer streams take the lane: PostgreSQL with the fast appender, where
        the two run on separate connections (SQLite has one writer at a time)."""
        return self.db.appender is not None and not self.db.is_sqlite

    async def _run(self) -> None:
        pending: Pending = []
        lane: asyncio.Task[None] | None = None
        if self._split():
            lane = self.lane_task = asyncio.create_task(
                self._run_lane(), name="menteo-writer-reducers"
            )
            lane.add_done_callback(self._lane_done)
        try:
            stopping = False
            while not stopping:
                first = await self.queue.get()
                pending = [] if first is None else [first]
                stopping = first is None
                while len(pending) < self.batch and not self.queue.empty():
                    nxt = self.queue.get_nowait()
                    if nxt is None:
                        stopping = True
                        break
                    pending.append(nxt)
                if lane is not None:
                    pending = self._hand_over(pending)
                if pending:
                    await self._commit_batch(pending, self._store)
                pending = []
            if lane is not None:  # closing: the lane commits what it was handed, then ends
                self.lane.put_nowait(None)
                await lane
        finally:
            # Ended by close() or, unexpectedly, by cancellation (the watchdog then stops
            # the process): nobody may wait forever for an ack, and later appends fail fast.
            self.closed = True
            if lane is not None and not lane.done():
                lane.cancel()
                await asyncio.gather(lane, return_exceptions=True)
            while not self.queue.empty():
                queued = self.queue.get_nowait()
                if queued is not None:
                    pending.append(queued)
            while not self.lane.empty():
                pending.extend(self.lane.get_nowait() or [])
            _fail(pending, WriterClosed, "the writer stopped", None)

    def _hand_over(self, pending: Pending) -> Pending:
        """Give the lane the streams with a reducer's event in this batch or still events
        in the lane (so a stream's events keep their order); return the rest."""
        slow = {item.stream for item, _ in pending if self._reduced(item)}
        slow.update(self.in_lane)
        if not slow:
            return pending
        handed = [entry for entry in pending if entry[0].stream in slow]
        if handed:
            self.in_lane.update(item.stream for item, _ in handed)
            self.lane.put_nowait(handed)
        return [entry for entry in pending if entry[0].stream not in slow]

    async def _run_lane(self) -> None:
        """The reducer lane: its batches one at a time, in the order handed over."""
        pending: Pending = []
        try:
            stopping = False
            while not stopping:
                first = await self.lane.get()
                if first is None:
                    break
                pending = list(first)
                while len(pending) < self.batch and not self.lane.empty():
                    nxt = self.lane.get_nowait()
                    if nxt is None:
                        stopping = True
                        break
                    pending.extend(nxt)
                try:
                    await self._commit_batch(pending, self._store_lane)
                finally:
                    self.in_lane.subtract(item.stream for item, _ in pending)
                    for stream in {item.stream for item, _ in pending}:
                        if self.in_lane[stream] <= 0:
                            del self.in_lane[stream]
                pending = []
        finally:
            _fail(pending, WriterClosed, "the writer stopped", None)

    def _lane_done(self, lane: asyncio.Task[None]) -> None:
        """A lane that ends before the writer does takes the writer with it: the watchdog
        watches the main task, and appends would otherwise wait for a lane that is gone."""
        if self.task is not None and not self.task.done() and not self.closed:
            self.task.cancel()

    async def _commit_batch(self, pending: Pending, store: Store) -> None:
        try:
            await self._commit(pending, store)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            # Whatever it was, it was this batch's: fail its waiters, go on.
            self.faults.survived("writer", log, exc, "a commit failed")
            _fail(pending, AppendFailed, "not stored", exc)

    async def _commit(self, pending: Pending, store: Store) -> None:
        items = [item for item, _ in pending]
        started = time.perf_counter()
        try:
            results = await store(items)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            # One bad item must not fail its neighbours: retry each on its own.
            log.warning("batch of %d failed (%r); retrying one by one", len(items), exc)
            results = []
            for item in items:
                try:
                    results.extend(await store([item]))
                except BaseException as one:
                    if is_fatal(one):
                        raise
                    self.faults.survived("writer", log, one, "append to %s failed", item.stream)
                    failed = AppendFailed("not stored")
                    failed.__cause__ = one
                    results.append(failed)
        if self.db.is_sqlite and _erases(items):
            await self._erase_wal()  # before the acks: nothing of an erased body stays
        self._commit_seconds.observe(time.perf_counter() - started)
        self._commits.inc()
        created: list[StoredEvent] = []
        for (_, fut), result in zip(pending, results, strict=True):
            if isinstance(result, Exception):
                if not fut.done():
                    fut.set_exception(result)
                continue
            if result.created:
                created.append(result.event)
            if not fut.done():  # a cancelled waiter (socket gone) only loses its ack
                fut.set_result(result)
        self._appended.inc(len(created))
        if created:
            try:
                self.on_committed(created)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                # Stored and acked; the hub's next event or sweep finds what it missed.
                self.faults.survived("writer", log, exc, "delivering committed events failed")

    async def _erase_wal(self) -> None:
        try:
            await self.db.erase_wal()
        except Exception as exc:  # committed already: the acks go out regardless
            self.faults.survived("writer", log, exc, "truncating the WAL after a delete failed")

    async def _store(self, items: list[NewEvent]) -> list[AppendResult | Exception]:
        """Store a batch of the main loop. Streams with an event a reducer keeps (checklist,
        feed) take the reducer's transaction; every other stream takes the fast appender
        first, so one room's checklist operation never puts the chat of other rooms on the
        slow path (on PostgreSQL the lane took those streams before this). A stream's
        events stay in one transaction, in queue order."""
        appender = self.db.appender
        if appender is None:
            return await self._store_reduced(items)
        reduced = {item.stream for item in items if self._reduced(item)}
        if not reduced:
            return await appender.append(items, self.chat)
        fast = [n for n, item in enumerate(items) if item.stream not in reduced]
        if not fast:
            return await self._store_reduced(items)
        slow = [n for n, item in enumerate(items) if item.stream in reduced]
        # One writer at a time (SQLite): the fast part first.
        fast_results = await appender.append([items[n] for n in fast], self.chat)
        slow_results = await self._store_after([items[n] for n in slow])
        results: list[AppendResult | Exception | None] = [None] * len(items)
        for n, result in zip(fast, fast_results, strict=True):
            results[n] = result
        for n, result in zip(slow, slow_results, strict=True):
            results[n] = result
        return [r for r in results if r is not None]

    async def _store_lane(self, items: list[NewEvent]) -> list[AppendResult | Exception]:
        """A batch of the lane: the reducer's transaction for all of it (a stream of the
        lane with chat only stays off the fast appender, whose connection is the main
        loop's)."""
        return await self._store_reduced(items)

    async def _store_after(self, slow_items: list[NewEvent]) -> list[AppendResult | Exception]:
        """The reducer part of a batch whose fast part is committed: a failure now must not
        make the caller store that part again, so it is retried here, one by one."""
        try:
            return await self._store_reduced(slow_items)
        except Exception as exc:
            log.warning("batch of %d failed (%s); retrying one by one", len(slow_items), exc)
            return [await self._store_one(item) for item in slow_items]

    def _reduced(self, item: NewEvent) -> bool:
        return any(item.type.startswith(r.prefix) for r in self.reducers)

    async def _store_reduced(self, items: list[NewEvent]) -> list[AppendResult | Exception]:
        batches = self._sqlite_batches()
        raw = raw_reducers(self.reducers, items) if batches is not None else None
        if batches is not None and raw is not None:
            return await batches.append(items, raw, self.chat)  # one thread hop
        pg = self._pg_batches()
        direct = pg_reducers(self.reducers, items) if pg is not None else None
        if pg is not None and direct is not None:
            return await pg.append(items, direct, self.chat)  # asyncpg, no SQLAlchemy per statement
        async with self.db.write() as conn:
            return await append_batch(
                conn,
                items,
                lock_rows=not self.db.is_sqlite,
                reducers=self.reducers,
                chat=self.chat,
            )

    def _sqlite_batches(self) -> SQLiteBatches | None:
        """The one-hop path for reducer batches on a SQLite file (made on first use)."""
        if not self.db.is_sqlite or self.db.appender is None:
            return None
        if self._batches is None:
            path = make_url(self.db.url).database
            if not path:
                return None
            self._batches = SQLiteBatches(path)
        return self._batches

    def _pg_batches(self) -> PgBatches | None:
        """The asyncpg path for reducer batches on PostgreSQL (made on first use); only
        where the fast appender runs (an asyncpg URL it understands)."""
        if self.db.is_sqlite or self.db.appender is None:
            return None
        if self._pg is None:
            self._pg = PgBatches(self.db)
        return self._pg

    async def _store_one(self, item: NewEvent) -> AppendResult | Exception:
        try:
            return (await self._store_reduced([item]))[0]
        except Exception as exc:
            log.exception("append to %s failed", item.stream)
            return exc


def _erases(items: list[NewEvent]) -> bool:
    return any(item.type == DELETED for item in items)


def _release_sqlite(batches: SQLiteBatches) -> None:
    """Stop the SQLite reducer thread (idle: the writer stopped) and close its connection;
    the finalizer that would do it at garbage collection then finds nothing left."""
    batches.executor.shutdown(wait=True)
    while batches.held:
        batches.held.pop().close()
