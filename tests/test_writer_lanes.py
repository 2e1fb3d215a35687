"""The writer's reducer lane: a room's checklist transaction never holds other rooms' chat.

On PostgreSQL the streams with a reducer's event (checklist, feed) are committed by a lane
of their own; the main loop commits, acks and delivers every other room's chat meanwhile.
Proved with a real lock: a test connection holds the noisy room's stream row, so its
checklist transaction waits for as long as the test decides.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from menteo_testkit.waits import wait_event, wait_until
from realtime.checklist.store import ChecklistReducer
from realtime.persistence.database import Database
from realtime.persistence.events import NewEvent, StoredEvent
from realtime.persistence.rooms import MemberRecord
from realtime.persistence.rooms import create_room as create_room_row
from realtime.streams.writer import Writer
from tests.backends import make_backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

TIMEOUT = 10.0


def _acked(cid: str) -> Any:
    return lambda f: f["type"] in ("ack", "error") and f.get("id") == cid


async def _waiting_for_lock(admin: asyncpg.Connection) -> None:
    """Until a backend waits for a row lock (the writer's transaction, blocked)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )

    async def waiting() -> bool:  # the server's own activity view: no event to await
        return bool(await admin.fetchval(query))

    await wait_until(waiting, "a transaction to wait for the held row lock", TIMEOUT)


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Running]:
    """The lane exists on PostgreSQL only: these run there alone instead of skipping SQLite."""
    backend = await make_backend("postgres+redis", tmp_path)
    async with run_server(make_settings(backend)) as running:
        yield running


async def test_a_held_checklist_transaction_does_not_hold_other_rooms_chat(
    pg_server: Running,
) -> None:
    # PostgreSQL only: SQLite has one writer at a time, so a held lock holds every room.
    server = pg_server
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    noisy = await create_room(server.url, server.service(), members, title="noisy")
    quiet = await create_room(server.url, server.service(), members, title="quiet")
    busy = await RoomClient.connect(server.ws, noisy["id"], server.token("ana", "Ana"))
    calm = await RoomClient.connect(server.ws, quiet["id"], server.token("ana", "Ana"))
    watcher = await RoomClient.connect(server.ws, quiet["id"], server.token("ben", "Ben"))
    dsn = server.settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    admin = await asyncpg.connect(dsn, timeout=TIMEOUT)
    try:
        holder = await asyncpg.connect(dsn, timeout=TIMEOUT)
        lock = holder.transaction()
        await lock.start()
        try:
            await holder.execute("SELECT 1 FROM stream WHERE id = $1 FOR UPDATE", noisy["id"])
            await busy.send({"type": "checklist.add", "id": "c1", "title": "step"})
            await busy.send({"type": "chat.send", "id": "m1", "body": "after the step"})
            await _waiting_for_lock(admin)
            # The noisy room's transaction is blocked: the quiet room is acked and delivered.
            for n in range(3):
                await calm.send({"type": "chat.send", "id": f"q{n}", "body": f"hi {n}"})
                ack = await calm.recv_until(_acked(f"q{n}"), TIMEOUT)
                assert ack["type"] == "ack" and ack["seq"] == n + 1, ack
                seen = await watcher.recv_until(lambda f: f["type"] == "chat.message", TIMEOUT)
                assert seen["body"] == f"hi {n}"
        finally:
            await lock.rollback()
            await holder.close()
        # Released: the noisy room's events commit in the order they were sent.
        step = await busy.recv_until(_acked("c1"), TIMEOUT)
        message = await busy.recv_until(_acked("m1"), TIMEOUT)
        assert step["type"] == message["type"] == "ack", (step, message)
        assert (step["seq"], message["seq"]) == (1, 2)
    finally:
        await admin.close()
        for client in (busy, calm, watcher):
            await client.close()


async def test_close_releases_the_sqlite_reducer_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    await db.prepare(auto_migrate=True)
    committed: list[StoredEvent] = []
    writer = Writer(db, committed.extend, reducers=[ChecklistReducer()])
    writer.start()
    try:
        async with db.write() as conn:
            # ana is a member: the reducer refuses a non-member's operation (role table)
            room = await create_room_row(conn, "room", [MemberRecord("ana", "Ana", "mentor")])
        add = {"item_id": "s1", "title": "step"}
        result = await asyncio.wait_for(
            writer.append(NewEvent(room.id, "checklist.add", "ana", "Ana", "c1", add)), TIMEOUT
        )
        assert result.event.seq == 1
        assert _reducer_threads(), "the checklist took the SQLite reducer path"
        await asyncio.wait_for(writer.close(), TIMEOUT)
        assert not _reducer_threads()  # released by close, not left for the GC
    finally:
        await writer.close()
        await db.close()
    assert [e.type for e in committed] == ["checklist.add"]


def _reducer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("menteo-sqlite-reduce")]


async def test_a_dead_reducer_lane_stops_the_writer_and_the_process_turns_unready(
    pg_server: Running,
) -> None:
    server = pg_server  # PostgreSQL only: SQLite has no reducer lane
    assert server.state is not None
    stop_asked = asyncio.Event()
    server.state.stop_server = stop_asked.set  # what `serve` gives: stop uvicorn
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    room = await create_room(server.url, server.service(), members, title="room")
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    try:
        lane = server.state.writer.lane_task
        assert lane is not None and not lane.done()
        lane.cancel()  # as a bug or a native crash would end it
        await wait_event(stop_asked, "the watchdog to ask the process to stop", TIMEOUT)
        async with httpx.AsyncClient() as http:
            answer = await http.get(server.url + "/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["process"] == "error: writer stopped: cancelled"
        # A checklist operation (the lane's) fails at once instead of hanging.
        await ana.send({"type": "checklist.add", "id": "late", "title": "step"})
        failed = await ana.recv_until(_acked("late"), TIMEOUT)
        assert failed["type"] == "error" and failed["code"] == "unavailable", failed
    finally:
        await ana.close()
