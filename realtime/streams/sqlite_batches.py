"""Reducer batches on SQLite in one thread hop, without SQLAlchemy.

Through aiosqlite every statement is a round trip to its thread: a checklist batch (lock,
dedupe, version, item, event, sequencer, commit) cost about ten hops and 4.5 ms, ten times a
chat batch on the fast appender, and the chat of every other room waited behind it. Here the
whole transaction runs as one call on a thread of its own, on a ``sqlite3`` connection set up
like the appender's (``sqlite_append.connect``, ``BEGIN IMMEDIATE``), for batches whose
reducers can load and save on one (``RawReducer``: the checklist's).
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

from ..persistence import chat_sqlite
from ..persistence.chat import ChatReducer
from ..persistence.events import AppendResult, NewEvent, Reducer
from ..persistence.sqlite_append import COLUMNS, INSERT, connect, lock_and_dedupe, plan_with_chat


class RawReducer(Reducer, Protocol):
    def load_raw(self, conn: sqlite3.Connection, items: list[NewEvent]) -> Any: ...

    def save_raw(self, conn: sqlite3.Connection, state: Any) -> None: ...


def raw_reducers(reducers: Sequence[Reducer], items: Sequence[NewEvent]) -> list[RawReducer] | None:
    """The reducers this batch needs, if every one of them can run raw; else None."""
    used = [r for r in reducers if any(i.type.startswith(r.prefix) for i in items)]
    if not all(hasattr(r, "save_raw") for r in used):
        return None
    return [cast(RawReducer, r) for r in used]


class SQLiteBatches:
    def __init__(self, path: str) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="menteo-sqlite-reduce")
        self.held: list[sqlite3.Connection] = []  # opened on the thread, kept
        # Released with the writer that holds this (the writer has no hook of ours at close).
        weakref.finalize(self, _release, self.executor, self.held)

    async def append(
        self,
        items: Sequence[NewEvent],
        reducers: Sequence[RawReducer],
        chat: ChatReducer | None = None,
    ) -> list[AppendResult | Exception]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._append, items, reducers, chat)

    def _connect(self) -> sqlite3.Connection:
        if not self.held:
            self.held.append(connect(self.path, same_thread=False))
        return self.held[0]

    def _append(
        self,
        items: Sequence[NewEvent],
        reducers: Sequence[RawReducer],
        chat: ChatReducer | None,
    ) -> list[AppendResult | Exception]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no upgrade deadlock
        try:
            last, existing = lock_and_dedupe(conn, items)
            states = {
                r.prefix: r.load_raw(conn, [i for i in items if i.type.startswith(r.prefix)])
                for r in reducers
            }
            results, rows_out, changes = plan_with_chat(
                conn, items, last, existing, chat, reducers, states
            )
            for r in reducers:
                r.save_raw(conn, states[r.prefix])
            if rows_out:
                conn.executemany(INSERT, [tuple(row[c] for c in COLUMNS) for row in rows_out])
                touched = sorted({row["stream"] for row in rows_out})
                conn.executemany(
                    "UPDATE stream SET last_seq = ? WHERE id = ?", [(last[s], s) for s in touched]
                )
            if changes is not None:
                chat_sqlite.save(conn, changes)
            conn.execute("COMMIT")
            return results
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL: the disk is full);
            # a ROLLBACK then would raise and hide the error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _release(executor: ThreadPoolExecutor, held: list[sqlite3.Connection]) -> None:
    executor.shutdown(wait=True)  # the thread is idle: its writer is gone
    for conn in held:
        conn.close()
