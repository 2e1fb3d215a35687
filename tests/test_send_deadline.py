"""Every send has a deadline: a client that stops reading is aborted and released.

Each test opens a raw TCP client that does the handshake and then never reads (a small
receive buffer, so the server's writes back up), and waits on what the server shows: the
slot free, presence left, the connection gone from the server and closed on our end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi, close_all
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server
from tests.stalled_client import http_request, stalled, until, websocket_request
from tests.test_feed import OPEN_LIMITS

OPEN_RATES: dict[str, Any] = {
    "rate_per_second": 10_000.0,
    "rate_burst": 10_000,
    "user_rate_per_second": 10_000.0,
    "user_rate_burst": 10_000,
    **OPEN_LIMITS,
}
# More than loopback's socket buffers hold (the server's send buffer grows to ~4 MiB).
BACKLOG_DATA = 5 * 1024 * 1024
MARGIN = 5.0  # seconds of slack on a loaded machine


@pytest.fixture(autouse=True)
async def close_feed_clients() -> AsyncIterator[None]:
    yield
    await close_all()


def limit_hits(server: Running, label: str) -> int:
    assert server.state is not None
    return server.state.metrics.counters[("menteo_limit_hits_total", label)]


def open_sockets(server: Running, kind: str) -> int:
    assert server.state is not None
    return server.state.metrics.open[kind]


def stream_released(server: Running) -> bool:
    return open_sockets(server, "feed_sse") == 0 and slots_held(server) == 0


def slots_held(server: Running) -> int:
    assert server.state is not None
    assert server.state.slots is not None
    return server.state.slots.counts.get("127.0.0.1", 0)


async def room_with_history(server: Running, size: int = BACKLOG_DATA) -> tuple[str, RoomClient]:
    """Ana and Ben's room with ``size`` bytes of chat; Ana stays connected to watch."""
    members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    room = await create_room(server.url, server.service(), members)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    await fill_room(ana, size)
    return str(room["id"]), ana


async def fill_room(ana: RoomClient, size: int) -> None:
    body = "z" * 3900
    sent = 0
    while sent * len(body) < size:
        batch = [
            ana.send({"type": "chat.send", "id": f"f{sent + i}", "body": body}) for i in range(50)
        ]
        await asyncio.gather(*batch)
        sent += 50
        await ana.recv_until(lambda f, last=sent - 1: f["type"] == "ack" and f["id"] == f"f{last}")
    ana.skipped.clear()


async def feed_with_history(server: Running, size: int = BACKLOG_DATA) -> str:
    """A community whose feed holds ``size`` bytes of posts."""
    svc = FeedApi(server.url, server.token("backend", "Backend", role="service"))
    community = await svc.community()
    ana = FeedApi(server.url, server.token("ana"))
    thread = await ana.thread(community)
    await fill_feed(server, thread, size)
    return community


async def fill_feed(server: Running, thread: str, size: int) -> None:
    body = "p" * 9000
    headers = {"authorization": "Bearer " + server.token("ana")}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        posted = 0
        while posted * len(body) < size:
            answers = await asyncio.gather(
                *[http.post(f"/api/threads/{thread}/posts", json={"body": body}) for _ in range(20)]
            )
            refused = [a for a in answers if a.status_code != 201]
            assert not refused, (refused[0].status_code, refused[0].text[:300])
            posted += 20


async def test_room_socket_stalled_in_catch_up_is_aborted_and_released(backend: Backend) -> None:
    settings = make_settings(backend, send_timeout=1.0, **OPEN_RATES)
    async with run_server(settings) as server:
        room_id, ana = await room_with_history(server)
        token = server.token("ben")
        ben = await stalled(server, websocket_request(f"/rooms/{room_id}/ws?token={token}&since=0"))
        assert ben.status == 101
        try:
            join = await ana.recv_until(lambda f: f["type"] == "presence.join")
            assert join["user_id"] == "ben"
            # Catching up, Ben's socket stops draining: aborted after send_timeout, it leaves.
            timeout = settings.send_timeout + settings.presence_grace + MARGIN
            leave = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout)
            assert leave["user_id"] == "ben"
            await until(lambda: open_sockets(server, "room") == 1, MARGIN, "Ben's slot freed")
            await until(lambda: not ben.on_server(server), MARGIN, "the connection dropped")
            assert limit_hits(server, "send_timeout") >= 1
            await ben.closed_by_server(MARGIN)
            assert await ana.chat("after", "still live") > 0
        finally:
            ben.close()


