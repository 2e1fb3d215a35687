"""Presence across two processes when signals cross (the soak's rolling restart): a
``presence.leave`` sent by one process can reach the other after the same user has rejoined
there. The other process's comparison with Redis must then still correct the peer's view.

Two ``RedisPresence`` objects on the real Redis stand for the two processes; each has a
small hub of its own here that does what ``Hub.signal``/``signal_local`` do for presence
(its own ``observe`` hook, then its sockets), and the signals between the processes are
carried by the test, so that one can arrive late, as a publish from a busy process does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from menteo_testkit.waits import wait_until
from realtime.auth import Principal
from realtime.persistence.rooms import RoomRecord
from realtime.presence.redis import RedisPresence, _keys
from realtime.protocol import JSON
from realtime.rooms.connection import RoomConnection
from realtime.sockets.transport import Transport
from realtime.streams.hub import Frames
from tests.backends import REDIS_URL, _check_redis, _unavailable


class Process:
    """One server process: its presence, the views its sockets show, the signals it sent
    to the other process (delivered when the test says)."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.views: dict[str, set[str]] = {}  # socket -> users it shows online
        self.outbox: list[dict[str, Any]] = []
        self.presence = RedisPresence(
            REDIS_URL,
            self._signal,
            lambda: [room],
            grace=10.0,
            ttl=30.0,
            announce_local=self._local,
        )

    def _signal(self, room: str, frame: dict[str, Any], exclude_user: str | None) -> None:
        self.arrive(frame, exclude_user)
        self.outbox.append({"frame": frame, "x": exclude_user})

    def _local(self, room: str, frame: dict[str, Any]) -> None:
        self.arrive(frame, None)

    def arrive(self, frame: dict[str, Any], exclude_user: str | None) -> None:
        self.presence.observe(self.room, frame)
        for socket, shown in self.views.items():
            if socket.split(":")[0] == exclude_user:
                continue
            if frame["type"] == "presence.join":
                shown.add(frame["user_id"])
            elif frame["type"] == "presence.leave":
                shown.discard(frame["user_id"])
            elif frame["type"] == "presence.sync":
                shown.clear()
                shown.update(p["user_id"] for p in frame["presence"])

    def deliver_to(self, other: Process) -> None:
        sent, self.outbox = self.outbox, []
        for wire in sent:
            other.arrive(wire["frame"], wire["x"])

    async def connect(self, user: str, conn: str) -> None:
        """A room socket: join, which reads the welcome's list."""
        listing = await self.presence.join(self.room, user, user.title(), conn)
        self.views[f"{user}:{conn}"] = {p["user_id"] for p in listing}


@pytest.fixture
async def two() -> AsyncIterator[tuple[Process, Process]]:
    try:
        await asyncio.wait_for(_check_redis(), 5)
    except Exception as exc:
        _unavailable("Redis", exc)
    room = f"race-{uuid.uuid4().hex}"
    a, b = Process(room), Process(room)
    yield a, b
    for p in (a, b):
        await p.presence.client.delete(*_keys(room))
        await p.presence.close()


async def test_a_late_leave_from_the_other_process_is_corrected(
    two: tuple[Process, Process],
) -> None:
    """Ben closes on A and rejoins on B; A's leave reaches B only after B announced Ben's
    join (whose script read Ben's welcome list). Ana, on B, was told "Ben left" last: B must
    send her a snapshot with Ben (before, Ben's welcome made B's view agree with Redis
    again, and nothing ever told Ana)."""
    a, b = two
    await a.connect("ben", "c1")
    a.deliver_to(b)
    await b.connect("ana", "c2")
    b.deliver_to(a)
    assert b.views["ana:c2"] == {"ana", "ben"}

    await a.presence.leave(a.room, "ben", "c1", clean=True)  # A: leave, published late
    listing = await b.presence.join(b.room, "ben", "Ben", "c3")  # B: Ben's first socket again
    b.views["ben:c3"] = {p["user_id"] for p in listing}  # Ben's welcome on B
    assert b.views["ben:c3"] == {"ana", "ben"}
    a.deliver_to(b)  # A's late leave reaches B now
    assert b.views["ana:c2"] == {"ana"}

    await b.presence.start()
    await wait_until(
        lambda: b.views["ana:c2"] == {"ana", "ben"},
        "Ana's view corrected by a presence.sync",
        state=lambda: b.views,
    )
    assert b.presence.syncs >= 1


async def test_a_heartbeat_in_flight_does_not_bring_a_closed_socket_back(
    two: tuple[Process, Process],
) -> None:
    """A heartbeat reads the process's sockets, then waits for Redis; a socket that leaves
    meanwhile must stay gone (it would otherwise keep its user present with no socket, and
    the user's next join elsewhere would send no presence.join)."""
    a, _ = two
    await a.connect("ben", "c1")
    beat = asyncio.create_task(a.presence._heartbeat(time.time()))
    await asyncio.sleep(0)  # the heartbeat has read its sockets and is sending
    await a.presence.leave(a.room, "ben", "c1", clean=True)
    await beat
    entries = await a.presence.client.hgetall(_keys(a.room)[1])
    assert entries == {}


async def test_presence_frames_held_before_the_welcome_list_are_not_sent_after_it() -> None:
    """A socket catching up holds the hub's frames until its welcome. The presence frames
    held before the welcome's list was read are in that list: sent after it, a "Ben left"
    would undo Ben's rejoin, which the list shows. Those held after it, and every other
    frame, are sent."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    transport = Transport(send, backlog_bytes=1 << 20)
    room = RoomRecord("r1", "Room", "2026-01-01T00:00:00Z")
    conn = RoomConnection(room, Principal("ana", "Ana"), "mentor", JSON, transport)
    leave = {"type": "presence.leave", "user_id": "ben"}
    typing = {"type": "presence.typing", "user_id": "ben", "active": True}
    conn.on_signal(Frames(leave), "ben")  # excluded for Ben's own sockets only
    conn.on_signal(Frames(typing), "ben")
    conn.presence_read()  # the welcome's list: Ben is back
    join = {"type": "presence.join", "user_id": "cy", "name": "Cy"}
    conn.on_signal(Frames(join), "cy")
    conn.go_live()
    await wait_until(lambda: len(sent) == 2, "the two frames sent", state=lambda: sent)
    frames = [orjson.loads(m.get("text") or m["bytes"]) for m in sent]
    assert [f["type"] for f in frames] == ["presence.typing", "presence.join"]
