"""The group-commit writer: one per process, one transaction for many appends.

Appends from every stream queue up while a commit runs; the next transaction takes them all
(up to ``batch``), so durability costs one commit per batch instead of one per message.
Each waiter's future resolves only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import make_url

from ..faults import Faults, is_fatal
from ..persistence.database import Database
from ..persistence.events import (
    Appender,
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


class WriterClosed(RuntimeError):
    pass


class AppendFailed(RuntimeError):
    """An item could not be stored (its cause is chained): clients get ``unavailable``.
    Always an ``Exception``, whatever its cause was, so every waiter's handler sees it."""


def _fail(
    pending: list[tuple[NewEvent, asyncio.Future[AppendResult]]],
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
    ) -> None:
        self.db = db
        self.faults = faults if faults is not None else Faults()
        self.reducers = reducers or []
        self.on_committed = on_committed
        self.batch = batch
        self.queue: asyncio.Queue[tuple[NewEvent, asyncio.Future[AppendResult]] | None] = (
            asyncio.Queue()
        )
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.commits = 0
        self.appended = 0

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
        """Commit everything queued so far, then stop."""
        if self.closed:
            return
        self.closed = True
        self.queue.put_nowait(None)
        if self.task is not None:
            await self.task

    async def _run(self) -> None:
        pending: list[tuple[NewEvent, asyncio.Future[AppendResult]]] = []
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
                if pending:
                    try:
                        await self._commit(pending)
                    except BaseException as exc:
                        if is_fatal(exc):
                            raise
                        # Whatever it was, it was this batch's: fail its waiters, go on.
                        self.faults.survived("writer", log, exc, "a commit failed")
                        _fail(pending, AppendFailed, "not stored", exc)
                pending = []
        finally:
            # Ended by close() or, unexpectedly, by cancellation (the watchdog then stops
            # the process): nobody may wait forever for an ack, and later appends fail fast.
            self.closed = True
            while not self.queue.empty():
                queued = self.queue.get_nowait()
                if queued is not None:
                    pending.append(queued)
            _fail(pending, WriterClosed, "the writer stopped", None)

    async def _commit(self, pending: list[tuple[NewEvent, asyncio.Future[AppendResult]]]) -> None:
        items = [item for item, _ in pending]
        try:
            results = await self._store(items)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            # One bad item must not fail its neighbours: retry each on its own.
            log.warning("batch of %d failed (%r); retrying one by one", len(items), exc)
            results = []
            for item in items:
                try:
                    results.extend(await self._store([item]))
                except BaseException as one:
                    if is_fatal(one):
                        raise
                    self.faults.survived("writer", log, one, "append to %s failed", item.stream)
                    failed = AppendFailed("not stored")
                    failed.__cause__ = one
                    results.append(failed)
        self.commits += 1
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
        self.appended += len(created)
        if created:
            try:
                self.on_committed(created)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                # Stored and acked; the hub's next event or sweep finds what it missed.
                self.faults.survived("writer", log, exc, "delivering committed events failed")

    async def _store(self, items: list[NewEvent]) -> list[AppendResult | Exception]:
        """Store a batch. Streams with an event a reducer keeps (checklist, feed) take the
        reducer's transaction; every other stream takes the fast appender first, so one
        room's checklist operation never puts the chat of other rooms on the slow path.
        A stream's events stay in one transaction, in queue order."""
        appender = self.db.appender
        reduced = {item.stream for item in items if self._reduced(item)}
        if appender is None or not reduced:
            return await (
                self._store_reduced(items) if appender is None else appender.append(items)
            )
        fast = [n for n, item in enumerate(items) if item.stream not in reduced]
        if not fast:
            return await self._store_reduced(items)
        slow = [n for n, item in enumerate(items) if item.stream in reduced]
        fast_items, slow_items = [items[n] for n in fast], [items[n] for n in slow]
        if self.db.is_sqlite:  # one writer at a time there: the fast part first
            fast_results = await appender.append(fast_items)
            slow_results = await self._store_after(slow_items)
        else:  # two connections, disjoint streams: both transactions at once
            fast_results, slow_results = await self._store_both(appender, fast_items, slow_items)
        results: list[AppendResult | Exception | None] = [None] * len(items)
        for n, result in zip(fast, fast_results, strict=True):
            results[n] = result
        for n, result in zip(slow, slow_results, strict=True):
            results[n] = result
        return [r for r in results if r is not None]

    async def _store_after(self, slow_items: list[NewEvent]) -> list[AppendResult | Exception]:
        """The reducer part of a batch whose fast part is committed: a failure now must not
        make the caller store that part again, so it is retried here, one by one."""
        try:
            return await self._store_reduced(slow_items)
        except Exception as exc:
            log.warning("batch of %d failed (%s); retrying one by one", len(slow_items), exc)
            return [await self._store_one(item) for item in slow_items]

    async def _store_both(
        self, appender: Appender, fast_items: list[NewEvent], slow_items: list[NewEvent]
    ) -> tuple[list[AppendResult | Exception], list[AppendResult | Exception]]:
        fast, slow = await asyncio.gather(
            appender.append(fast_items), self._store_reduced(slow_items), return_exceptions=True
        )
        for outcome in (fast, slow):
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled: as the sequential path would
        if isinstance(fast, Exception) and isinstance(slow, Exception):
            raise fast  # neither committed: the caller retries each item
        if isinstance(fast, Exception):  # the reducer part is committed: retry the rest here
            log.warning("batch of %d failed (%s); retrying one by one", len(fast_items), fast)
            fast = [await self._append_one(appender, item) for item in fast_items]
        if isinstance(slow, Exception):
            log.warning("batch of %d failed (%s); retrying one by one", len(slow_items), slow)
            slow = [await self._store_one(item) for item in slow_items]
        assert not isinstance(fast, BaseException) and not isinstance(slow, BaseException)
        return fast, slow

    async def _append_one(self, appender: Appender, item: NewEvent) -> AppendResult | Exception:
        try:
            return (await appender.append([item]))[0]
        except Exception as exc:
            log.exception("append to %s failed", item.stream)
            return exc

    def _reduced(self, item: NewEvent) -> bool:
        return any(item.type.startswith(r.prefix) for r in self.reducers)

    async def _store_reduced(self, items: list[NewEvent]) -> list[AppendResult | Exception]:
        batches = self._sqlite_batches()
        raw = raw_reducers(self.reducers, items) if batches is not None else None
        if batches is not None and raw is not None:
            return await batches.append(items, raw)  # one thread hop
        pg = self._pg_batches()
        direct = pg_reducers(self.reducers, items) if pg is not None else None
        if pg is not None and direct is not None:
            return await pg.append(items, direct)  # asyncpg, no SQLAlchemy per statement
        async with self.db.write() as conn:
            return await append_batch(
                conn, items, lock_rows=not self.db.is_sqlite, reducers=self.reducers
            )

    def _sqlite_batches(self) -> SQLiteBatches | None:
        """The one-hop path for reducer batches on a SQLite file (made on first use)."""
        if not self.db.is_sqlite or self.db.appender is None:
            return None
        batches: SQLiteBatches | None = getattr(self, "_batches", None)
        if batches is None:
            path = make_url(self.db.url).database
            if not path:
                return None
            batches = self._batches = SQLiteBatches(path)
        return batches

    def _pg_batches(self) -> PgBatches | None:
        """The asyncpg path for reducer batches on PostgreSQL (made on first use); only
        where the fast appender runs (an asyncpg URL it understands)."""
        if self.db.is_sqlite or self.db.appender is None:
            return None
        batches: PgBatches | None = getattr(self, "_pg", None)
        if batches is None:
            batches = self._pg = PgBatches(self.db)
        return batches

    async def _store_one(self, item: NewEvent) -> AppendResult | Exception:
        try:
            return (await self._store_reduced([item]))[0]
        except Exception as exc:
            log.exception("append to %s failed", item.stream)
            return exc
