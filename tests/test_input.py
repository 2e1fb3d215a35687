"""Bad input gets an error frame and the socket stays open; retries never duplicate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.servers import Running


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_frame"),
        ("[1, 2]", "bad_frame"),
        ('{"type": 5}', "bad_frame"),
        ('{"type": "chat.shout", "id": "x"}', "unknown_type"),
        ('{"type": "chat.send", "body": "no id"}', "invalid"),
        ('{"type": "chat.send", "id": "' + "x" * 65 + '", "body": "long id"}', "invalid"),
        ('{"type": "chat.send", "id": "e1", "body": ""}', "invalid"),
        ('{"type": "chat.send", "id": "e2", "body": "   "}', "invalid"),
        ('{"type": "chat.send", "id": "e3", "body": "' + "b" * 4001 + '"}', "invalid"),
        ('{"type": "chat.send", "id": "e4", "body": 42}', "invalid"),
        ('{"type": "typing", "active": "yes"}', "invalid"),
    ],
)
async def test_bad_frames_get_errors_and_keep_the_socket(
    server: Running, room: dict[str, Any], raw: str, code: str
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await ana.ws.send(raw)
    error = await ana.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == code and error["message"]
    assert await ana.chat("ok", "still here") == 1  # nothing malformed was stored
    await ana.close()


async def test_body_of_exactly_4000_chars_is_accepted(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await ana.chat("big", "é" * 4000) == 1
    await ana.close()


async def test_an_id_of_exactly_64_characters_is_accepted(
    server: Running, room: dict[str, Any]
) -> None:
    """The other side of the 65-character id refused above."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await ana.chat("i" * 64, "a long id") == 1
    await ana.close()


async def test_resent_id_gets_same_ack_and_no_second_message(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await ana.chat("same", "once") == 1
    assert await ana.chat("same", "once") == 1
    # Resent in one burst, before the first is stored: still one message.
    for _ in range(3):
        await ana.send({"type": "chat.send", "id": "burst", "body": "x"})
    acks = [
        await ana.recv_until(lambda f: f["type"] == "ack" and f["id"] == "burst") for _ in range(3)
    ]
    assert {a["seq"] for a in acks} == {2}
    assert await ana.chat("next", "after") == 3
    async with httpx.AsyncClient() as http:
        page = (
            await http.get(
                f"{server.url}/api/rooms/{room['id']}/messages", headers=server.service()
            )
        ).json()
    assert [m["id"] for m in page["messages"]] == ["same", "burst", "next"]
    await ana.close()


async def test_msgpack_subprotocol_carries_the_same_frames(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(
        server.ws, room["id"], server.token("ana", "Ana"), msgpack_codec=True
    )
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert ana.ws.subprotocol == "menteo.v1.msgpack"
    assert ana.welcome["you"]["user_id"] == "ana"
    assert await ana.chat("p1", "packed") == 1
    as_json = await ben.recv_until(lambda f: f["type"] == "chat.message")
    as_msgpack = await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert as_json == as_msgpack
    await ana.ws.send("text frame on a binary protocol")
    assert (await ana.recv_until(lambda f: f["type"] == "error"))["code"] == "bad_frame"
    await ana.close()
    await ben.close()


async def test_ping_gets_pong(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await ana.send({"type": "ping", "id": "p"})
    assert await ana.recv_until(lambda f: f["type"] == "pong") == {"type": "pong", "id": "p"}
    await ana.close()
