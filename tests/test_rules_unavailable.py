"""What a client and an operator see when a store the server needs goes away, provoked for
real: PostgreSQL refusing every connection (its backends terminated, the database's
connections not allowed, as when it is down), or a private
redis-server killed. Documented in docs/protocol.md: `error unavailable` ("send it again
with the same id"), the notes socket's 1011, REST 503 `unavailable`, and `/readyz` 503
with the failing check.

PostgreSQL only for the database: an embedded SQLite file does not go away under a
running process (a write lock held by another process fails a write only after its
30-second busy timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from menteo_testkit.ports import free_port
from tests.backends import PG_ADMIN, PG_DB, Backend, make_backend
from tests.ci import skip_or_fail
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server

TIMEOUT = 10.0
MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Running]:
    backend = await make_backend("postgres+redis", tmp_path)
    async with run_server(make_settings(backend)) as running:
        yield running


@contextlib.asynccontextmanager
async def database_down(server: Running) -> AsyncIterator[None]:
    """PostgreSQL refuses every connection to the test database until the block ends;
    then the server is waited on until `/readyz` says it is back (its pools have dropped
    the connections that died meanwhile: the first request on one fails, documented as a
    503 or close 1013 "send it again")."""
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        # Superusers (the tests' role) ignore CONNECTION LIMIT; nobody connects to a
        # database that does not allow connections.
        await admin.execute(f'ALTER DATABASE "{PG_DB}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", PG_DB
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{PG_DB}" ALLOW_CONNECTIONS true')
        await admin.close()

    async def ready() -> bool:
        return (await readyz(server)).status_code == 200

    await eventually(ready, "/readyz 200 once the database is back")


async def readyz(server: Running) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        return await http.get("/readyz")


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Ask ``check`` every 50 ms until it holds (what the server shows has no event to
    await), or fail naming ``what``."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {TIMEOUT} s: {what}") from None


async def reply(client: RoomClient, cid: str) -> dict[str, Any]:
    return await client.recv_until(lambda f: f["type"] in ("ack", "error") and f.get("id") == cid)


async def test_a_write_the_database_cannot_take_is_unavailable_then_resent(
    pg_server: Running,
) -> None:
    """`error unavailable`: the event could not be stored; the socket stays open, and
    sent again with the same id once the database is back it is stored once."""
    room = await create_room(pg_server.url, pg_server.service(), MEMBERS)
    ana = await RoomClient.connect(pg_server.ws, room["id"], pg_server.token("ana"))
    ben = await RoomClient.connect(pg_server.ws, room["id"], pg_server.token("ben"))
    async with database_down(pg_server):
        await ana.send({"type": "chat.send", "id": "c1", "body": "are you there?"})
        failed = await reply(ana, "c1")
        assert (failed["type"], failed.get("code"), failed["id"]) == (
            "error",
            "unavailable",
            "c1",
        ), failed
        await ana.send({"type": "ping", "id": "still-open"})
        assert await ana.recv_until(lambda f: f["type"] == "pong") == {
            "type": "pong",
            "id": "still-open",
        }
    await ana.send({"type": "chat.send", "id": "c1", "body": "are you there?"})
    assert await reply(ana, "c1") == {"type": "ack", "id": "c1", "seq": 1}
    delivered = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert (delivered["seq"], delivered["id"]) == (1, "c1")
    assert await ana.chat("c2", "next") == 2  # the failed attempt took no seq


async def test_a_rest_write_the_database_cannot_take_is_503_unavailable(
    pg_server: Running,
) -> None:
    """REST: 503 `unavailable` when the write could not be stored; the same write succeeds
    once the database is back."""
    community = await FeedApi(pg_server.url, pg_server.token("backend", role="service")).community()
    ana = FeedApi(pg_server.url, pg_server.token("ana"))
    thread = await ana.thread(community)
    async with database_down(pg_server):
        resp = await ana.call("POST", f"/api/threads/{thread}/posts", json={"body": "hello"})
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "unavailable"
    post = await ana.post(thread, "hello")
    assert post["body"] == "hello"


async def test_a_notes_update_that_cannot_be_stored_closes_1011(pg_server: Running) -> None:
    """Notes: the update could not be stored: close 1011; the client reconnects and
    resyncs, and the edit is stored then."""
    room = await create_room(pg_server.url, pg_server.service(), MEMBERS)
    notes = await NotesClient.connect(pg_server.ws, room["id"], pg_server.token("ana"))
    await notes.wait_synced(TIMEOUT)
    async with database_down(pg_server):
        notes.text += "agenda: joins"
        assert await notes.close_code(TIMEOUT) == 1011
    again = await NotesClient.connect(pg_server.ws, room["id"], pg_server.token("ana"))
    again.doc.apply_update(notes.doc.get_update())  # the edit the client kept
    await again.wait_synced(TIMEOUT)
    headers = pg_server.service()
    async with httpx.AsyncClient(base_url=pg_server.url, headers=headers) as http:

        async def stored() -> bool:
            resp = await http.get(f"/api/rooms/{room['id']}/notes")
            assert resp.status_code == 200, resp.text
            return bool(resp.json()["text"] == "agenda: joins")

        await eventually(stored, "the resynced edit stored")


async def test_readyz_is_503_while_the_database_is_down(pg_server: Running) -> None:
    """`/readyz`: 200 with every check ok; 503 `unavailable` naming the database while
    it refuses connections; 200 again once it is back."""
    ok = await readyz(pg_server)
    assert ok.status_code == 200
    assert ok.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    async with database_down(pg_server):
        down = await readyz(pg_server)
        assert down.status_code == 503
        body = down.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("error: "), body
        assert body["checks"]["broker"] == "ok"
    assert (await readyz(pg_server)).status_code == 200  # database_down waited for it


class RedisServer:
    """A private redis-server on a free port, killed and started again by the test."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await until_listening(self.port)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        self.proc = None


async def until_listening(port: int) -> None:
    """Poll the port (nothing tells us when redis-server listens) until it accepts."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not on PATH")
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        yield redis
    finally:
        await redis.stop()


async def test_readyz_is_503_while_the_broker_is_down(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """`/readyz` names the broker when Redis is gone, and is 200 again once it is back."""
    backend = Backend(
        "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}", own_redis.url
    )
    async with run_server(make_settings(backend)) as server:
        assert (await readyz(server)).status_code == 200
        await own_redis.stop()
        down = await readyz(server)
        assert down.status_code == 503
        assert down.json()["checks"]["broker"].startswith("error: ")
        assert down.json()["checks"]["database"] == "ok"
        await own_redis.start()

        async def ready() -> bool:
            return (await readyz(server)).status_code == 200

        await eventually(ready, "/readyz 200 once Redis is back")
