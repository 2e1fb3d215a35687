"""The fast appenders (SQLite thread, asyncpg) decide exactly as ``append_batch`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from realtime.persistence.database import Database
from realtime.persistence.events import AppendResult, NewEvent, append_batch, create_stream
from tests.backends import PG_ADMIN, Backend


def chat(stream: str, client_id: str | None, body: str = "x", author: str = "ana") -> NewEvent:
    return NewEvent(stream, "chat.message", author, author.title(), client_id, {"body": body})


def outcome(results: list[AppendResult | Exception]) -> list[Any]:
    return [
        type(r).__name__
        if isinstance(r, Exception)
        else (r.created, r.event.stream[-1], r.event.seq, r.event.client_id, r.event.data)
        for r in results
    ]


async def _seqs(db: Database, stream: str) -> tuple[list[int], int]:
    async with db.read() as conn:
        rows = await conn.execute(
            text("SELECT seq FROM event WHERE stream = :s ORDER BY seq"), {"s": stream}
        )
        last = await conn.execute(text("SELECT last_seq FROM stream WHERE id = :s"), {"s": stream})
        return [r[0] for r in rows], int(last.scalar_one())


async def test_fast_path_matches_append_batch(backend: Backend) -> None:
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=True)
    assert db.appender is not None
    try:
        async with db.write() as conn:
            for stream in ("fa", "fb", "sa", "sb"):
                await create_stream(conn, stream)

        def batch(a: str, b: str) -> list[list[NewEvent]]:
            return [
                [
                    chat(a, "c1"),
                    chat(b, "c1"),
                    chat(a, "c1", "again"),  # a repeat within the batch: the original
                    chat("nowhere", "c9"),
                    chat(a, None),
                    chat(a, "c1", author="ben"),  # ids are per author
                    chat(b, ""),
                ],
                [chat(a, "c1", "resent"), chat(b, ""), chat(b, "c2")],  # stored earlier
            ]

        fast = [outcome(await db.appender.append(items)) for items in batch("fa", "fb")]
        slow = []
        for items in batch("sa", "sb"):
            async with db.write() as conn:
                slow.append(outcome(await append_batch(conn, items, lock_rows=not db.is_sqlite)))
        assert fast == slow
        assert await _seqs(db, "fa") == ([1, 2, 3], 3)
        assert await _seqs(db, "fb") == ([1, 2, 3], 3)
    finally:
        await db.close()


async def test_processes_appending_to_one_stream_leave_no_hole(backend: Backend) -> None:
    """Two databases stand for two processes; the SQLAlchemy path (reducer batches) joins."""
    one, two = Database(backend.database_url), Database(backend.database_url)
    await one.prepare(auto_migrate=True)
    assert one.appender is not None and two.appender is not None
    try:
        async with one.write() as conn:
            await create_stream(conn, "ra")
            await create_stream(conn, "rb")

        async def fast(db: Database, tag: str) -> None:
            assert db.appender is not None
            for i in range(40):
                await db.appender.append([chat("ra", f"{tag}{i}"), chat("rb", f"{tag}{i}")])

        async def slow(tag: str) -> None:
            for i in range(40):
                async with two.write() as conn:
                    items = [chat("rb", f"{tag}{i}"), chat("ra", f"{tag}{i}")]
                    await append_batch(conn, items, lock_rows=not two.is_sqlite)

        await asyncio.gather(fast(one, "p"), fast(two, "q"), slow("s"), fast(one, "p"))
        for stream in ("ra", "rb"):  # "p" twice: its second pass is all resends
            assert await _seqs(one, stream) == (list(range(1, 121)), 120)
    finally:
        await one.close()
        await two.close()


# What asyncpg raises on the first use of a connection the server has terminated: the
# termination notice (57P01), the socket's end, or (seen here) a protocol that is mid-way
# through reading that notice when the next statement starts.
DEAD_CONNECTION = (
    asyncpg.AdminShutdownError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)  # asyncpg's alone
async def test_postgres_appender_reconnects_after_its_connection_dies(backend: Backend) -> None:
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=True)
    appender: Any = db.appender
    try:
        async with db.write() as conn:
            await create_stream(conn, "r")
        await appender.append([chat("r", "a")])
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", appender.conn.get_server_pid())
        finally:
            await admin.close()
        # The batch on the dead connection may fail (the writer retries it), but once only:
        # the appender drops that connection and the next batch opens another.
        try:
            results = await appender.append([chat("r", "b")])
        except DEAD_CONNECTION:
            results = await appender.append([chat("r", "b")])
        assert outcome(results) == [(True, "r", 2, "b", {"body": "x"})]
    finally:
        await db.close()
    assert appender.conn is None