async def test_room_socket_overflow_gets_1013_and_is_released(backend: Backend) -> None:
    settings = make_settings(backend, send_timeout=5.0, backlog_bytes=64 * 1024, **OPEN_RATES)
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        token = server.token("ben")
        ben = await stalled(server, websocket_request(f"/rooms/{room['id']}/ws?token={token}"))
        try:
            await ana.recv_until(lambda f: f["type"] == "presence.join" and f["user_id"] == "ben")
            # Live: Ben's backlog overflows before any single send waits send_timeout.
            body, sent = "z" * 3900, 0
            async with asyncio.timeout(60):
                while not limit_hits(server, "slow_1013"):
                    assert sent < 5000, "the slow reader was never cut off"
                    await ana.chat(f"c{sent}", body)
                    sent += 1
            # Released at once (its close is queued behind what the transport holds) ...
            timeout = settings.presence_grace + MARGIN
            leave = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout)
            assert leave["user_id"] == "ben"
            await until(lambda: open_sockets(server, "room") == 1, MARGIN, "Ben's slot freed")
            # ... and a reader that comes back finds the documented 1013 after its frames.
            assert await ben.close_frame(settings.send_timeout) == 1013
            await until(lambda: not ben.on_server(server), settings.send_timeout + MARGIN, "gone")
            await ben.closed_by_server(MARGIN)
        finally:
            ben.close()


async def test_token_expiry_ends_a_stalled_catch_up(backend: Backend) -> None:
    # A send timeout far away: only the token's expiry can end the catch-up in time.
    settings = make_settings(backend, send_timeout=60.0, **OPEN_RATES)
    async with run_server(settings) as server:
        room_id, ana = await room_with_history(server)
        token = server.token("ben", ttl=3)
        ben = await stalled(server, websocket_request(f"/rooms/{room_id}/ws?token={token}&since=0"))
        try:
            await ana.recv_until(lambda f: f["type"] == "presence.join" and f["user_id"] == "ben")
            timeout = 3 + settings.presence_grace + MARGIN
            leave = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout)
            assert leave["user_id"] == "ben"
            await until(lambda: open_sockets(server, "room") == 1, MARGIN, "Ben's slot freed")
            assert await ben.close_frame(MARGIN) == 4401  # after what it had been sent
        finally:
            ben.close()


async def test_event_stream_expiry_ends_a_stalled_catch_up(backend: Backend) -> None:
    settings = make_settings(backend, send_timeout=60.0, **OPEN_RATES)
    async with run_server(settings) as server:
        community = await feed_with_history(server)
        token = server.token("cy", ttl=3)
        cy = await stalled(
            server, http_request(f"/feed/stream?token={token}&community={community}&since=0")
        )
        try:
            assert cy.status == 200
            await until(lambda: open_sockets(server, "feed_sse") == 1, MARGIN, "stream open")
            await until(lambda: not cy.on_server(server), 3 + MARGIN, "the stream ended")
            await until(lambda: stream_released(server), MARGIN, "its slot and gauge freed")
            await cy.closed_by_server(MARGIN)
        finally:
            cy.close()


async def test_feed_socket_stalled_in_catch_up_is_aborted_and_released(backend: Backend) -> None:
    settings = make_settings(backend, send_timeout=1.0, **OPEN_RATES)
    async with run_server(settings) as server:
        community = await feed_with_history(server)
        token = server.token("cy")
        cy = await stalled(
            server, websocket_request(f"/feed/ws?token={token}&community={community}&since=0")
        )
        try:
            assert cy.status == 101
            await until(lambda: open_sockets(server, "feed") == 1, MARGIN, "socket open")
            timeout = settings.send_timeout + MARGIN
            await until(lambda: open_sockets(server, "feed") == 0, timeout, "the socket released")
            await until(lambda: not cy.on_server(server), MARGIN, "the connection dropped")
            await until(lambda: slots_held(server) == 0, MARGIN, "its address slot freed")
            assert limit_hits(server, "send_timeout") >= 1
            assert server.state is not None and not server.state.feed.registry.catching_up
            await cy.closed_by_server(MARGIN)
        finally:
            cy.close()


