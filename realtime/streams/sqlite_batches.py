"""Reducer batches on SQLite in one thread hop.

Through aiosqlite every statement is a round trip to its thread: a checklist batch (lock,
dedupe, version, item, event, sequencer, commit) cost about ten hops and 4.5 ms, ten times a
chat batch on the fast appender, and the chat of every other room waited behind it. Here the
whole transaction (``append_batch_sync``) runs as one call on a thread of its own, on a sync
engine set up like the database's write engine (WAL, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine, create_engine

from ..persistence.database import _sqlite_setup
from ..persistence.events import AppendResult, NewEvent, Reducer, append_batch_sync


class SQLiteBatches:
    def __init__(self, path: str) -> None:
        self.engine = create_engine(
            f"sqlite:///{path}",
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,  # no message or title in an exception, so none in a log
        )
        _sqlite_setup(self.engine, immediate=True)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="menteo-sqlite-reduce")
        self.held: list[Connection] = []  # one connection kept open: no pool checkout per batch
        # Released with the writer that holds this (the writer has no hook of ours at close).
        weakref.finalize(self, _release, self.engine, self.executor, self.held)

    async def append(
        self, items: Sequence[NewEvent], reducers: Sequence[Reducer]
    ) -> list[AppendResult | Exception]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._append, items, reducers)

    def _append(
        self, items: Sequence[NewEvent], reducers: Sequence[Reducer]
    ) -> list[AppendResult | Exception]:
        if not self.held or self.held[0].closed:
            self.held[:] = [self.engine.connect()]
        conn = self.held[0]
        with conn.begin():
            return append_batch_sync(conn, items, lock_rows=False, reducers=reducers)


def _release(engine: Engine, executor: ThreadPoolExecutor, held: list[Connection]) -> None:
    executor.shutdown(wait=True)  # the thread is idle: its writer is gone
    for conn in held:
        conn.close()
    engine.dispose()
