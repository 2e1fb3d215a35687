"""Reducer batches on SQLite in one thread hop, without SQLAlchemy.

Through aiosqlite every statement is a round trip to its thread: a checklist batch (lock,
dedupe, version, item, event, sequencer, commit) cost about ten hops and 4.5 ms, ten times a
chat batch on the fast appender, and the chat of every other room waited behind it. Here the
whole transaction runs as one call on a thread of its own, on a ``sqlite3`` connection set up
like the appender's (WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``), for batches whose
reducers can load and save on one (``RawReducer``: the checklist's).
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

import orjson

from ..persistence.events import AppendResult, NewEvent, Reducer, StoredEvent, now_iso, plan_batch

COLUMNS = ("stream", "seq", "type", "author_id", "author_name", "client_id", "data", "ts")
INSERT = f"INSERT INTO event ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


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
        self, items: Sequence[NewEvent], reducers: Sequence[RawReducer]
    ) -> list[AppendResult | Exception]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._append, items, reducers)

    def _connect(self) -> sqlite3.Connection:
        if not self.held:
            conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acked event survives power loss too
            conn.execute("PRAGMA foreign_keys=ON")
            self.held.append(conn)
        return self.held[0]

    def _append(
        self, items: Sequence[NewEvent], reducers: Sequence[RawReducer]
    ) -> list[AppendResult | Exception]:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no upgrade deadlock
        try:
            last, existing = _lock_and_dedupe(conn, items)
            states = {
                r.prefix: r.load_raw(conn, [i for i in items if i.type.startswith(r.prefix)])
                for r in reducers
            }
            results, rows_out = plan_batch(items, last, existing, now_iso(), reducers, states)
            for r in reducers:
                r.save_raw(conn, states[r.prefix])
            if rows_out:
                conn.executemany(INSERT, [tuple(row[c] for c in COLUMNS) for row in rows_out])
                touched = sorted({row["stream"] for row in rows_out})
                conn.executemany(
                    "UPDATE stream SET last_seq = ? WHERE id = ?", [(last[s], s) for s in touched]
                )
            conn.execute("COMMIT")
            return results
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _lock_and_dedupe(
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
        values = ",".join("(?,?,?)" for _ in keys)
        rows = conn.execute(
            f"WITH k(s, a, c) AS (VALUES {values}) "
            f"SELECT {', '.join('e.' + c for c in COLUMNS)} FROM k JOIN event e "
            "ON e.stream = k.s AND e.author_id = k.a AND e.client_id = k.c",
            [part for key in keys for part in key],
        )
        for s, seq, type_, a, name, c, data, ts in rows:
            existing[(s, a, c)] = StoredEvent(s, seq, type_, a, name, c, orjson.loads(data), ts)
    return last, existing


def _release(executor: ThreadPoolExecutor, held: list[sqlite3.Connection]) -> None:
    executor.shutdown(wait=True)  # the thread is idle: its writer is gone
    for conn in held:
        conn.close()
