"""Who may open a room socket: tokens, membership, rooms, origins, subprotocols."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import msgpack
import pytest
import websockets

from tests.backends import Backend
from tests.client import RoomClient, close_code, create_room
from tests.servers import Running, make_settings, run_server


async def test_no_token_bad_token_expired_token_get_4401(
    server: Running, room: dict[str, Any]
) -> None:
    path = f"/rooms/{room['id']}/ws"
    assert await close_code(server.ws, path) == 4401
    assert await close_code(server.ws, path + "?token=not-a-jwt") == 4401
    forged = jwt.encode({"sub": "ana", "name": "Ana", "exp": time.time() + 60}, "x" * 40, "HS256")
    assert await close_code(server.ws, path + "?token=" + forged) == 4401
    expired = jwt.encode(
        {"sub": "ana", "name": "Ana", "exp": time.time() - 5}, server.settings.secret, "HS256"
    )
    assert await close_code(server.ws, path + "?token=" + expired) == 4401
    no_exp = jwt.encode({"sub": "ana", "name": "Ana"}, server.settings.secret, "HS256")
    assert await close_code(server.ws, path + "?token=" + no_exp) == 4401
    other_alg = jwt.encode(
        {"sub": "ana", "name": "Ana", "exp": time.time() + 60}, server.settings.secret * 2, "HS512"
    )
    assert await close_code(server.ws, path + "?token=" + other_alg) == 4401


async def test_non_member_gets_4403_and_unknown_room_4404(
    server: Running, room: dict[str, Any]
) -> None:
    eve = server.token("eve", "Eve")
    assert await close_code(server.ws, f"/rooms/{room['id']}/ws?token={eve}") == 4403
    assert await close_code(server.ws, f"/rooms/nope/ws?token={eve}") == 4404


async def test_service_token_may_join(server: Running, room: dict[str, Any]) -> None:
    token = server.token("backend", "Backend", role="service")
    client = await RoomClient.connect(server.ws, room["id"], token)
    assert client.welcome["you"]["role"] == "service"
    await client.close()


async def test_foreign_origin_refused_at_handshake(server: Running, room: dict[str, Any]) -> None:
    token = server.token("ana", "Ana")
    with pytest.raises(websockets.InvalidStatus) as info:
        await RoomClient.connect(server.ws, room["id"], token, origin="https://evil.example")
    assert info.value.response.status_code == 403
    assert refused_at_handshake(server) == 1
    same_host = server.url  # a page served by this server may connect
    client = await RoomClient.connect(server.ws, room["id"], token, origin=same_host)
    await client.close()
    no_origin = await RoomClient.connect(server.ws, room["id"], token)  # not a browser
    await no_origin.close()


def refused_at_handshake(server: Running) -> int:
    """``menteo_sockets_refused_total{reason="handshake"}`` so far."""
    assert server.state is not None
    count: int = server.state.metrics.counters[("menteo_sockets_refused_total", "handshake")]
    return count


async def test_allowed_origins_setting(backend: Backend) -> None:
    settings = make_settings(backend, allowed_origins=("https://app.menteo.example",))
    async with run_server(settings) as srv:
        room = await create_room(srv.url, srv.service(), [("ana", "Ana", "mentor")])
        token = srv.token("ana", "Ana")
        ok = await RoomClient.connect(
            srv.ws, room["id"], token, origin="https://app.menteo.example"
        )
        await ok.close()
        with pytest.raises(websockets.InvalidStatus) as info:
            await RoomClient.connect(srv.ws, room["id"], token, origin="https://other.example")
        assert info.value.response.status_code == 403
        assert refused_at_handshake(srv) == 1


async def test_allowed_origins_star_allows_any_origin(backend: Backend) -> None:
    async with run_server(make_settings(backend, allowed_origins=("*",))) as srv:
        room = await create_room(srv.url, srv.service(), [("ana", "Ana", "mentor")])
        token = srv.token("ana", "Ana")
        for origin in ("https://evil.example", "null"):
            client = await RoomClient.connect(srv.ws, room["id"], token, origin=origin)
            assert client.welcome["you"]["user_id"] == "ana"
            await client.close()
        assert refused_at_handshake(srv) == 0


async def test_unknown_subprotocol_refused(server: Running, room: dict[str, Any]) -> None:
    """Only subprotocols we do not speak: HTTP 403 at the handshake, counted. One we speak
    among them is chosen."""
    url = f"{server.ws}/rooms/{room['id']}/ws?token={server.token('ana', 'Ana')}"
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(url, subprotocols=["menteo.v9"])  # type: ignore[list-item]
    assert info.value.response.status_code == 403
    assert refused_at_handshake(server) == 1
    offered = ["menteo.v9", "menteo.v1.msgpack"]
    async with websockets.connect(url, subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "menteo.v1.msgpack"
        assert msgpack.unpackb(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
