"""A token offered as a subprotocol (``menteo.token.<token>``, docs/protocol.md,
"Authentication"): how the browser keeps its token out of URLs, and so out of a proxy's
logs. Every socket kind takes it, the server never selects (echoes) it, it wins over
``?token=``, which keeps working for older clients. Real servers on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import websockets
from pycrdt import Doc, create_sync_message

from tests.client import TIMEOUT, RoomClient
from tests.feed_client import FeedApi
from tests.servers import Running

JSON = "menteo.v1.json"
NOTES = "menteo.notes.v1"


def carried(token: str) -> str:
    return "menteo.token." + token


async def open_socket(url: str, protocols: list[str]) -> Any:
    return await websockets.connect(
        url,
        subprotocols=protocols,  # type: ignore[arg-type]
        open_timeout=TIMEOUT,
        compression=None,
    )


async def first_frame(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return frame


async def close_code(ws: Any) -> int:
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None, "closed without a close frame"
        return exc.rcvd.code


async def test_the_room_socket_takes_its_token_from_a_subprotocol_and_never_selects_it(
    server: Running, room: dict[str, Any]
) -> None:
    url = f"{server.ws}/rooms/{room['id']}/ws"
    ws = await open_socket(url, [JSON, carried(server.token("ana"))])
    try:
        assert ws.subprotocol == JSON  # never the token
        welcome = await first_frame(ws)
        assert welcome["type"] == "welcome" and welcome["you"]["user_id"] == "ana"
        # The socket works as any other: a message is stored and acked.
        await ws.send(orjson.dumps({"type": "chat.send", "id": "c1", "body": "hi"}).decode())
        while (frame := await first_frame(ws))["type"] != "ack":
            pass
        assert frame["id"] == "c1" and frame["seq"] == 1
    finally:
        await ws.close()

    # Offered alone (no codec named): JSON, and no subprotocol selected (a browser must
    # offer menteo.v1.json beside it, or it fails the handshake itself).
    ws = await open_socket(url, [carried(server.token("ben"))])
    try:
        assert ws.subprotocol is None
        assert (await first_frame(ws))["you"]["user_id"] == "ben"
    finally:
        await ws.close()


async def test_the_subprotocol_token_wins_over_the_url_and_the_url_still_works(
    server: Running, room: dict[str, Any]
) -> None:
    base = f"{server.ws}/rooms/{room['id']}/ws"
    ws = await open_socket(f"{base}?token=not-a-token", [JSON, carried(server.token("ben"))])
    try:
        assert (await first_frame(ws))["you"]["user_id"] == "ben"
    finally:
        await ws.close()
    # An older client: ?token= alone, as before.
    old = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    assert old.welcome["you"]["user_id"] == "ana"


async def test_a_bad_or_doubled_subprotocol_token_closes_4401(
    server: Running, room: dict[str, Any]
) -> None:
    base = f"{server.ws}/rooms/{room['id']}/ws"
    good = server.token("ana")
    cases = {
        "bad": [JSON, carried("x.y.z")],
        "empty": [JSON, "menteo.token."],
        # two tokens: refused, even when both are valid and the URL has one too
        "doubled": [JSON, carried(good), carried(server.token("ben"))],
    }
    for name, protocols in cases.items():
        ws = await open_socket(f"{base}?token={good}", protocols)
        try:
            assert ws.subprotocol == JSON, name
            assert await close_code(ws) == 4401, name
        finally:
            await ws.close()


async def test_the_notes_socket_selects_its_own_subprotocol_beside_a_token(
    server: Running, room: dict[str, Any]
) -> None:
    url = f"{server.ws}/rooms/{room['id']}/notes"
    ws = await open_socket(url, [NOTES, carried(server.token("ana"))])
    try:
        assert ws.subprotocol == NOTES
        await ws.send(create_sync_message(Doc()))
        reply = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(reply, bytes) and reply[0] == 0  # a y-websocket sync message
    finally:
        await ws.close()
    ws = await open_socket(url, [NOTES, carried(server.token("cy"))])  # not a member
    try:
        assert await close_code(ws) == 4403
    finally:
        await ws.close()


async def test_the_feed_socket_takes_its_token_from_a_subprotocol(server: Running) -> None:
    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    url = f"{server.ws}/feed/ws?community={community}"
    ws = await open_socket(url, [JSON, carried(server.token("cy"))])
    try:
        assert ws.subprotocol == JSON
        welcome = await first_frame(ws)
        assert welcome["type"] == "welcome" and welcome["you"]["user_id"] == "cy"
    finally:
        await ws.close()
    ws = await open_socket(url, [JSON, carried("x.y.z")])
    try:
        assert await close_code(ws) == 4401
    finally:
        await ws.close()
