"""Per-user budgets hold for all processes together when Redis is configured
(docs/security.md, "Per user"): the room frame budget (``MENTEO_USER_RATE_*``) of a user's
sockets on two processes, and the feed's write rates of requests to both; while Redis is
away each process falls back to its own."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from menteo_testkit.redis_cluster import LocalCluster
from menteo_testkit.redis_server import RedisServer
from menteo_testkit.waits import wait_until
from realtime.sockets.shared_rate import SharedRate
from realtime.sockets.shared_slots import SharedSlots
from tests.backends import Backend, make_backend
from tests.ci import skip_or_fail
from tests.client import RoomClient, close_code, create_room
from tests.feed_client import FeedApi
from tests.test_scale_out import SERVICE, servers, token

pytestmark = pytest.mark.slow

BURST = 10
# A bucket that does not refill during a test: every token counted is the burst's.
LIMITS = {"MENTEO_USER_RATE_PER_SECOND": "0.001", "MENTEO_USER_RATE_BURST": str(BURST)}


async def pings(client: RoomClient, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` pings; the answer to each (``pong`` or ``error``)."""
    for i in range(count):
        await client.send({"type": "ping", "id": f"{tag}{i}"})
    return [await client.recv_until(lambda f: f["type"] in ("pong", "error")) for _ in range(count)]


def passed(answers: list[dict[str, Any]]) -> int:
    refused = [a for a in answers if a["type"] == "error"]
    assert all(a["code"] == "rate_limited" for a in refused), refused
    return len(answers) - len(refused)


async def test_a_users_sockets_on_two_processes_share_one_budget(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)
    async with servers(backend, 2, **LIMITS) as (a, b):
        room = await create_room(a.url, SERVICE, [("ana", "Ana", "mentor")])
        on_a = await RoomClient.connect(a.ws, room["id"], token("ana"))
        on_b = await RoomClient.connect(b.ws, room["id"], token("ana"))
        # 8 frames on each process: each far below the budget alone, 16 together.
        answers = await asyncio.gather(pings(on_a, 8, "a"), pings(on_b, 8, "b"))
        assert passed(answers[0]) + passed(answers[1]) == BURST
        # Another user's budget is their own, on either process.
        ben = await RoomClient.connect(b.ws, room["id"], token("ben", "service"))
        assert passed(await pings(ben, BURST, "s")) == BURST


async def test_while_redis_is_away_each_process_keeps_its_own_budget(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not on PATH")
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        pg = await make_backend("postgres+redis", tmp_path)
        backend = Backend(pg.name, pg.database_url, redis.url)
        async with servers(backend, 2, **LIMITS) as (a, b):
            room = await create_room(a.url, SERVICE, [("ana", "Ana", "mentor")])
            on_a = await RoomClient.connect(a.ws, room["id"], token("ana"))
            on_b = await RoomClient.connect(b.ws, room["id"], token("ana"))
            redis.stop()
            # The per-process limit: each process admits the burst, as without Redis.
            answers = await asyncio.gather(pings(on_a, 12, "a"), pings(on_b, 12, "b"))
            assert [passed(side) for side in answers] == [BURST, BURST]
    finally:
        redis.stop()


async def test_feed_write_rates_hold_across_two_processes(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)
    limits = {"MENTEO_FEED_POST_RATE_PER_SECOND": "0.001", "MENTEO_FEED_POST_BURST": "6"}
    async with servers(backend, 2, **limits) as (a, b):
        community = await FeedApi(a.url, token("backend", "service")).community()
        thread = await FeedApi(a.url, token("ana")).thread(community)  # one of the 6
        statuses = []
        for i in range(8):  # alternately on each process: 4 each, 8 together
            api = FeedApi((a, b)[i % 2].url, token("ana"))
            resp = await api.call("POST", f"/api/threads/{thread}/posts", json={"body": f"{i}"})
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["retry-after"]) >= 1
        assert statuses == [201] * 5 + [429] * 3, statuses


async def test_the_address_cap_holds_across_two_processes_and_a_crash_frees_its_slots(
    tmp_path: Path,
) -> None:
    backend = await make_backend("postgres+redis", tmp_path)
    cap = {"MENTEO_MAX_CONNECTIONS_PER_IP": "3", "MENTEO_PRESENCE_TTL": "3"}
    async with servers(backend, 2, **cap) as (a, b):
        room = await create_room(a.url, SERVICE, [("ana", "Ana", "mentor")])
        path = f"/rooms/{room['id']}/ws"
        held = [await RoomClient.connect(a.ws, room["id"], token("ana")) for _ in range(2)]
        held.append(await RoomClient.connect(b.ws, room["id"], token("ana")))
        # Three open from this address over both processes: a fourth is refused on either.
        assert await close_code(b.ws, f"{path}?token=whatever") == 1013
        assert await close_code(a.ws, f"{path}?token=whatever") == 1013
        # A closed one frees its slot for the other process (written back within a moment).
        await held.pop().close()

        async def opens_on_a() -> bool:
            try:
                held.append(await RoomClient.connect(a.ws, room["id"], token("ana")))
            except websockets.ConnectionClosed:  # refused: closed 1013 before a welcome
                return False
            return True

        await wait_until(opens_on_a, "a slot freed on b to count on a", 5, every=0.2)
        # A process killed with -9 frees nothing itself: its slots expire within the ttl.
        a.kill()

        async def opens_on_b() -> bool:
            try:
                held.append(await RoomClient.connect(b.ws, room["id"], token("ana")))
            except websockets.ConnectionClosed:
                return False
            return True

        await wait_until(opens_on_b, "a dead process's slots to expire", 10, every=0.5)


