"""Two members chat live in a room: ordered, acked after commit, idempotent."""

from __future__ import annotations

from typing import Any

from tests.client import RoomClient
from tests.servers import Running


async def test_members_exchange_messages_live(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert ana.welcome["you"] == {"user_id": "ana", "name": "Ana", "role": "mentor"}
    assert ana.welcome["seq"] == 0 and ana.welcome["history"] == []
    assert ana.welcome["room"]["id"] == room["id"]

    seq = await ana.chat("m1", "hello Ben")
    assert seq == 1
    got = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert got["seq"] == 1 and got["id"] == "m1" and got["body"] == "hello Ben"
    assert got["author"] == {"user_id": "ana", "name": "Ana"}
    assert got["ts"].endswith("Z")
    mine = await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert mine == got

    assert await ben.chat("m1", "hi Ana") == 2  # client ids are per author
    await ana.close()
    await ben.close()
