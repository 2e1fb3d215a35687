"""Several server processes on one Redis and one database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from menteo_testkit.redis_server import RedisServer
from tests.backends import Backend, make_backend
from tests.client import RoomClient, create_room
from tests.servers import SECRET, ServerProcess, process_env

pytestmark = pytest.mark.slow


def token(user: str, role: str | None = None) -> str:
    from realtime.auth import issue_token

    return issue_token(SECRET, user, user.title(), role=role)


SERVICE = {"authorization": "Bearer " + token("backend", "service")}


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """One database and one Redis for every process (SQLite's file is shared too)."""
    backend = await make_backend("postgres+redis", tmp_path)  # skips without Redis
    if request.param == "sqlite":
        return Backend(
            "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}", backend.redis_url
        )
    return backend


@contextlib.asynccontextmanager
async def servers(backend: Backend, count: int, **env: str) -> AsyncIterator[list[ServerProcess]]:
    extra = {
        "MENTEO_PRESENCE_GRACE": "0.5",
        "MENTEO_PRESENCE_TTL": "3",
        "MENTEO_RATE_PER_SECOND": "500",
        "MENTEO_RATE_BURST": "500",
        "MENTEO_USER_RATE_PER_SECOND": "500",
        "MENTEO_USER_RATE_BURST": "500",
        **env,
    }
    procs: list[ServerProcess] = []
    try:
        first = ServerProcess(process_env(backend, **extra))
        await first.start()  # creates the schema before the others race for it
        procs.append(first)
        rest = [ServerProcess(process_env(backend, **extra)) for _ in range(count - 1)]
        await asyncio.gather(*(p.start() for p in rest))
        procs.extend(rest)
        yield procs
    finally:
        for proc in procs:
            proc.kill()


async def test_mentor_and_mentee_on_different_processes(shared: Backend) -> None:
    async with servers(shared, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        assert [p["user_id"] for p in ben.welcome["presence"]] == ["ana", "ben"]
        joined = await ana.recv_until(lambda f: f["type"] == "presence.join")
        assert joined == {"type": "presence.join", "user_id": "ben", "name": "Ben"}

        assert await ana.chat("a1", "hello from A") == 1
        got = await ben.recv_until(lambda f: f["type"] == "chat.message")
        assert got["body"] == "hello from A" and got["seq"] == 1
        assert await ben.chat("b1", "hello from B") == 2
        assert (await ana.recv_until(lambda f: f.get("seq") == 2))["author"]["user_id"] == "ben"

        await ben.send({"type": "typing", "active": True})
        typing = await ana.recv_until(lambda f: f["type"] == "presence.typing")
        assert typing == {"type": "presence.typing", "user_id": "ben", "active": True}

        await ben.close()  # a clean close leaves at once
        left = await ana.recv_until(lambda f: f["type"] == "presence.leave")
        assert left == {"type": "presence.leave", "user_id": "ben"}
        await ana.close()


async def test_kill_9_clients_resume_elsewhere_missing_nothing(shared: Backend) -> None:
    async with servers(shared, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        epoch = ben.welcome["epoch"]
        acked = [await ana.chat(f"k{i}", f"before {i}") for i in range(5)]
        seen = [(await ben.recv_until(lambda f: f["type"] == "chat.message"))["seq"] for _ in acked]
        b.kill()  # ben's server dies without closing anything
        assert await ben.ended(timeout=5) is None  # no close frame: the process is gone
        acked += [await ana.chat(f"k{i}", f"while ben is away {i}") for i in range(5, 10)]
        ben = await RoomClient.connect(a.ws, room["id"], token("ben"), since=seen[-1], epoch=epoch)
        assert ben.welcome["recovered"]
        acked.append(await ana.chat("k10", "after"))
        seen += [
            (await ben.recv_until(lambda f: f["type"] == "chat.message"))["seq"] for _ in range(6)
        ]
        assert seen == acked == list(range(1, 12))


async def test_twenty_clients_through_three_servers_one_gap_free_sequence(shared: Backend) -> None:
    async with servers(shared, 3) as procs:
        users = [f"u{i}" for i in range(20)]
        room = await create_room(procs[0].url, SERVICE, [(u, u, "mentee") for u in users])
        clients = [
            await RoomClient.connect(procs[i % 3].ws, room["id"], token(u))
            for i, u in enumerate(users)
        ]
        per_client = 10

        async def talk(i: int, client: RoomClient) -> None:
            for n in range(per_client):
                await client.send({"type": "chat.send", "id": f"{i}-{n}", "body": f"{i}:{n}"})
                if random.random() < 0.3:
                    await asyncio.sleep(0)  # let another sender in: interleaving, not a wait

        await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
        total = len(users) * per_client

        async def view(client: RoomClient) -> list[tuple[int, str]]:
            frames = [
                await client.recv_until(lambda f: f["type"] == "chat.message", timeout=30)
                for _ in range(total)
            ]
            return [(f["seq"], f["id"]) for f in frames]

        views = await asyncio.gather(*(view(c) for c in clients))
        assert [seq for seq, _ in views[0]] == list(range(1, total + 1))
        assert len({cid for _, cid in views[0]}) == total
        assert all(v == views[0] for v in views)


async def test_redis_restart_mid_conversation_loses_nothing(
    shared: Backend, own_redis: RedisServer
) -> None:
    backend = Backend(shared.name, shared.database_url, own_redis.url)
    async with servers(backend, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        acked = [await ana.chat("r0", "before")]
        own_redis.stop()
        # Redis is down: the database is the truth, so sends are still acked.
        acked += [await ana.chat(f"r{i}", f"during {i}") for i in range(1, 4)]
        acked += [await ben.chat(f"b{i}", f"ben during {i}") for i in range(1, 3)]
        await own_redis.start()
        acked += [await ana.chat(f"r{i}", f"after {i}") for i in range(4, 7)]
        assert acked == list(range(1, 10))
        for client in (ana, ben):
            seqs = [
                (await client.recv_until(lambda f: f["type"] == "chat.message", timeout=20))["seq"]
                for _ in acked
            ]
            assert seqs == acked


async def test_users_of_a_dead_process_leave_presence_within_ttl(shared: Backend) -> None:
    """Heartbeats push a live socket's expiry to ttl ahead, one each ttl/3 (up to 2 ttl/3
    apart: the upkeep loop looks once a second); sweeps run every second. So a killed
    process's users leave between ttl/3 and ttl + 1 s after the kill: the lower bound shows
    it is the expiry at work; the upper one has 3 s of slack for a busy machine (a leave
    that never comes fails on the 15 s wait)."""
    async with servers(shared, 2, MENTEO_PRESENCE_TTL="3") as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        await RoomClient.connect(b.ws, room["id"], token("ben"))
        await ana.recv_until(lambda f: f["type"] == "presence.join")
        b.kill()  # no clean close, no leave: only heartbeats stopping tell
        started = asyncio.get_running_loop().time()
        left = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout=15)
        assert left == {"type": "presence.leave", "user_id": "ben"}
        took = asyncio.get_running_loop().time() - started
        assert 3 / 3 <= took <= 3 + 1 + 3, took


async def test_notes_typed_on_two_processes_converge_and_persist(shared: Backend) -> None:
    from tests.notes_client import NotesClient, converged

    async with servers(shared, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await NotesClient.connect(a.ws, room["id"], token("ana"))
        ben = await NotesClient.connect(b.ws, room["id"], token("ben"))
        try:
            await ana.wait_synced()
            await ben.wait_synced()
            for i in range(20):  # both type at the start, interleaved, without waiting
                ana.text.insert(0, f"a{i} ")
                ben.text.insert(0, f"b{i} ")
                if i % 5 == 0:
                    await asyncio.sleep(0)  # let the sends go out: interleaving, not a wait
            expected_len = sum(len(f"a{i} ") + len(f"b{i} ") for i in range(20))
            await ana.wait_for(
                lambda: len(str(ana.text)) == expected_len, "all 40 inserts at Ana", timeout=20
            )
            final = await converged([ana, ben], timeout=20)
        finally:
            await ana.close()
            await ben.close()
    async with servers(shared, 1) as (again,):
        fresh = await NotesClient.connect(again.ws, room["id"], token("ana"))
        try:
            await fresh.wait_for(lambda: str(fresh.text) == final, "the text after a restart")
        finally:
            await fresh.close()


async def test_feed_followers_on_two_processes_ws_and_sse(shared: Backend) -> None:
    """A WebSocket follower on one process and an SSE follower on another both get a new
    post through the broker (the database sweep, which would also deliver a lost one, is
    off); an SSE follower that reconnects to the other process with Last-Event-ID gets
    exactly what it missed."""
    from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all, feed_query, strip

    limits = {
        "MENTEO_FEED_POST_RATE_PER_SECOND": "100",
        "MENTEO_FEED_POST_BURST": "100",
        "MENTEO_SWEEP_INTERVAL": "3600",  # a lost broker message is never delivered here
    }
    async with servers(shared, 2, **limits) as (a, b):
        try:
            community = await FeedApi(a.url, token("backend", "service")).community()
            ana = FeedApi(a.url, token("ana"))
            thread = await ana.thread(community)
            ws = await WSFollower.connect(a.ws, feed_query(token("cy"), community))
            sse = await SSEFollower.connect(b.url, feed_query(token("dee"), community))

            post = await ana.post(thread, "Week 1 on two processes")

            def is_it(f: dict[str, Any]) -> bool:
                return bool(f["type"] == "feed.post" and f["post_id"] == post["id"])

            # Nothing comes after it to show a hole, and the sweep is off: only the broker
            # can bring it to either follower.
            await asyncio.gather(ws.events_until(is_it), sse.events_until(is_it))

            await sse.close()  # the SSE follower drops; events go on without it
            seen_id = sse.last_event_id
            bob = FeedApi(b.url, token("ben"))
            missed = [await ana.post(thread, f"missed {i}") for i in range(3)]
            await bob.comment(missed[1]["id"], "from process B")
            last = await ana.post(thread, "last")
            everything = await ws.events_until(
                lambda f: f["type"] == "feed.post" and f["post_id"] == last["id"]
            )
            back = await SSEFollower.connect(
                a.url, feed_query(token("dee"), community), last_event_id=seen_id
            )
            got = await back.events_until(
                lambda f: f["type"] == "feed.post" and f["post_id"] == last["id"]
            )
            assert strip(got) == strip(everything)
            seen_seq = int((seen_id or "0").rpartition(":")[2])  # ids are EPOCH:SEQ
            assert [f["seq"] for f in got] == list(range(seen_seq + 1, last["cursor"] + 1))
        finally:
            await close_all()


class PresenceView:
    """A client's list of who is online, kept as the protocol says: the welcome's list, then
    joins, leaves and syncs in order."""

    def __init__(self, client: RoomClient) -> None:
        self.client = client
        self.online = {p["user_id"] for p in client.welcome["presence"]}
        self.syncs = 0

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "presence.join":
            self.online.add(frame["user_id"])
        elif frame["type"] == "presence.leave":
            self.online.discard(frame["user_id"])
        elif frame["type"] == "presence.sync":
            self.syncs += 1
            self.online = {p["user_id"] for p in frame["presence"]}

    async def until(self, expected: set[str], timeout: float = 20) -> None:
        def seen(frame: dict[str, Any]) -> bool:
            self.apply(frame)
            return self.online == expected

        if self.online != expected:
            await self.client.recv_until(seen, timeout=timeout)


async def test_presence_after_redis_restarts_empty_shows_who_stayed(
    shared: Backend, own_redis: RedisServer
) -> None:
    """Ben connects after Redis restarted empty and before Ana's process has written her
    back: a presence.sync tells him she is here (the heartbeat alone says nothing)."""
    backend = Backend(shared.name, shared.database_url, own_redis.url)
    async with servers(backend, 2, MENTEO_PRESENCE_TTL="30") as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # Ana's process cannot write her back yet
        try:
            own_redis.stop()
            await own_redis.start()  # empty: nothing is saved
            ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        finally:
            a.proc.send_signal(signal.SIGCONT)
        view = PresenceView(ben)
        assert view.online == {"ben"}, ben.welcome  # Redis holds only him
        await view.until({"ana", "ben"})
        # Ana's heartbeat writes her back without a signal: only a snapshot can tell Ben.
        assert view.syncs >= 1
        await PresenceView(ana).until({"ana", "ben"})


async def test_leave_lost_while_redis_was_down_is_corrected(
    shared: Backend, own_redis: RedisServer
) -> None:
    """Ben leaves while Redis is down, so no presence.leave can be sent; once Redis is back,
    Ana's process sends her a presence.sync without him."""
    backend = Backend(shared.name, shared.database_url, own_redis.url)
    async with servers(backend, 2, MENTEO_PRESENCE_TTL="30") as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(a.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        view = PresenceView(ana)
        await view.until({"ana", "ben"})
        own_redis.stop()
        await ben.close()
        await b.logged("presence leave failed")
        await own_redis.start()
        await view.until({"ana"})
        assert view.syncs >= 1
        async with httpx.AsyncClient(base_url=a.url) as http:
            metrics = (await http.get("/metrics")).text
        synced = re.search(r"^menteo_presence_syncs_total (\d+)", metrics, re.M)
        assert synced is not None and int(synced.group(1)) >= 1


async def test_two_deployments_on_one_redis_do_not_hear_each_other(
    shared: Backend, tmp_path: Path
) -> None:
    """Two databases, one Redis: stream ids such as ``feed`` are the same in both, so only
    the channel names keep one deployment's events out of the other's delivery."""
    from tests.feed_client import FeedApi, WSFollower, close_all, feed_query

    other = Backend(
        "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", shared.redis_url
    )
    try:
        async with servers(shared, 1) as (a,), servers(other, 1) as (b,):
            apis = {}
            for name, server in (("a", a), ("b", b)):
                svc = FeedApi(server.url, token("backend", "service"))
                community = await svc.community(f"C-{name}")
                ana = FeedApi(server.url, token("ana"))
                apis[name] = (ana, community, await ana.thread(community))
            ana_a, community_a, thread_a = apis["a"]
            follower = await WSFollower.connect(a.ws, feed_query(token("cy"), community_a))
            ana_b, _, thread_b = apis["b"]
            await ana_b.post(thread_b, "in deployment B")  # the same seq as A's next
            mine = await ana_a.post(thread_a, "in deployment A")
            got = await follower.recv_until(lambda f: f["type"] == "feed.post", timeout=15)
            assert got["post"]["id"] == mine["id"]
    finally:
        await close_all()


async def test_member_who_joins_while_redis_is_down_learns_who_is_here(
    shared: Backend, own_redis: RedisServer
) -> None:
    """Ben's welcome can only guess while Redis is down (himself); once it is back, a
    presence.sync puts Ana in his list."""
    backend = Backend(shared.name, shared.database_url, own_redis.url)
    async with servers(backend, 2, MENTEO_PRESENCE_TTL="30") as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        await RoomClient.connect(a.ws, room["id"], token("ana"))
        own_redis.stop()
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))
        view = PresenceView(ben)
        assert view.online == {"ben"}
        await own_redis.start()
        await view.until({"ana", "ben"})
        assert view.syncs >= 1  # Ana was written back by a heartbeat: no join was sent
