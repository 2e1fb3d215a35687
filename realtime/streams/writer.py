"""The group-commit writer: one per process, one transaction for many appends.

Appends from every stream queue up while a commit runs; the next transaction takes them all
(up to ``batch``), so durability costs one commit per batch instead of one per message.
Each waiter's future resolves only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..persistence.database import Database
from ..persistence.events import AppendResult, NewEvent, Reducer, StoredEvent, append_batch

log = logging.getLogger("menteo.writer")

Committed = Callable[[list[StoredEvent]], None]


class WriterClosed(RuntimeError):
    pass


class Writer:
    def __init__(
        self,
        db: Database,
        on_committed: Committed,
        *,
        batch: int = 512,
        reducers: list[Reducer] | None = None,
    ) -> None:
        self.db = db
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
                await self._commit(pending)

    async def _commit(self, pending: list[tuple[NewEvent, asyncio.Future[AppendResult]]]) -> None:
        items = [item for item, _ in pending]
        try:
            results = await self._store(items)
        except Exception as exc:
            # One bad item must not fail its neighbours: retry each on its own.
            log.warning("batch of %d failed (%s); retrying one by one", len(items), exc)
            results = []
            for item in items:
                try:
                    results.extend(await self._store([item]))
                except Exception as one:
                    log.exception("append to %s failed", item.stream)
                    results.append(one)
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
            except Exception:
                log.exception("delivering committed events failed")

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
