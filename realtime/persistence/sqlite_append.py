"""Appends to SQLite in one thread hop per batch.

Through aiosqlite every statement, cursor and fetch is a round trip to its thread, and each
hop costs a GIL handoff: about 19 hops and 3 ms of CPU for a one-message batch here. This
appender runs the whole transaction (lock, dedupe, insert, advance the sequencer, commit) in
one call on its own thread, with the same planning as ``append_batch``. Batches holding
events that a reducer maintains (checklist, feed) still take the SQLAlchemy path. Chat
changes (edits, deletes) and replies are planned here too (``plan_with_chat``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import chat_sqlite
from .chat import ChatReducer, ChatState, needs_chat
from .events import (
    AppendResult,
    NewEvent,
    Prefix,
    Reducer,
    StoredEvent,
    now_iso,
    plan_batch,
    row_to_event,
)

T = TypeVar("T")

COLUMNS = ("stream", "seq", "type", "author_id", "author_name", "client_id", "data", "ts")
INSERT = f"INSERT INTO event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class _Row:
    """A result row with attribute access, as ``row_to_event`` expects."""

    def __init__(self, values: Sequence[Any]) -> None:
        for name, value in zip(COLUMNS, values, strict=True):
            setattr(self, name, value)


class SQLiteAppender:
    def __init__(self, path: str) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="menteo-sqlite-append")
        self.conn: sqlite3.Connection | None = None

    async def append(
        self, items: Sequence[NewEvent], chat: ChatReducer | None = None
    ) -> list[AppendResult | Exception]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._append, items, chat)

    async def close(self) -> None:
        def shut() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        await asyncio.get_running_loop().run_in_executor(self.executor, shut)
        self.executor.shutdown(wait=True)

    def run(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``fn(connection, *args)`` in a write transaction on this appender's thread, between
        batches: writes of ours besides events (the search index) never wait for the lock."""

        def call() -> T:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL: the disk is full);
                # a ROLLBACK then would raise and hide the error.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        return asyncio.get_running_loop().run_in_executor(self.executor, call)

    def erase_wal(self) -> Awaitable[tuple[int, int, int]]:
        """Checkpoint the WAL into the database file and truncate it to nothing: the pages a
        delete replaced are still in it, erased text included. Waits (the busy timeout) for
        readers of older snapshots to finish; (busy, log frames, checkpointed frames)."""

        def call() -> tuple[int, int, int]:
            row = self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        return asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _connect(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = connect(self.path)
        return self.conn

    def _append(
        self, items: Sequence[NewEvent], chat: ChatReducer | None
    ) -> list[AppendResult | Exception]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no upgrade deadlock
        try:
            last, existing = lock_and_dedupe(conn, items)
            results, rows_out, changes = plan_with_chat(conn, items, last, existing, chat)
            if rows_out:
                conn.executemany(INSERT, [tuple(r[c] for c in COLUMNS) for r in rows_out])
                touched = sorted({r["stream"] for r in rows_out})
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


def connect(path: str, *, same_thread: bool = True) -> sqlite3.Connection:
    """A writing connection: WAL, ``synchronous=FULL`` (an acked event survives power loss
    too), and ``secure_delete`` (freed bytes are zeroed: an erased message leaves nothing
    in the file)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=same_thread)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    return conn


def lock_and_dedupe(
    conn: sqlite3.Connection, items: Sequence[NewEvent]
) -> tuple[dict[str, int], dict[tuple[str, str, str], StoredEvent]]:
    """The streams' last seqs and the events already stored under the batch's client ids
    (the write lock is held: BEGIN IMMEDIATE)."""
    streams = sorted({item.stream for item in items})
    marks = ",".join("?" * len(streams))
    last = dict(conn.execute(f"SELECT id, last_seq FROM stream WHERE id IN ({marks})", streams))
    keys = sorted({(i.stream, i.author_id, i.client_id) for i in items if i.client_id is not None})
    existing: dict[tuple[str, str, str], StoredEvent] = {}
    if keys:
        # A join on a VALUES list uses the unique index; a row-value IN scans.
        values = ",".join("(?,?,?)" for _ in keys)
        rows = conn.execute(
            f"WITH k(s, a, c) AS (VALUES {values}) "
            f"SELECT {', '.join('e.' + c for c in COLUMNS)} FROM k JOIN event e "
            "ON e.stream = k.s AND e.author_id = k.a AND e.client_id = k.c",
            [part for key in keys for part in key],
        )
        for raw in rows:
            event = row_to_event(_Row(raw))
            existing[(event.stream, event.author_id, event.client_id or "")] = event
    return last, existing


def plan_with_chat(
    conn: sqlite3.Connection,
    items: Sequence[NewEvent],
    last: dict[str, int],
    existing: dict[tuple[str, str, str], StoredEvent],
    chat: ChatReducer | None,
    reducers: Sequence[Reducer] = (),
    states: dict[Prefix, Any] | None = None,
) -> tuple[list[AppendResult | Exception], list[dict[str, Any]], ChatState | None]:
    """``plan_batch``, with the chat rules when the batch holds a chat change or a reply
    (a batch of plain messages plans exactly as before: nothing more is read or written)."""
    if chat is None or not needs_chat(items):
        return (*plan_batch(items, last, existing, now_iso(), reducers, states), None)
    changes = chat_sqlite.load(conn, items)
    states = {**(states or {}), chat.prefix: changes}
    return (*plan_batch(items, last, existing, now_iso(), [*reducers, chat], states), changes)
