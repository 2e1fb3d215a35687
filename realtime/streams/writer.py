"""The group-commit writer: one per process, one transaction for many appends.

Appends from every stream queue up while a commit runs; the next transaction takes them all
(up to ``batch``), so durability costs one commit per batch instead of one per message.
Each waiter's future resolves only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..faults import Faults, is_fatal
from ..persistence.database import Database
from ..persistence.events import AppendResult, NewEvent, Reducer, StoredEvent, append_batch

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
        appender = self.db.appender
        if appender is not None and not any(
            item.type.startswith(r.prefix) for item in items for r in self.reducers
        ):
            return await appender.append(items)
        async with self.db.write() as conn:
            return await append_batch(
                conn, items, lock_rows=not self.db.is_sqlite, reducers=self.reducers
            )