async def test_the_budget_and_the_address_cap_hold_on_a_redis_cluster(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server and redis-cli are needed to start a Redis Cluster")
    nodes = LocalCluster(tmp_path / "cluster")
    await nodes.start()
    try:
        backend = Backend("sqlite+cluster", f"sqlite+aiosqlite:///{tmp_path / 'db'}", nodes.url)
        env = {**LIMITS, "MENTEO_MAX_CONNECTIONS_PER_IP": "3"}
        async with servers(backend, 2, **env) as (a, b):
            room = await create_room(a.url, SERVICE, [("ana", "Ana", "mentor")])
            on_a = await RoomClient.connect(a.ws, room["id"], token("ana"))
            on_b = await RoomClient.connect(b.ws, room["id"], token("ana"))
            answers = await asyncio.gather(pings(on_a, 8, "a"), pings(on_b, 8, "b"))
            assert passed(answers[0]) + passed(answers[1]) == BURST
            await RoomClient.connect(b.ws, room["id"], token("ana"))  # the third
            path = f"/rooms/{room['id']}/ws?token=whatever"
            assert await close_code(a.ws, path) == 1013
    finally:
        nodes.stop()


async def test_the_address_cap_holds_through_a_join_storm(tmp_path: Path) -> None:
    """Many handshakes at once each ask Redis for an address slot: past the client's pool
    they used to fail with ``MaxConnectionsError`` and every process fell back to its own
    count, so the cap over both processes did not hold in a reconnect storm."""
    backend = await make_backend("postgres+redis", tmp_path)
    held_on_b, storm, cap = 40, 120, 100
    async with servers(backend, 2, MENTEO_MAX_CONNECTIONS_PER_IP=str(cap)) as (a, b):
        room = await create_room(a.url, SERVICE, [("ana", "Ana", "mentor")])
        held = [await RoomClient.connect(b.ws, room["id"], token("ana")) for _ in range(held_on_b)]

        async def join() -> RoomClient | None:
            try:
                return await RoomClient.connect(a.ws, room["id"], token("ana"))
            except websockets.ConnectionClosed:  # refused: closed 1013 before a welcome
                return None

        joined = [c for c in await asyncio.gather(*(join() for _ in range(storm))) if c]
        try:
            assert len(joined) == cap - held_on_b  # not the per-process cap's `storm`
        finally:
            await asyncio.gather(*(c.close() for c in held + joined))


async def test_requests_arriving_together_keep_every_grant(tmp_path: Path) -> None:
    """Twenty requests of one user at once each find no lease and each ask Redis for one
    (a tenth of a second of the rate: 100 tokens at 1,000/s, from a burst of 1,000): the
    budget covers them all, so all twenty pass, on ten grants kept together. Before, each
    grant replaced the last, and the grants after the tenth were empty: ten were refused
    (CI: a burst of 20 feed posts at 1,000/s got a 429)."""
    backend = await make_backend("postgres+redis", tmp_path)
    assert backend.redis_url is not None
    client = aioredis.from_url(backend.redis_url)
    try:
        budget = SharedRate(client, f"menteo-test:{uuid.uuid4().hex}:", 1000.0, 1000)
        waits = await asyncio.gather(*(budget.take_or_wait("ana") for _ in range(20)))
        assert waits == [None] * 20, waits
        assert budget.round_trips == 20 and budget.fallbacks == 0
        assert budget.leases["ana"].tokens >= 1000 - 20 - 100  # the rest kept, not dropped
    finally:
        await client.aclose()


async def test_claims_of_one_address_made_together_share_a_round_trip(tmp_path: Path) -> None:
    """Sixty handshakes of one address (a NAT, a reconnect storm) claim at once, the other
    process holding five of the cap of thirty: exactly the twenty-five that fit are
    admitted, the counts the first twenty-five took, in a round trip or two, not sixty."""
    backend = await make_backend("postgres+redis", tmp_path)
    assert backend.redis_url is not None
    client = aioredis.from_url(backend.redis_url)
    prefix = f"menteo-test:{uuid.uuid4().hex}:"
    other, here = (SharedSlots(client, prefix, 30, 30.0) for _ in range(2))
    try:
        assert await other.claim("10.0.0.9", 5)
        admitted = await asyncio.gather(*(here.claim("10.0.0.9", n) for n in range(1, 61)))
        assert admitted == [True] * 25 + [False] * 35
        assert here.round_trips <= 2, here.round_trips
        held = await client.hgetall(f"{prefix}{{10.0.0.9}}")
        assert int(held[here.me.encode()].split(b":")[0]) == 25  # as many as fit
        # The other process may not pass the cap either now: its sixth is refused.
        assert not await other.claim("10.0.0.9", 6)
    finally:
        await client.aclose()


async def test_a_claim_waiting_when_the_slots_close_is_answered(tmp_path: Path) -> None:
    """A claim whose task the shutdown cancelled before it ran answered nobody: its
    handshake, and every later one of the address, waited for ever."""
    backend = await make_backend("postgres+redis", tmp_path)
    assert backend.redis_url is not None
    client = aioredis.from_url(backend.redis_url)
    slots = SharedSlots(client, f"menteo-test:{uuid.uuid4().hex}:", 30, 30.0)
    try:
        claim = asyncio.ensure_future(slots.claim("10.0.0.8", 1))
        await asyncio.sleep(0)  # one turn: the claim's task exists and has not run
        await slots.close()
        done, _ = await asyncio.wait((claim,), timeout=5)
        assert done and claim.cancelled()
        assert slots.waiting == {}
    finally:
        await client.aclose()
