"""The `/metrics` counters of a reader cut off for being too slow (docs/security.md, "Per
connection"): `menteo_limit_hits_total{limit="slow_1013"}` for a room or feed socket closed
1013, `{limit="slow_stream"}` for an event stream ended. Read as Prometheus text over
HTTP, as a scraper does, on both backends; the reader is a real TCP client that stops
reading (tests/stalled_client.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi
from tests.servers import Running, make_settings, run_server
from tests.stalled_client import Stalled, http_request, stalled, websocket_request

BACKLOG = 64 * 1024
OPEN: dict[str, Any] = {
    "backlog_bytes": BACKLOG,
    "send_timeout": 30.0,  # the bound on the backlog, not the send deadline, cuts them off
    "rate_per_second": 10_000.0,
    "rate_burst": 10_000,
    "user_rate_per_second": 10_000.0,
    "user_rate_burst": 10_000,
    "feed_post_rate_per_second": 0.0,  # 0: no limit on posts
}
# Past what loopback's socket buffers hold (the server's send buffer grows to ~4 MiB).
MOST = 16 * 1024 * 1024


async def limit_hits(server: Running) -> dict[str, int]:
    """``menteo_limit_hits_total`` by label, from the text ``/metrics`` serves."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get("/metrics")
    assert resp.status_code == 200
    found = re.findall(r'^menteo_limit_hits_total\{limit="([a-z_0-9]+)"\} (\d+)$', resp.text, re.M)
    return {label: int(value) for label, value in found}


async def write_until(
    write: Callable[[], Awaitable[int]], server: Running, done: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    """Write (each call returns the bytes it sent) and scrape ``/metrics`` after every
    ~256 KiB, until ``done`` holds of the counters; fail past ``MOST`` bytes."""
    sent = scraped = 0
    async with asyncio.timeout(120):
        while True:
            sent += await write()
            if sent - scraped >= 256 * 1024:
                scraped = sent
                hits = await limit_hits(server)
                if done(hits):
                    return hits
                assert sent < MOST, f"never cut off after {sent} bytes: {hits}"


async def test_a_room_socket_closed_for_being_slow_counts_slow_1013(backend: Backend) -> None:
    async with run_server(make_settings(backend, **OPEN)) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        path = f"/rooms/{room['id']}/ws?token={server.token('ben')}"
        ben = await stalled(server, websocket_request(path))
        try:
            assert ben.status == 101
            assert (await limit_hits(server)).get("slow_1013", 0) == 0
            await ana.recv_until(lambda f: f["type"] == "presence.join" and f["user_id"] == "ben")
            count = 0

            async def chat() -> int:
                nonlocal count
                count += 1
                await ana.chat(f"c{count}", "z" * 3900)
                return 3900

            hits = await write_until(chat, server, lambda h: h.get("slow_1013", 0) > 0)
            assert hits["slow_1013"] == 1
            assert hits.get("slow_stream", 0) == 0
            # The count is the close Ben finds once he reads again.
            assert await ben.close_frame(30) == 1013
        finally:
            ben.close()


async def test_feed_readers_cut_off_count_slow_1013_and_slow_stream(backend: Backend) -> None:
    """A feed socket that cannot keep up closes 1013 (`slow_1013`); an event stream that
    cannot keep up is ended (`slow_stream`)."""
    async with run_server(make_settings(backend, **OPEN)) as server:
        community = await FeedApi(server.url, server.token("backend", role="service")).community()
        ana = FeedApi(server.url, server.token("ana"))
        thread = await ana.thread(community)
        query = f"token={server.token('cy')}&community={community}"
        readers: list[Stalled] = []
        try:
            socket = await stalled(server, websocket_request(f"/feed/ws?{query}"))
            readers.append(socket)
            stream = await stalled(server, http_request(f"/feed/stream?{query}"))
            readers.append(stream)
            assert (socket.status, stream.status) == (101, 200)
            headers = {"authorization": "Bearer " + server.token("ana")}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:

                async def posts() -> int:
                    answers = await asyncio.gather(
                        *[
                            http.post(f"/api/threads/{thread}/posts", json={"body": "p" * 9000})
                            for _ in range(10)
                        ]
                    )
                    assert all(a.status_code == 201 for a in answers), answers[0].text
                    return 10 * 9000

                hits = await write_until(
                    posts,
                    server,
                    lambda h: h.get("slow_1013", 0) > 0 and h.get("slow_stream", 0) > 0,
                )
            assert (hits["slow_1013"], hits["slow_stream"]) == (1, 1)
            assert await socket.close_frame(30) == 1013
        finally:
            for reader in readers:
                reader.close()
