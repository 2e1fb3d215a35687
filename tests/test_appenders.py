"""The fast appenders (SQLite thread, asyncpg) decide exactly as ``append_batch`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy import text

from realtime.persistence.chat import ChatReducer
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


def change(
    stream: str, kind: str, cid: str, target: int, author: str = "ana", **data: Any
) -> NewEvent:
    data = {"target": target, **data}
    return NewEvent(
        stream, f"chat.{kind}", author, author.title(), cid, data, moderator=author == "svc"
    )


async def test_chat_changes_decide_the_same_on_every_path(backend: Backend) -> None:
    """Edits, deletes and replies: the fast appender and ``append_batch`` store and refuse
    alike, in one batch or across batches, and leave the same rows."""
    rules = ChatReducer(edit_window=0)
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=True)
    assert db.appender is not None
    try:
        async with db.write() as conn:
            for stream in ("fa", "sa"):
                await create_stream(conn, stream)

        def batches(a: str) -> list[list[NewEvent]]:
            reply = NewEvent(a, "chat.message", "ben", "Ben", "r1", {"body": "re", "reply_to": 1})
            return [
                [chat(a, "c1", "one"), chat(a, "c2", "two"), reply],
                [
                    change(a, "edited", "e1", 1, body="one, edited"),
                    change(a, "edited", "e2", 1, author="ben", body="not hers"),  # forbidden
                    change(a, "edited", "e3", 3, body="not a message of ana"),  # forbidden
                    change(a, "deleted", "d1", 2),
                    change(a, "deleted", "d2", 2),  # already deleted
                    change(a, "edited", "e4", 4, body="an edit is no message"),  # not_found
                    chat(a, "c3", "three"),
                    change(a, "edited", "e5", 6, body="three, edited in its own batch"),
                    change(a, "deleted", "d3", 3, author="svc"),  # a service deletes any
                    NewEvent(a, "chat.message", "ana", "Ana", "r2", {"body": "x", "reply_to": 99}),
                ],
                [change(a, "edited", "e1", 1, body="resent: the original answers")],
            ]

        fast = [outcome(await db.appender.append(items, rules)) for items in batches("fa")]
        slow = []
        for items in batches("sa"):
            async with db.write() as conn:
                results = await append_batch(conn, items, lock_rows=not db.is_sqlite, chat=rules)
                slow.append(outcome(results))
        assert fast == slow
        stored = {stream: await _rows(db, stream) for stream in ("fa", "sa")}
        assert stored["fa"] == stored["sa"]
        assert [r[2] for r in stored["fa"]] == [
            {"body": "one, edited", "edited_at": "*"},
            {"body": "", "deleted": True},
            {"body": "", "reply_to": 1, "deleted": True},
            {"target": 1, "body": "one, edited"},
            {"target": 2, "by": "ana"},
            {"body": "three, edited in its own batch", "edited_at": "*"},
            {"target": 6, "body": "three, edited in its own batch"},
            {"target": 3, "by": "svc"},
        ]
    finally:
        await db.close()


async def _rows(db: Database, stream: str) -> list[tuple[int, str, dict[str, Any]]]:
    async with db.read() as conn:
        rows = await conn.execute(
            text("SELECT seq, type, data FROM event WHERE stream = :s ORDER BY seq"), {"s": stream}
        )
        out = []
        for seq, type_, data in rows:
            value = orjson.loads(data)
            if "edited_at" in value:
                value["edited_at"] = "*"  # commit times differ between the two runs
            out.append((seq, type_, value))
        return out


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


async def _event_scans(url: str) -> tuple[int, int]:
    """(sequential + index scans, rows read by sequential scans) of ``event`` so far, as
    far as the statistics have been flushed."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        row = await conn.fetchrow(
            "SELECT seq_scan + coalesce(idx_scan, 0) AS scans, seq_tup_read "
            "FROM pg_stat_user_tables WHERE relname = 'event'"
        )
        return int(row["scans"]), int(row["seq_tup_read"])
    finally:
        await conn.close()


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)  # asyncpg's alone
async def test_postgres_appender_finds_client_ids_by_index_after_the_table_grows(
    backend: Backend,
) -> None:
    """PostgreSQL keeps a generic plan for a prepared statement after five runs; made while
    ``event`` was small, the appender's client-id lookup read the whole table for every
    batch from then on (a bench's rate halved within 20,000 messages)."""
    db = Database(backend.database_url)
    await db.prepare(auto_migrate=True)
    appender: Any = db.appender
    late = 20
    try:
        async with db.write() as conn:
            await create_stream(conn, "g")
        for i in range(8):  # while the table is small: where a generic plan would be made
            await appender.append([chat("g", f"early-{i}")])
        async with db.write() as conn:  # the table grows by 20,000 rows
            await conn.execute(
                text(
                    "INSERT INTO event (stream, seq, type, author_id, author_name, client_id, "
                    "data, ts) SELECT 'g', 8 + n, 'chat.message', 'ana', 'Ana', 'bulk-' || n, "
                    "'{\"body\": \"x\"}', '2026-01-01T00:00:00Z' FROM generate_series(1, 20000) n"
                )
            )
            await conn.execute(text("UPDATE stream SET last_seq = 20008 WHERE id = 'g'"))
        scans, read = await _event_scans(backend.database_url)
        for i in range(late):
            results = await appender.append([chat("g", f"late-{i}")])
            assert outcome(results) == [(True, "g", 20009 + i, f"late-{i}", {"body": "x"})]
    finally:
        await db.close()  # the appender's session ends: its statistics are flushed
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        now_scans, now_read = await _event_scans(backend.database_url)
        if now_scans - scans >= late or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)  # polling PostgreSQL's statistics: there is no event to wait on
    assert now_scans - scans >= late, "the appender's scans never reached the statistics"
    assert now_read - read < 20_000, f"{now_read - read} rows read by sequential scans"
