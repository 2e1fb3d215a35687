"""Settings of the delivery path at values other than their defaults (README,
"Configuration"): `MENTEO_COMMIT_BATCH`, `MENTEO_GAP_FILL_DELAY`, `MENTEO_SWEEP_INTERVAL`.

Each server reads its settings from `MENTEO_*` variables. The two-process tests run two
servers on one database whose brokers do not hear each other (one has an in-process
broker): every event of the other process is a message the broker lost, which the
documented repairs (a hole filled from the database after the gap-fill delay; a lost
last message found by the sweep, Redis deployments only) must deliver. On both
databases.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from realtime.config import Settings
from tests import backends
from tests.backends import Backend, make_backend
from tests.ci import skip_or_fail
from tests.client import RoomClient, create_room
from tests.servers import SECRET, Running, run_server

MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
MARGIN = 3.0  # seconds of slack for a loaded machine, on the late side only


def env_settings(backend: Backend, env: dict[str, str], *, broker: bool = True) -> Settings:
    return Settings.from_env(
        env,
        database_url=backend.database_url,
        redis_url=backend.redis_url if broker else "",
        secret=SECRET,
    )


async def gauge(server: Running, name: str) -> int:
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(rf"^{name} (\d+)", text, re.M)
    assert found is not None, name
    return int(found.group(1))


@asynccontextmanager
async def two_unlinked_processes(
    backend: Backend, env: dict[str, str]
) -> AsyncIterator[tuple[Running, Running]]:
    """Two servers on one database, each with a broker the other does not hear."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(run_server(env_settings(backend, env, broker=False)))
        b = await stack.enter_async_context(run_server(env_settings(backend, env, broker=False)))
        yield a, b


async def chat_message(client: RoomClient, timeout: float) -> tuple[int, float]:
    """The next chat message's seq, and when it arrived."""
    frame = await client.recv_until(lambda f: f["type"] == "chat.message", timeout)
    return int(frame["seq"]), time.monotonic()


async def test_commit_batch_bounds_the_appends_of_one_commit(backend: Backend) -> None:
    """`MENTEO_COMMIT_BATCH=2`: 40 messages sent at once take at least 20 commits
    (`menteo_commits_total`), each acked with its own seq."""
    env = {
        "MENTEO_COMMIT_BATCH": "2",
        "MENTEO_RATE_BURST": "1000",
        "MENTEO_USER_RATE_BURST": "1000",
    }
    async with run_server(env_settings(backend, env)) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        commits = await gauge(server, "menteo_commits_total")
        appended = await gauge(server, "menteo_events_appended_total")
        await asyncio.gather(
            *(ana.send({"type": "chat.send", "id": f"b{i}", "body": "x"}) for i in range(40))
        )
        acks = [await ana.recv_until(lambda f: f["type"] == "ack") for _ in range(40)]
        assert sorted(a["seq"] for a in acks) == list(range(1, 41))
        assert await gauge(server, "menteo_events_appended_total") - appended == 40
        assert await gauge(server, "menteo_commits_total") - commits >= 20


async def test_a_hole_waits_the_gap_fill_delay_then_is_read_from_the_database(
    backend: Backend,
) -> None:
    """`MENTEO_GAP_FILL_DELAY=1`: Ben's process never hears Ana's message (seq 1); when
    Ben's own message (seq 2) makes the hole, his process waits the delay for the broker,
    then reads the database: Ben gets 1 then 2, no sooner than the delay."""
    delay = 1.0
    env = {"MENTEO_GAP_FILL_DELAY": str(delay), "MENTEO_SWEEP_INTERVAL": "600"}
    async with two_unlinked_processes(backend, env) as (a, b):
        room = await create_room(a.url, a.service(), MEMBERS)
        ana = await RoomClient.connect(a.ws, room["id"], a.token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], b.token("ben"))
        assert await ana.chat("a1", "from process A") == 1
        assert await ben.chat("b1", "from process B") == 2
        acked = time.monotonic()
        first, first_at = await chat_message(ben, delay + MARGIN)
        second, _ = await chat_message(ben, MARGIN)
        assert (first, second) == (1, 2)
        assert first_at - acked >= 0.8 * delay, first_at - acked


@pytest.fixture(params=["sqlite", "postgres"])
async def with_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A database (SQLite file or PostgreSQL) and the shared Redis: the sweep runs only
    where the broker is shared (Redis deployments)."""
    if request.param == "postgres":
        return await make_backend("postgres+redis", tmp_path)
    client = aioredis.Redis.from_url(backends.REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        skip_or_fail(f"Redis is not reachable ({type(exc).__name__}: {exc})")
    finally:
        await client.aclose()
    return Backend(
        "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}", backends.REDIS_URL
    )


async def test_the_sweep_finds_a_lost_last_message_every_sweep_interval(
    with_redis: Backend,
) -> None:
    """`MENTEO_SWEEP_INTERVAL=1`: a last message the broker lost (nothing after it makes a
    hole) reaches Ben at the next sweep; two in a row arrive about one interval apart.
    (Ana's process publishes nowhere Ben's hears: an in-process broker.)"""
    interval = 1.0
    env = {"MENTEO_SWEEP_INTERVAL": str(interval)}
    async with (
        run_server(env_settings(with_redis, env, broker=False)) as a,
        run_server(env_settings(with_redis, env)) as b,
    ):
        assert b.settings.redis_url
        room = await create_room(a.url, a.service(), MEMBERS)
        ana = await RoomClient.connect(a.ws, room["id"], a.token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], b.token("ben"))
        assert await ana.chat("a1", "lost by the broker") == 1
        first, first_at = await chat_message(ben, interval + MARGIN)
        assert await ana.chat("a2", "lost as well") == 2
        second, second_at = await chat_message(ben, interval + MARGIN)
        assert (first, second) == (1, 2)
        # The default (5 s) would take longer than interval + MARGIN above.
        assert second_at - first_at >= 0.8 * interval, second_at - first_at
