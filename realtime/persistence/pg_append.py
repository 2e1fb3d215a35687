"""Appends to PostgreSQL through asyncpg directly, on a connection of its own.

Through SQLAlchemy's async adapter every statement is compiled, wrapped in a greenlet switch
and sent with its own round trip: about a third of a process's CPU in the 2-process fan-out.
This appender runs the same transaction as ``append_batch`` (lock the stream rows in id
order, read the client ids already stored, plan, insert, advance the sequencer, commit) as
four constant statements that asyncpg prepares once, with the same planning
(``plan_batch``). Batches holding events that a reducer maintains still take the SQLAlchemy
path, so they lock the same rows in the same order and the two paths serialize.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from sqlalchemy import make_url

from . import chat_pg
from .chat import ChatReducer, ChatState, needs_chat
from .events import AppendResult, NewEvent, Prefix, Reducer, StoredEvent, now_iso, plan_batch

# ``ORDER BY id FOR UPDATE`` locks in id order, as ``append_batch`` does: no deadlock
# between processes appending to overlapping sets of streams.
LOCK = "SELECT id, last_seq FROM stream WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
# Read after the lock: under READ COMMITTED this statement sees every event committed by
# whoever held the lock before us, so a resent id is found whichever process stored it.
EXISTING = (
    "SELECT e.stream, e.seq, e.type, e.author_id, e.author_name, e.client_id, e.data, e.ts "
    "FROM unnest($1::text[], $2::text[], $3::text[]) AS k(s, a, c) "
    "JOIN event e ON e.stream = k.s AND e.author_id = k.a AND e.client_id = k.c"
)
# One statement, one round trip: the rows as arrays, and the new last seqs.
WRITE = (
    "WITH ins AS (INSERT INTO event "
    "(stream, seq, type, author_id, author_name, client_id, data, ts) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[])) "
    "UPDATE stream SET last_seq = u.seq FROM unnest($9::text[], $10::bigint[]) AS u(id, seq) "
    "WHERE stream.id = u.id"
)
COLUMNS = ("stream", "seq", "type", "author_id", "author_name", "client_id", "data", "ts")
RECYCLE_S = 1800.0  # as the engines' pool_recycle
CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


class PgAppender:
    def __init__(self, connect_args: dict[str, Any]) -> None:
        self.connect_args = connect_args
        self.conn: asyncpg.Connection | None = None
        self.opened_at = 0.0
        # The writer appends one batch at a time; the lock keeps close() and any other
        # caller off a connection in the middle of a transaction.
        self.lock = asyncio.Lock()

    async def append(
        self, items: Sequence[NewEvent], chat: ChatReducer | None = None
    ) -> list[AppendResult | Exception]:
        async with self.lock:
            conn = await self._connect()
            try:
                await conn.execute("BEGIN")
                results = await self._append(conn, items, chat)
                await conn.execute("COMMIT")
                return results
            except Exception:
                await self._abort(conn, rollback=True)
                raise
            except BaseException:  # cancelled mid-statement: the protocol state is unknown
                await self._abort(conn, rollback=False)
                raise

    async def close(self) -> None:
        async with self.lock:
            conn, self.conn = self.conn, None
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=5)

    async def _connect(self) -> asyncpg.Connection:
        conn = self.conn
        if conn is not None and (conn.is_closed() or time.monotonic() - self.opened_at > RECYCLE_S):
            self.conn = None
            if not conn.is_closed():
                conn.terminate()
            conn = None
        if conn is None:
            # A generic plan, which PostgreSQL keeps for a prepared statement after five
            # runs, is costed for the tables as they were then: made on a new database it
            # reads every event to find a batch's client ids (hash join over a seq scan), and
            # the rate falls as the table grows. Custom plans are costed for each batch.
            settings = {**self.connect_args.get("server_settings", {}), **CUSTOM_PLANS}
            conn = await asyncpg.connect(**{**self.connect_args, "server_settings": settings})
            self.conn = conn
            self.opened_at = time.monotonic()
        return conn

    async def _abort(self, conn: asyncpg.Connection, *, rollback: bool) -> None:
        if rollback and not conn.is_closed():
            try:
                await conn.execute("ROLLBACK")
                return
            except Exception:
                pass
        # A connection that cannot roll back is not reused: the next batch opens another.
        if self.conn is conn:
            self.conn = None
        if not conn.is_closed():
            conn.terminate()

    async def _append(
        self, conn: asyncpg.Connection, items: Sequence[NewEvent], chat: ChatReducer | None
    ) -> list[AppendResult | Exception]:
        last, existing = await lock_and_dedupe(conn, items)
        results, rows_out, changes = await plan_with_chat(conn, items, last, existing, chat)
        await write_rows(conn, rows_out, last)
        if changes is not None:
            await chat_pg.save(conn, changes)
        return results


async def lock_and_dedupe(
    conn: asyncpg.Connection, items: Sequence[NewEvent]
) -> tuple[dict[str, int], dict[tuple[str, str, str], StoredEvent]]:
    """Lock the batch's stream rows (in id order) and read their last seqs, then the events
    already stored under the batch's client ids."""
    streams = sorted({item.stream for item in items})
    last: dict[str, int] = {r[0]: r[1] for r in await conn.fetch(LOCK, streams)}
    existing: dict[tuple[str, str, str], StoredEvent] = {}
    keys = sorted({(i.stream, i.author_id, i.client_id) for i in items if i.client_id is not None})
    if keys:
        found = await conn.fetch(
            EXISTING, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
        )
        for r in found:
            event = StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7])
            existing[(r[0], r[3], r[5])] = event
    return last, existing


async def plan_with_chat(
    conn: asyncpg.Connection,
    items: Sequence[NewEvent],
    last: dict[str, int],
    existing: dict[tuple[str, str, str], StoredEvent],
    chat: ChatReducer | None,
    reducers: Sequence[Reducer] = (),
    states: dict[Prefix, Any] | None = None,
) -> tuple[list[AppendResult | Exception], list[dict[str, Any]], ChatState | None]:
    """``plan_batch``, with the chat rules when the batch holds a chat change or a reply."""
    if chat is None or not needs_chat(items):
        return (*plan_batch(items, last, existing, now_iso(), reducers, states), None)
    changes = await chat_pg.load(conn, items)
    states = {**(states or {}), chat.prefix: changes}
    return (*plan_batch(items, last, existing, now_iso(), [*reducers, chat], states), changes)


async def write_rows(
    conn: asyncpg.Connection, rows_out: list[dict[str, Any]], last: dict[str, int]
) -> None:
    if rows_out:
        touched = sorted({r["stream"] for r in rows_out})
        await conn.execute(
            WRITE,
            *([r[c] for r in rows_out] for c in COLUMNS),
            touched,
            [last[s] for s in touched],
        )


def connect_args(url: str) -> dict[str, Any] | None:
    """asyncpg's arguments for a SQLAlchemy URL, or None when in doubt (another driver,
    query options such as SSL settings that only SQLAlchemy's dialect knows how to pass)."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql+asyncpg" or parsed.query:
        return None
    args: dict[str, Any] = parsed.translate_connect_args(username="user")
    args["timeout"] = 30
    return args
