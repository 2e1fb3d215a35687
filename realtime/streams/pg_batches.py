"""Reducer batches on PostgreSQL through asyncpg directly, on a connection of the write pool.

Through SQLAlchemy's async adapter a checklist batch cost about ten compiled statements and
4 ms, four times a chat batch on the fast appender (``pg_append``), and the chat of every
other room in the batch waited behind it. Here the same transaction (lock the stream rows
in id order, read stored client ids, the checklist's version and rows, plan, write, commit)
runs on asyncpg, for batches whose reducers can load and save on it (``PgReducer``: the
checklist's). It locks the same rows in the same order as the other paths, so they
serialize.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol, cast

import asyncpg

from ..persistence import chat_pg
from ..persistence.chat import ChatReducer
from ..persistence.database import Database
from ..persistence.events import AppendResult, NewEvent, Reducer
from ..persistence.pg_append import lock_and_dedupe, plan_with_chat, write_rows


class PgReducer(Reducer, Protocol):
    async def load_pg(self, conn: asyncpg.Connection, items: list[NewEvent]) -> Any: ...

    async def save_pg(self, conn: asyncpg.Connection, state: Any) -> None: ...


def pg_reducers(reducers: Sequence[Reducer], items: Sequence[NewEvent]) -> list[PgReducer] | None:
    """The reducers this batch needs, if every one of them can run on asyncpg; else None."""
    used = [r for r in reducers if any(i.type.startswith(r.prefix) for i in items)]
    if not all(hasattr(r, "save_pg") for r in used):
        return None
    return [cast(PgReducer, r) for r in used]


class PgBatches:
    """Runs on a connection of the database's write pool, borrowed for the batch: asyncpg
    statements in an asyncpg transaction (SQLAlchemy starts none of its own until its first
    statement, and none comes), so the pool keeps the connection's life cycle."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        items: Sequence[NewEvent],
        reducers: Sequence[PgReducer],
        chat: ChatReducer | None = None,
    ) -> list[AppendResult | Exception]:
        async with self.db.write() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            try:
                async with driver.transaction():
                    return await self._append(driver, items, reducers, chat)
            except asyncio.CancelledError:
                await conn.invalidate()  # cancelled mid-statement: not for reuse
                raise

    async def _append(
        self,
        conn: asyncpg.Connection,
        items: Sequence[NewEvent],
        reducers: Sequence[PgReducer],
        chat: ChatReducer | None,
    ) -> list[AppendResult | Exception]:
        last, existing = await lock_and_dedupe(conn, items)
        states = {
            r.prefix: await r.load_pg(conn, [i for i in items if i.type.startswith(r.prefix)])
            for r in reducers
        }
        results, rows_out, changes = await plan_with_chat(
            conn, items, last, existing, chat, reducers, states
        )
        for r in reducers:
            await r.save_pg(conn, states[r.prefix])
        await write_rows(conn, rows_out, last)
        if changes is not None:
            await chat_pg.save(conn, changes)
        return results
