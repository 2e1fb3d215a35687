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
import orjson

from ..persistence.database import Database
from ..persistence.events import AppendResult, NewEvent, Reducer, StoredEvent, now_iso, plan_batch
from ..persistence.pg_append import COLUMNS, EXISTING, LOCK, WRITE


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
        self, items: Sequence[NewEvent], reducers: Sequence[PgReducer]
    ) -> list[AppendResult | Exception]:
        async with self.db.write() as conn:
            raw = await conn.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            try:
                async with driver.transaction():
                    return await self._append(driver, items, reducers)
            except asyncio.CancelledError:
                await conn.invalidate()  # cancelled mid-statement: not for reuse
                raise

    async def _append(
        self, conn: asyncpg.Connection, items: Sequence[NewEvent], reducers: Sequence[PgReducer]
    ) -> list[AppendResult | Exception]:
        streams = sorted({item.stream for item in items})
        last: dict[str, int] = {r[0]: r[1] for r in await conn.fetch(LOCK, streams)}
        existing: dict[tuple[str, str, str], StoredEvent] = {}
        keys = sorted(
            {(i.stream, i.author_id, i.client_id) for i in items if i.client_id is not None}
        )
        if keys:
            found = await conn.fetch(
                EXISTING, [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
            )
            for r in found:
                event = StoredEvent(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), r[7])
                existing[(r[0], r[3], r[5])] = event
        states = {
            r.prefix: await r.load_pg(conn, [i for i in items if i.type.startswith(r.prefix)])
            for r in reducers
        }
        results, rows_out = plan_batch(items, last, existing, now_iso(), reducers, states)
        for r in reducers:
            await r.save_pg(conn, states[r.prefix])
        if rows_out:
            touched = sorted({row["stream"] for row in rows_out})
            await conn.execute(
                WRITE,
                *([row[c] for row in rows_out] for c in COLUMNS),
                touched,
                [last[s] for s in touched],
            )
        return results
