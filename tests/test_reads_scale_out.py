"""Read state across processes: a marker stored on one process reaches every socket of the
room and the user's inbox on the others; an inbox on process A hears of what B did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import Backend, make_backend
from tests.client import RoomClient, connect_inbox, create_room
from tests.test_scale_out import SERVICE, servers, token

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres+redis"])
async def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """One database and one Redis for both processes (SQLite's file is shared too)."""
    backend = await make_backend("postgres+redis", tmp_path)  # skips without Redis
    if request.param == "sqlite":
        return Backend(
            "sqlite+redis", f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}", backend.redis_url
        )
    return backend


def about(room_id: str) -> Any:
    return lambda f: f["type"] == "inbox.room" and f["room"]["id"] == room_id


async def test_an_inbox_on_a_hears_of_messages_and_reads_on_b(shared: Backend) -> None:
    async with servers(shared, 2) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        inbox = await connect_inbox(a.ws, token("ana"))
        assert [r["id"] for r in inbox.welcome["rooms"]] == [room["id"]]
        tab_a = await RoomClient.connect(a.ws, room["id"], token("ana"))
        tab_b = await RoomClient.connect(b.ws, room["id"], token("ana"))
        ben = await RoomClient.connect(b.ws, room["id"], token("ben"))

        first = await ben.chat("b1", "sent on B")
        second = await ben.chat("b2", "sent on B again")
        update = await inbox.recv_until(
            lambda f: about(room["id"])(f) and f["room"]["last_seq"] == second
        )
        assert update["room"]["unread"] == 2 and update["room"]["last_message"]["id"] == "b2"

        await tab_b.send({"type": "read", "seq": first})  # stored by B
        marker = {"type": "read.marker", "user_id": "ana", "seq": first}
        for client in (tab_a, tab_b, ben):  # every socket of the room, on every process
            assert await client.recv_until(lambda f: f["type"] == "read.marker") == marker
        read = await inbox.recv_until(
            lambda f: about(room["id"])(f) and f["room"]["read_seq"] == first
        )
        assert read["room"]["unread"] == 1

        # A room created through B is added to the inbox on A.
        async with httpx.AsyncClient() as http:
            resp = await http.post(
                b.url + "/api/rooms",
                headers=SERVICE,
                json={
                    "title": "New",
                    "members": [{"user_id": "ana", "name": "Ana", "role": "mentee"}],
                },
            )
        assert resp.status_code == 201
        added = await inbox.recv_until(about(resp.json()["id"]))
        assert added["room"]["title"] == "New" and added["room"]["unread"] == 0

        # A fresh welcome on A is what B's database says.
        again = await connect_inbox(a.ws, token("ana"))
        async with httpx.AsyncClient() as http:
            listed = (
                await http.get(
                    b.url + "/api/rooms", headers={"authorization": "Bearer " + token("ana")}
                )
            ).json()["rooms"]
        assert again.welcome["rooms"] == listed
        back = await RoomClient.connect(a.ws, room["id"], token("ana"))
        assert back.welcome["read"] == {"ana": first, "ben": 0} and back.welcome["unread"] == 1
