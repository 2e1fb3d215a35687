"""Presence and typing, on one process (memory) and across processes (Redis)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server


async def test_welcome_lists_everyone_and_others_see_join_and_leave(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert ana.welcome["presence"] == [{"user_id": "ana", "name": "Ana"}]
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert ben.welcome["presence"] == [
        {"user_id": "ana", "name": "Ana"},
        {"user_id": "ben", "name": "Ben"},
    ]
    assert await ana.recv_until(lambda f: f["type"].startswith("presence.")) == {
        "type": "presence.join",
        "user_id": "ben",
        "name": "Ben",
    }
    # A second tab of Ben's is not a new join; closing one of two tabs is not a leave.
    tab = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    await tab.close()
    await ben.close()
    assert await ana.recv_until(lambda f: f["type"].startswith("presence.")) == {
        "type": "presence.leave",
        "user_id": "ben",
    }


# Long enough for a dropped client to reconnect on a busy machine (2 cores shared by
# several test runs): the test's own silence is 1.5x this.
GRACE = 3.0


async def test_a_drop_within_the_grace_period_does_not_flash(backend: Backend) -> None:
    async with run_server(make_settings(backend, presence_grace=GRACE)) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        await ana.recv_until(lambda f: f["type"] == "presence.join")
        ben.ws.transport.abort()  # no close frame: a network drop
        dropped = time.monotonic()
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        assert {p["user_id"] for p in ben.welcome["presence"]} == {"ana", "ben"}
        # Well past the grace the drop started: no leave (nor a join again) reaches Ana.
        await ana.no_frame(
            lambda f: f["type"].startswith("presence."),
            1.5 * GRACE - (time.monotonic() - dropped),
            "no presence frame at Ana for 1.5x the grace after Ben's drop and return",
        )
        # A drop with no return leaves once the grace period is over, not before.
        ben.ws.transport.abort()
        started = time.monotonic()
        left = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout=GRACE + 10)
        assert left["user_id"] == "ben"
        assert time.monotonic() - started >= GRACE * 0.9


async def test_typing_goes_to_the_others_throttled(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    for _ in range(5):
        await ben.send({"type": "typing", "active": True})
    await ben.send({"type": "typing", "active": False})
    first = await ana.recv_until(lambda f: f["type"] == "presence.typing")
    assert first == {"type": "presence.typing", "user_id": "ben", "active": True}
    started = time.monotonic()
    # The last state still arrives, once the interval has passed, and nothing in between.
    last = await ana.recv_until(lambda f: f["type"] == "presence.typing")
    assert last["active"] is False
    assert time.monotonic() - started > server.settings.typing_interval * 0.5
    assert await ben.chat("m", "done typing") == 1
    await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert not [f for f in ana.skipped if f["type"] == "presence.typing"]
    assert not [f for f in ben.skipped if f["type"] == "presence.typing"]  # not to oneself


async def test_presence_frames_carry_no_seq(
    backend: Backend, server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    await ben.send({"type": "typing", "active": True})
    for frame in (
        await ana.recv_until(lambda f: f["type"] == "presence.join"),
        await ana.recv_until(lambda f: f["type"] == "presence.typing"),
    ):
        assert "seq" not in frame
    await asyncio.gather(ana.close(), ben.close())


async def test_a_part_of_presence_that_will_not_stop_does_not_hold_the_shutdown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A CI shutdown once waited 25 s in presence's close; now each part has a bound, and
    the log says where a part was still waiting."""
    from realtime.presence import redis as presence_redis

    monkeypatch.setattr(presence_redis, "CLOSE_WAIT", 0.2)
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def stubborn_upkeep() -> None:
        while not release.is_set():
            waiting.set()
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallows its cancellation, as a stuck part would

    task = asyncio.create_task(stubborn_upkeep())
    await asyncio.wait_for(waiting.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await presence_redis._bounded(task, "presence upkeep")
    assert loop.time() - started < 3
    assert "presence upkeep still running" in caplog.text
    assert "stubborn_upkeep (" in caplog.text  # where it waited
    release.set()
    await asyncio.wait_for(task, 5)