async def test_event_stream_stalled_in_catch_up_is_aborted_and_released(backend: Backend) -> None:
    settings = make_settings(backend, send_timeout=1.0, **OPEN_RATES)
    async with run_server(settings) as server:
        community = await feed_with_history(server)
        token = server.token("cy")
        cy = await stalled(
            server, http_request(f"/feed/stream?token={token}&community={community}&since=0")
        )
        try:
            assert cy.status == 200
            await until(lambda: open_sockets(server, "feed_sse") == 1, MARGIN, "stream open")
            timeout = settings.send_timeout + MARGIN
            await until(lambda: not cy.on_server(server), timeout, "the connection dropped")
            await until(lambda: stream_released(server), MARGIN, "its slot and gauge freed")
            assert limit_hits(server, "send_timeout") >= 1
            assert server.state is not None and not server.state.feed.registry.catching_up
            await cy.closed_by_server(MARGIN)
        finally:
            cy.close()


async def test_live_event_stream_that_overflows_gives_back_its_connection(
    backend: Backend,
) -> None:
    settings = make_settings(backend, send_timeout=1.0, backlog_bytes=64 * 1024, **OPEN_RATES)
    async with run_server(settings) as server:
        community = await feed_with_history(server, size=0)
        token = server.token("cy")
        cy = await stalled(
            server, http_request(f"/feed/stream?token={token}&community={community}")
        )
        try:
            await until(lambda: open_sockets(server, "feed_sse") == 1, MARGIN, "stream open")
            ana = FeedApi(server.url, server.token("ana"))
            thread = await ana.thread(community, "More")
            async with asyncio.timeout(60):
                while not limit_hits(server, "slow_stream"):
                    await fill_feed(server, thread, 9000 * 20)
            # Its slot and its file descriptor go, not only the gauge.
            timeout = settings.send_timeout + MARGIN
            await until(lambda: not cy.on_server(server), timeout, "the connection dropped")
            await until(lambda: stream_released(server), MARGIN, "its slot and gauge freed")
            await cy.closed_by_server(MARGIN)
        finally:
            cy.close()


async def test_notes_socket_stalled_reader_is_aborted_and_released(backend: Backend) -> None:
    # A backlog larger than what is sent: the send deadline, not the bound, ends it.
    settings = make_settings(
        backend,
        send_timeout=1.0,
        backlog_bytes=64 * 1024 * 1024,
        notes_max_doc_bytes=64 * 1024 * 1024,
        notes_bytes_burst=1 << 40,  # Ana writes more than a member's budget allows
        **OPEN_RATES,
    )
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        token = server.token("ben")
        ben = await stalled(
            server, websocket_request(f"/rooms/{room['id']}/notes?token={token}", None)
        )
        try:
            assert ben.status == 101
            await until(lambda: open_sockets(server, "notes") == 1, MARGIN, "socket open")
            ana = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
            await ana.wait_synced()  # edits after the initial sync
            # Kernel buffers on loopback absorb a few MiB (tcp_wmem autotunes up to 4 MiB):
            # Ana writes until Ben's socket is gone, at most 32 MiB, half the backlog bound,
            # so only the send deadline can end it.
            chunk = "n" * 200_000
            async with asyncio.timeout(90):
                for _ in range(32 * 1024 * 1024 // len(chunk)):
                    if not ben.on_server(server):
                        break
                    ana.text += chunk  # each edit goes to Ben's socket too
                    await asyncio.gather(*ana.sending)
            timeout = settings.send_timeout + 3 * MARGIN
            await until(lambda: not ben.on_server(server), timeout, "the connection dropped")
            await until(lambda: open_sockets(server, "notes") == 1, MARGIN, "Ben's slot freed")
            assert limit_hits(server, "send_timeout") >= 1
            await ben.closed_by_server(MARGIN)
        finally:
            ben.close()


async def test_live_events_held_during_a_stalled_catch_up_are_bounded(backend: Backend) -> None:
    # A far send timeout: only the bound on what is held ends this catch-up.
    settings = make_settings(backend, send_timeout=60.0, backlog_bytes=64 * 1024, **OPEN_RATES)
    async with run_server(settings) as server:
        community = await feed_with_history(server)
        token = server.token("cy")
        cy = await stalled(
            server, http_request(f"/feed/stream?token={token}&community={community}&since=0")
        )
        try:
            assert server.state is not None
            registry = server.state.feed.registry
            await until(lambda: bool(registry.catching_up), MARGIN, "catching up")
            ana = FeedApi(server.url, server.token("ana"))
            thread = await ana.thread(community, "Live meanwhile")
            await fill_feed(server, thread, 2 * settings.backlog_bytes)  # held, past the bound
            await until(lambda: not registry.catching_up, MARGIN, "its held events dropped")
            assert limit_hits(server, "slow_stream") == 1
        finally:
            cy.close()
