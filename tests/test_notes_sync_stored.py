"""A sync reply holds only stored updates: the server applies an accepted update to its
document before the commit, so a sync answered at once could hand a client text that a
crash would lose (docs/protocol.md: what a client receives is already on disk). Found by
the notes property test; made deterministic here by holding the database's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import httpx
import websockets
from pycrdt import Doc, Text, create_sync_message, create_update_message, read_message

from menteo_testkit.waits import within
from tests.client import create_room
from tests.servers import Running

SYNC, STEP2 = 0, 1
LOCKED_FOR = 1.0  # how long the test holds the write lock and expects no reply


@asynccontextmanager
async def writes_blocked(server: Running) -> AsyncIterator[None]:
    """Hold the database's write lock (readers go on), released on exit."""
    url = server.settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pg = await asyncpg.connect(dsn)
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE event IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        await tx.rollback()
        await pg.close()


async def next_step2(ws: Any, timeout: float) -> bytes:
    """The next sync step 2 on the socket (other messages skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes) and message[:2] == bytes((SYNC, STEP2)):
                return read_message(message[2:])


async def test_a_sync_reply_waits_for_the_updates_it_holds_to_be_stored(
    server: Running,
) -> None:
    room = await create_room(
        server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    )
    url = f"{server.ws}/rooms/{room['id']}/notes?token={server.token('ana')}"
    edit = Doc()
    edit.get("notes", type=Text).insert(0, "stored first")
    async with websockets.connect(url) as ws:
        async with writes_blocked(server):
            await ws.send(create_update_message(edit.get_update()))
            # The same socket asks for everything: its frames are served in order, so the
            # update above is accepted (applied, its store waiting on the lock) by now.
            await ws.send(create_sync_message(Doc()))
            early = asyncio.ensure_future(next_step2(ws, LOCKED_FOR))
            done, _ = await asyncio.wait([early], timeout=LOCKED_FOR)
            assert not done, "a sync reply was sent while the update it holds was unstored"
            early.cancel()
            with suppress(asyncio.CancelledError):
                await early  # cancelling a recv loses nothing (websockets' documentation)
        update = await within(next_step2(ws, 10), "the sync reply once the store committed")
        seen = Doc()
        seen.apply_update(update)
        assert str(seen.get("notes", type=Text)) == "stored first"
    async with httpx.AsyncClient(base_url=server.url) as http:
        got = await http.get(f"/api/rooms/{room['id']}/notes", headers=server.service())
    assert got.json()["text"] == "stored first"
