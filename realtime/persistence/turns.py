"""Reads asked during one turn of the event loop, made together.

A reconnect storm (a process stopped: its clients arrive at another within seconds) asks
the same small reads hundreds of times at once: a room's record for each handshake, a
stream's seq when the hub first subscribes it. Each alone takes a pooled connection, a
transaction or two and a greenlet hop: more work than the statement. Asked together, the
reads of one turn run as one call on one connection (``batch`` at most to a call, several
calls when more were asked), and each caller gets its own answer.

At most ``depth`` calls run at once: the asks of the turns that come while they run wait
for the first to end and go together. Alone, a storm's joins arrive a few to a turn and
each turn's call was small; now the batch grows with the load (as a group commit does),
and a read asked on a quiet server still goes at the end of its turn. A call running
longer than ``STUCK`` no longer counts (a connection that hangs must not hold every read
of its kind behind it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection

from .database import Database

A = TypeVar("A")  # what one caller asks
R = TypeVar("R")  # its answer

BATCH = 64
DEPTH = 2  # calls of one kind at once (SQLite has two reader threads)
STUCK = 1.0  # seconds: a call running longer does not hold the next one back


class TurnReads(Generic[A, R]):
    """``read(ask)``: the answer of ``read_many(conn, asks)`` for it, asks of one turn
    together. ``read_many`` answers in the order asked; ``snapshot``: one consistent state
    for the whole call (``Database.run``)."""

    __slots__ = (
        "asks",
        "batch",
        "db",
        "depth",
        "due",
        "read_many",
        "running",
        "snapshot",
        "wake",
    )

    def __init__(
        self,
        db: Database,
        read_many: Callable[[Connection, list[A]], list[R]],
        *,
        snapshot: bool = False,
        batch: int = BATCH,
        depth: int = DEPTH,
    ) -> None:
        self.db = db
        self.read_many = read_many
        self.snapshot = snapshot
        self.batch = batch
        self.depth = depth
        self.asks: list[tuple[A, asyncio.Future[R]]] = []
        self.due = False  # a flush is scheduled for the end of this turn
        # The calls running, with when each started (kept: a task held weakly can go).
        self.running: dict[asyncio.Task[None], float] = {}
        self.wake: asyncio.TimerHandle | None = None  # when a running call counts as stuck

    async def read(self, ask: A) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.asks.append((ask, answer))
        self._schedule()
        return await answer

    def _schedule(self) -> None:
        """Flush at the end of this turn, unless ``depth`` calls run: then when one ends,
        or when one has run for ``STUCK``."""
        if not self.asks or self.due:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        busy = sorted(started for started in self.running.values() if now - started < STUCK)
        if len(busy) < self.depth:
            self.due = True
            loop.call_soon(self._flush)
        elif self.wake is None:
            self.wake = loop.call_at(busy[-self.depth] + STUCK, self._woken)

    def _woken(self) -> None:
        self.wake = None
        self._schedule()

    def _flush(self) -> None:
        self.due = False
        asks, self.asks = self.asks, []
        for start in range(0, len(asks), self.batch):
            task = asyncio.ensure_future(self._run(asks[start : start + self.batch]))
            self.running[task] = task.get_loop().time()
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.running.pop(task, None)
        self._schedule()  # the asks that waited for it

    async def _run(self, asks: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            answers = await self.db.run(
                self.read_many, [ask for ask, _ in asks], snapshot=self.snapshot
            )
        except Exception as exc:  # each caller fails as its own read would have
            for _, answer in asks:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:  # cancelled (the process stopping): so are the callers
            for _, answer in asks:
                answer.cancel()
            raise
        for (_, answer), result in zip(asks, answers, strict=True):
            if not answer.done():  # its caller may have gone meanwhile
                answer.set_result(result)
