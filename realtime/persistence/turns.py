"""Reads asked during one turn of the event loop, made together.

A reconnect storm (a process stopped: its clients arrive at another within seconds) asks
the same small reads hundreds of times at once: a room's record for each handshake, a
stream's seq when the hub first subscribes it. Each alone takes a pooled connection, a
transaction or two and a greenlet hop: more work than the statement. Asked together, the
reads of one turn run as one call on one connection (``batch`` at most to a call, several
calls when more were asked), and each caller gets its own answer.
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


class TurnReads(Generic[A, R]):
    """``read(ask)``: the answer of ``read_many(conn, asks)`` for it, asks of one turn
    together. ``read_many`` answers in the order asked; ``snapshot``: one consistent state
    for the whole call (``Database.run``)."""

    __slots__ = ("asks", "batch", "db", "read_many", "running", "snapshot")

    def __init__(
        self,
        db: Database,
        read_many: Callable[[Connection, list[A]], list[R]],
        *,
        snapshot: bool = False,
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.read_many = read_many
        self.snapshot = snapshot
        self.batch = batch
        self.asks: list[tuple[A, asyncio.Future[R]]] = []
        self.running: set[asyncio.Task[None]] = set()  # kept: a task held only weakly can go

    async def read(self, ask: A) -> R:
        loop = asyncio.get_running_loop()
        if not self.asks:
            loop.call_soon(self._flush)
        answer: asyncio.Future[R] = loop.create_future()
        self.asks.append((ask, answer))
        return await answer

    def _flush(self) -> None:
        asks, self.asks = self.asks, []
        for start in range(0, len(asks), self.batch):
            task = asyncio.ensure_future(self._run(asks[start : start + self.batch]))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

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
