"""Resume after a reconnect: exactly what was missed, in order; otherwise history."""

from __future__ import annotations

from typing import Any

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server


async def test_since_gets_exactly_what_was_missed(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    await ana.chat("a1", "one")
    await ben.recv_until(lambda f: f.get("seq") == 1)
    await ben.close()
    for i in range(2, 6):
        await ana.chat(f"a{i}", f"msg {i}")
    ben = await RoomClient.connect(
        server.ws, room["id"], server.token("ben", "Ben"), since=1, epoch=ana.welcome["epoch"]
    )
    assert ben.welcome["recovered"] is True
    assert ben.welcome["seq"] == 5
    assert ben.welcome["history"] == []
    seqs = [(await ben.recv_until(lambda f: f["type"] == "chat.message"))["seq"] for _ in range(4)]
    assert seqs == [2, 3, 4, 5]
    await ana.chat("a6", "live again")
    live = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert live["seq"] == 6 and live["body"] == "live again"
    await ana.close()
    await ben.close()


async def test_since_ahead_or_other_epoch_gets_history(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for i in range(3):
        await ana.chat(f"h{i}", f"history {i}")
    ahead = await RoomClient.connect(server.ws, room["id"], server.token("ben"), since=99)
    assert ahead.welcome["recovered"] is False
    assert [m["seq"] for m in ahead.welcome["history"]] == [1, 2, 3]
    other = await RoomClient.connect(
        server.ws, room["id"], server.token("ben"), since=1, epoch="another-db"
    )
    assert other.welcome["recovered"] is False
    assert len(other.welcome["history"]) == 3
    current = await RoomClient.connect(server.ws, room["id"], server.token("ben"), since=3)
    assert current.welcome["recovered"] is True and current.welcome["seq"] == 3
    for c in (ana, ahead, other, current):
        await c.close()


async def test_welcome_history_is_last_50_messages(backend: Backend) -> None:
    async with run_server(make_settings(backend, rate_burst=100, user_rate_burst=100)) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        await _history_is_last_50(server, room)


async def _history_is_last_50(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for i in range(55):
        await ana.send({"type": "chat.send", "id": f"n{i}", "body": f"n{i}"})
    await ana.recv_until(lambda f: f.get("type") == "ack" and f["id"] == "n54")
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    history = ben.welcome["history"]
    assert [m["seq"] for m in history] == list(range(6, 56))
    assert ben.welcome["seq"] == 55
    await ana.close()
    await ben.close()
