"""Acked means stored: across restarts, SIGTERM and a sender that goes away mid-commit."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi, SSEFollower, StreamEnded, WSFollower, feed_query
from tests.servers import ServerProcess, make_settings, process_env, run_server

# Uvicorn re-raises the signal it handled once shutdown is complete.
GRACEFUL = (0, -signal.SIGTERM)


async def test_history_survives_a_restart(backend: Backend) -> None:
    server = ServerProcess(process_env(backend))
    await server.start()
    try:
        settings = make_settings(backend)
        service = {"authorization": "Bearer " + _token(settings.secret, "svc", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        ana = await RoomClient.connect(server.ws, room["id"], _token(settings.secret, "ana"))
        epoch = ana.welcome["epoch"]
        for i in range(1, 6):
            await ana.chat(f"r{i}", f"before restart {i}")
        assert await server.stop() in GRACEFUL
        server = ServerProcess(process_env(backend))
        await server.start()
        back = await RoomClient.connect(
            server.ws, room["id"], _token(settings.secret, "ana"), since=2, epoch=epoch
        )
        assert back.welcome["recovered"] and back.welcome["epoch"] == epoch
        assert [(await back.recv())["seq"] for _ in range(3)] == [3, 4, 5]
        fresh = await RoomClient.connect(server.ws, room["id"], _token(settings.secret, "ana"))
        assert [m["body"] for m in fresh.welcome["history"]] == [
            f"before restart {i}" for i in range(1, 6)
        ]
        assert await back.chat("r6", "after restart") == 6
    finally:
        server.kill()


async def test_sigterm_closes_1012_keeps_acked_and_exits_quickly(backend: Backend) -> None:
    server = ServerProcess(process_env(backend))
    await server.start()
    try:
        settings = make_settings(backend)
        service = {"authorization": "Bearer " + _token(settings.secret, "svc", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        ana = await RoomClient.connect(server.ws, room["id"], _token(settings.secret, "ana"))
        acked = [await ana.chat(f"t{i}", "x") for i in range(10)]
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop(signal.SIGTERM))
        assert await ana.closed_with() == 1012
        assert await stopping in GRACEFUL
        assert any("Application shutdown complete" in line for line in server.output)
        assert time.monotonic() - started < 5
        async with run_server(settings) as again, httpx.AsyncClient() as http:
            page = await http.get(
                f"{again.url}/api/rooms/{room['id']}/messages", headers=again.service()
            )
            assert [m["seq"] for m in page.json()["messages"]] == acked
    finally:
        server.kill()


async def test_sender_gone_before_commit_still_stores_and_room_goes_on(backend: Backend) -> None:
    async with run_server(make_settings(backend)) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        await ana.send({"type": "chat.send", "id": "bye", "body": "sent then gone"})
        ana.ws.transport.abort()  # gone without a close frame, before the commit
        got = await ben.recv_until(lambda f: f["type"] == "chat.message")
        assert got["id"] == "bye" and got["seq"] == 1
        assert await ben.chat("b1", "still here") == 2


def _token(secret: str, user: str, role: str | None = None) -> str:
    from realtime.auth import issue_token

    return issue_token(secret, user, user.title(), role=role)


async def test_logs_carry_no_tokens_and_no_room_content(backend: Backend) -> None:
    server = ServerProcess(process_env(backend))
    await server.start()
    try:
        settings = make_settings(backend)
        service = {"authorization": "Bearer " + _token(settings.secret, "svc", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        token = _token(settings.secret, "ana")
        ana = await RoomClient.connect(server.ws, room["id"], token)
        await ana.chat("secret-1", "my salary is 1234567 per year")
        await ana.ws.send('{"type": "chat.send", "id": "x", "body": ""}')  # an error, logged?
        await ana.recv_until(lambda f: f["type"] == "error")
        await ana.close()
        assert await server.stop() in GRACEFUL
    finally:
        server.kill()
    output = "".join(server.output)
    assert "WebSocket" in output  # the server did log the connection...
    assert token not in output and token[:40] not in output  # ...but not its token
    assert "token=***" in output
    assert "1234567" not in output


async def test_reaction_counts_acked_just_before_a_kill_reach_the_feed(backend: Backend) -> None:
    """The second reaction of a burst waits in memory for the window's end; kill -9 then,
    and the mark it left in its own transaction makes the next process append the counts."""
    env = process_env(backend, MENTEO_FEED_REACTION_WINDOW="3")
    secret = make_settings(backend).secret
    server = ServerProcess(env)
    await server.start()
    try:
        service = FeedApi(server.url, _token(secret, "svc", role="service"))
        ana = FeedApi(server.url, _token(secret, "ana"))
        community = await service.community()
        post = await ana.post(await ana.thread(community), "hello")
        ben = FeedApi(server.url, _token(secret, "ben"))
        for kind in ("like", "celebrate"):  # the first goes out at once, the second waits
            assert (await ben.react(post["id"], kind))["changed"]
        server.kill()
        server = ServerProcess(env)
        await server.start()
        reader = FeedApi(server.url, _token(secret, "cy"))
        stored = (await reader.feed(f"community={community}"))["posts"][0]["reactions"]
        assert stored["like"] == stored["celebrate"] == 1
        follower = await WSFollower.connect(
            server.ws, feed_query(_token(secret, "cy"), community=community, since=0)
        )
        last = await follower.recv_until(
            lambda f: f["type"] == "feed.reaction" and f["counts"] == stored, timeout=30
        )
        assert last["post_id"] == post["id"]
    finally:
        server.kill()


async def test_sigterm_ends_event_streams_at_once(backend: Backend) -> None:
    """An event stream is an HTTP response uvicorn would wait for until the shutdown
    timeout: the signal ends it cleanly instead, and the process exits well before."""
    server = ServerProcess(process_env(backend, MENTEO_SHUTDOWN_TIMEOUT="30"))
    await server.start()
    try:
        secret = make_settings(backend).secret
        community = await FeedApi(server.url, _token(secret, "svc", role="service")).community()
        follower = await SSEFollower.connect(
            server.url, feed_query(_token(secret, "cy"), community=community)
        )
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop(signal.SIGTERM, timeout=60))
        with pytest.raises(StreamEnded) as ended:  # no more events
            await follower.message(timeout=20)
        assert ended.value.how == "clean", ended.value  # the response ended, not cut off
        assert await stopping in GRACEFUL
        assert time.monotonic() - started < 10  # not the 30 s timeout
        assert not any("Exception in ASGI application" in line for line in server.output)
        await follower.close()
    finally:
        server.kill()


async def test_a_join_the_database_cannot_serve_closes_1013(tmp_path: Path) -> None:
    """PostgreSQL refuses every connection (as with a pool exhausted past its timeout): a
    joining socket is told to come back (1013) instead of failing with 1011."""
    import asyncpg

    from tests.backends import PG_ADMIN, PG_DB, make_backend

    backend = await make_backend("postgres+redis", tmp_path)
    server = ServerProcess(process_env(backend))
    await server.start()
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        secret = make_settings(backend).secret
        service = {"authorization": "Bearer " + _token(secret, "svc", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        await admin.execute(f'ALTER DATABASE "{PG_DB}" CONNECTION LIMIT 0')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", PG_DB
        )
        ana = await RoomClient.connect(
            server.ws, room["id"], _token(secret, "ana"), expect_welcome=False
        )
        assert await ana.closed_with() == 1013
        await admin.execute(f'ALTER DATABASE "{PG_DB}" CONNECTION LIMIT -1')
        back = await RoomClient.connect(server.ws, room["id"], _token(secret, "ana"))
        assert await back.chat("c1", "the database is back") == 1
        async with httpx.AsyncClient(base_url=server.url) as http:
            metrics = (await http.get("/metrics")).text
        assert 'menteo_sockets_refused_total{reason="unavailable"} 1' in metrics
    finally:
        await admin.execute(f'ALTER DATABASE "{PG_DB}" CONNECTION LIMIT -1')
        await admin.close()
        server.kill()
