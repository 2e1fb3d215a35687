"""Faults between a server and its stores (the soak's chaos, in small): while Redis is away
another process's events still arrive within a second (the hub reads the database often
while its broker is degraded), and PostgreSQL connections cut under a running server cost
at most one `unavailable` per operation, never a stuck writer (pooled connections that
PostgreSQL closed are discarded, not handed out again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from menteo_testkit.faultproxy import FaultProxy
from menteo_testkit.redis_server import RedisServer
from realtime.auth import issue_token
from tests.backends import Backend, make_backend
from tests.client import RoomClient, create_room
from tests.servers import SECRET, ServerProcess, process_env

pytestmark = pytest.mark.slow

SERVICE = {"authorization": "Bearer " + issue_token(SECRET, "backend", "Backend", role="service")}
MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


def token(user: str) -> str:
    return issue_token(SECRET, user, user.title())


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = await make_backend("postgres+redis", tmp_path)  # skips without PostgreSQL
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    return backend.database_url


async def test_while_redis_is_down_the_other_process_delivers_within_a_second(
    database_url: str, own_redis: RedisServer
) -> None:
    # The ordinary sweep is 30 s away: only the degraded one can bring the message.
    backend = Backend("faults", database_url, own_redis.url)
    env = process_env(backend, MENTEO_SWEEP_INTERVAL="30")
    a, b = ServerProcess(env), ServerProcess(env)
    try:
        await a.start()
        await b.start()
        room = await create_room(a.url, SERVICE, MEMBERS)
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        assert await ana.chat("m1", "with Redis") == 1
        await ben.recv_until(lambda f: f["type"] == "chat.message" and f["seq"] == 1)
        own_redis.stop()
        assert await ana.chat("m2", "without Redis") == 2  # the database is the truth
        got = await ben.recv_until(
            lambda f: f["type"] == "chat.message" and f["seq"] == 2,
            timeout=3,
            what="the message sent while Redis was down, through the database",
        )
        assert got["body"] == "without Redis"
    finally:
        a.kill()
        b.kill()


async def _until_acked(
    client: RoomClient, frame: dict[str, Any], tries: int = 3
) -> tuple[int, int]:
    """Send ``frame`` until acked, resending after each `unavailable` (as every client does);
    returns (seq, attempts)."""
    for attempt in range(1, tries + 1):
        await client.send(frame)
        reply = await client.recv_until(
            lambda f: f["type"] in ("ack", "error") and f.get("id") == frame["id"]
        )
        if reply["type"] == "ack":
            return int(reply["seq"]), attempt
        assert reply["code"] == "unavailable", reply
    raise AssertionError(f"{frame['id']} not acked in {tries} tries")


async def test_postgres_connections_reset_under_a_server_cost_one_retry_at_most(
    tmp_path: Path,
) -> None:
    backend = await make_backend("postgres", tmp_path)  # skips without PostgreSQL
    host, _, rest = backend.database_url.rpartition("@")[2].partition(":")
    port = rest.partition("/")[0]
    proxy = FaultProxy(int(port), upstream_host=host)
    await proxy.start()
    url = backend.database_url.replace(f"{host}:{port}/", f"{host}:{proxy.port}/")
    server = ServerProcess(process_env(Backend("pg-proxy", url)))
    try:
        await server.start()
        room = await create_room(server.url, SERVICE, MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], token("ana"))
        for round_ in range(3):
            # Chat (the appender's own connection) and checklist ops (the write pool).
            for n in range(3):
                await _until_acked(
                    ana, {"type": "chat.send", "id": f"c{round_}.{n}", "body": "hello"}
                )
                await _until_acked(
                    ana,
                    {
                        "type": "checklist.add",
                        "id": f"k{round_}.{n}",
                        "item_id": f"i{round_}.{n}",
                        "title": "a step",
                    },
                )
            assert proxy.reset() > 0
        # Every pooled connection was cut three times: from now on each write goes first time.
        for n in range(4):
            _, attempts = await _until_acked(
                ana,
                {"type": "checklist.add", "id": f"after{n}", "item_id": f"a{n}", "title": "x"},
            )
            seq2, attempts2 = await _until_acked(
                ana, {"type": "chat.send", "id": f"chat-after{n}", "body": "x"}
            )
            if n >= 2:  # the first writes after the last reset may meet a dead connection
                assert (attempts, attempts2) == (1, 1)
        assert seq2 == 3 * 6 + 8
    finally:
        server.kill()
        await proxy.close()
