"""The welcome's history comes from the hub's kept frames, and equals the database's page."""

from __future__ import annotations

import asyncio
from typing import Any

from menteo_testkit.waits import wait_until
from realtime.persistence.events import page_before
from realtime.streams.history import history_from as _history_from
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

UNLIMITED = {
    "rate_per_second": 10_000.0,
    "rate_burst": 10_000,
    "user_rate_per_second": 10_000.0,
    "user_rate_burst": 10_000,
}


async def _db_history(server: Running, room_id: str, last: int) -> list[dict[str, Any]]:
    assert server.state is not None
    async with server.state.db.read() as conn:
        events, _ = await page_before(conn, room_id, ("chat.message",), last + 1, 50)
    return [e.frame() for e in events]


async def test_welcome_history_matches_the_database(backend: Backend) -> None:
    async with run_server(make_settings(backend, **UNLIMITED)) as server:
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        room = await create_room(server.url, server.service(), members)
        await _joins_during_writes(server, room)


async def _joins_during_writes(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert ana.welcome["history"] == []
    for i in range(60):
        await ana.send({"type": "chat.send", "id": f"m{i}", "body": f"message {i}"})
    await ana.recv_until(lambda f: f["type"] == "ack" and f["id"] == "m59")
    # Concurrent joins while messages are still being written: each welcome's history is
    # exactly the database's newest 50 up to the seq it announces.
    writes = [ana.send({"type": "chat.send", "id": f"n{i}", "body": "more"}) for i in range(10)]
    joins = [
        RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben")) for _ in range(4)
    ]
    bens = await asyncio.gather(*joins, *writes)
    for ben in bens[:4]:
        assert isinstance(ben, RoomClient)
        welcome = ben.welcome
        assert len(welcome["history"]) == 50
        assert welcome["history"] == await _db_history(server, room["id"], welcome["seq"])
        seqs = [f["seq"] for f in welcome["history"]]
        assert seqs == sorted(seqs) and seqs[-1] <= welcome["seq"]
        # Everything after the welcome's seq arrives live, once and in order.
        nxt = welcome["seq"] + 1
        while nxt <= 70:
            frame = await ben.recv_until(lambda f: f["type"] == "chat.message")
            assert frame["seq"] == nxt
            nxt += 1
    msgpack_ben = await RoomClient.connect(
        server.ws, room["id"], server.token("ben", "Ben"), msgpack_codec=True
    )
    assert msgpack_ben.welcome["history"] == await _db_history(server, room["id"], 70)
    assert server.state is not None
    hub = server.state.hub
    kept = hub.recent(room["id"], ("chat.message",))
    assert kept is not None and kept[0] == 70 and len(kept[1]) == 50
    # Everyone leaves: the kept frames go with the stream; the next join reads them again.
    for client in [ana, msgpack_ben, *bens[:4]]:
        assert isinstance(client, RoomClient)
        await client.ws.close()
    # The hub's stream table has no event of its own: looked at until the closes are seen.
    await wait_until(
        lambda: room["id"] not in hub.streams,
        "the hub to drop the stream once its last socket closed",
        state=lambda: sorted(hub.streams),
    )
    cy = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert cy.welcome["history"] == await _db_history(server, room["id"], 70)
    kept = hub.recent(room["id"], ("chat.message",))
    assert kept is not None and len(kept[1]) == 50 and not kept[2]  # older ones exist
    await cy.close()


def test_history_from_kept_frames() -> None:
    items = tuple((seq, f"f{seq}") for seq in range(5, 11))
    assert _history_from(None, 10, 3) is None
    assert _history_from((9, items, True), 10, 3) is None  # the hub is behind
    assert _history_from((10, items, False), 10, 3) == ["f8", "f9", "f10"]
    assert _history_from((10, items, False), 8, 3) == ["f6", "f7", "f8"]
    assert _history_from((10, items, False), 10, 50) is None  # older ones were evicted
    assert _history_from((10, items, True), 10, 50) == [f"f{s}" for s in range(5, 11)]
    assert _history_from((12, items, True), 7, 50) == ["f5", "f6", "f7"]
