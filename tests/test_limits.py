"""Oversized, flooding and slow clients are cut off; the rest of the room keeps chatting.

Each limit on both sides: the largest frame, the last token of a bucket and the last strike
allowed pass; one byte, one frame, one strike more is refused."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

SLOW = 0.001  # tokens per second: a bucket that does not refill during a test


def chat_frame(size: int, char: str = "x") -> str:
    """A chat.send frame of exactly ``size`` UTF-8 bytes, its body made of ``char``."""
    empty = '{"type":"chat.send","id":"big","body":""}'
    width = len(char.encode())
    fill, rest = divmod(size - len(empty), width)
    frame = empty[:-2] + char * fill + "y" * rest + '"}'
    assert len(frame.encode()) == size
    return frame


async def test_oversized_frame_closes_1009(server: Running, room: dict[str, Any]) -> None:
    """``MENTEO_MAX_FRAME_BYTES`` (64 KiB) counts bytes: a frame of exactly that many is
    read (and refused as a chat body over 4000 characters), one byte more closes 1009,
    whether its characters take one byte each or two."""
    cap = server.settings.max_frame_bytes
    assert cap == 64 * 1024  # the documented default
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for char in ("x", "é"):
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ben.ws.send(chat_frame(cap, char))
        error = await ben.recv_until(lambda f: f["type"] == "error")
        assert (error["id"], error["code"]) == ("big", "invalid"), char
        await ben.ws.send(chat_frame(cap + 1, char))
        assert await ben.closed_with() == 1009, char
    assert await ana.chat("after", "room still works") == 1
    await ana.close()


async def test_flood_gets_rate_limited_then_1008(backend: Backend) -> None:
    """The whole burst is answered and the next frame refused; refusals up to the strikes
    leave the socket open, the next one closes it 1008. The bucket does not refill here,
    so the counts do not depend on the machine's speed."""
    settings = make_settings(backend, rate_per_second=SLOW, rate_burst=50, rate_strikes=20)
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        burst, strikes = settings.rate_burst, settings.rate_strikes
        for i in range(burst + strikes):
            await ben.send({"type": "ping", "id": f"p{i}"})
        answers = [
            await ben.recv_until(lambda f: f["type"] in ("pong", "error"))
            for _ in range(burst + strikes)
        ]
        assert [a["type"] for a in answers] == ["pong"] * burst + ["error"] * strikes
        assert {a["code"] for a in answers[burst:]} == {"rate_limited"}
        assert await ana.chat("open", "ben is still here") == 1  # his socket is open...
        await ben.recv_until(lambda f: f["type"] == "chat.message" and f["id"] == "open")
        await ben.send({"type": "ping", "id": "one-more"})  # ...until one strike more
        assert await ben.closed_with() == 1008
        assert await ana.chat("calm", "I am fine") == 2
        await ana.close()


async def test_slow_reader_is_closed_1013_and_others_keep_up(backend: Backend) -> None:
    settings = make_settings(
        backend,
        backlog_bytes=32 * 1024,
        rate_per_second=10_000.0,
        rate_burst=10_000,
        user_rate_per_second=10_000.0,
        user_rate_burst=10_000,
    )
    async with run_server(settings) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee"), ("cy", "Cy", "mentee")]
        room = await create_room(server.url, server.service(), members)
        # Ben's client stops reading: its buffers fill, then the server's backlog does.
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"), max_queue=1)
        ben.ws.transport.pause_reading()  # type: ignore[attr-defined]
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        cy = await RoomClient.connect(server.ws, room["id"], server.token("cy"))
        body = "z" * 3900
        sent = 0
        async with asyncio.timeout(60):
            while not _closed_slow(server):
                batch = [
                    ana.send({"type": "chat.send", "id": f"s{sent + i}", "body": body})
                    for i in range(50)
                ]
                await asyncio.gather(*batch)
                sent += 50
                await ana.recv_until(
                    lambda f, last=sent - 1: f["type"] == "ack" and f["id"] == f"s{last}"
                )
                await cy.recv_until(
                    lambda f, last=sent: f["type"] == "chat.message" and f["seq"] == last
                )
                assert sent < 5000, "the slow reader was never cut off"
        ben.ws.transport.resume_reading()  # type: ignore[attr-defined]
        assert await ben.closed_with(timeout=30) == 1013
        assert await ana.chat("after", "still live") == sent + 1
        await cy.recv_until(lambda f: f["type"] == "chat.message" and f["id"] == "after")
        await ana.close()
        await cy.close()


def _closed_slow(server: Running) -> bool:
    """True once the server has closed some socket for being too slow (it leaves the hub at
    once, so the counter tells)."""
    assert server.state is not None
    return server.state.metrics.counters[("menteo_limit_hits_total", "slow_1013")] > 0


async def test_a_users_sockets_share_one_budget(backend: Backend) -> None:
    """Three tabs, each far below its own limit, share the user's burst of 10: the tenth
    frame passes, the eleventh and twelfth are refused (the bucket does not refill here)."""
    settings = make_settings(backend, user_rate_per_second=SLOW, user_rate_burst=10)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        tabs = [
            await RoomClient.connect(server.ws, room["id"], server.token("ana")) for _ in range(3)
        ]
        for i in range(12):  # 4 per tab: each tab is far below its own limit
            await tabs[i % 3].send({"type": "ping", "id": f"p{i}"})
        answers = []
        for tab in tabs:
            for _ in range(4):
                answers.append(await tab.recv_until(lambda f: f["type"] in ("pong", "error")))
        limited = [a for a in answers if a["type"] == "error"]
        assert len(limited) == 2 and all(a["code"] == "rate_limited" for a in limited)
        assert len([a for a in answers if a["type"] == "pong"]) == 10
