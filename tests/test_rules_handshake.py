"""The WebSocket handshake's documented refusals (docs/protocol.md, docs/security.md): an
over-long request line (414), a client that offers only subprotocols we do not speak (403),
and `MENTEO_ALLOWED_ORIGINS=*`. Real servers on both backends, real sockets."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import orjson
import pytest
import websockets

from realtime.config import Settings
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.feed_client import FeedApi, close_all, feed_query
from tests.notes_client import NotesClient
from tests.servers import SECRET, Running, run_server
from tests.stalled_client import websocket_request

MAX_LINE = 8192  # the handshake parser's limit on a line, CRLF included
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
async def close_followers() -> Any:
    yield
    await close_all()


async def refused_handshakes(server: Running) -> int:
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(r'^menteo_sockets_refused_total\{reason="handshake"\} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


async def community_of(server: Running) -> str:
    return await FeedApi(server.url, server.token("backend", role="service")).community()


async def status_line(server: Running, request: bytes) -> tuple[bytes, bool]:
    """Send a raw handshake; the response's status line, and whether the server then
    closed the connection (read to its end within the timeout)."""
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(TIMEOUT):
            status = await reader.readline()
        if not status.startswith(b"HTTP/1.1 101"):
            async with asyncio.timeout(TIMEOUT):
                await reader.read()  # to EOF: the server closed it
            return status, True
        return status, False
    finally:
        writer.close()


def padded(path: str, line_length: int) -> str:
    """``path`` with a query padding that makes ``GET <path> HTTP/1.1\\r\\n`` exactly
    ``line_length`` bytes."""
    base = f"GET {path}&pad= HTTP/1.1\r\n"
    return f"{path}&pad={'p' * (line_length - len(base))}"


async def test_an_over_long_request_line_is_answered_414_on_every_socket(
    server: Running, room: dict[str, Any]
) -> None:
    """The request line may be 8 KiB (CRLF included): one byte more is answered HTTP 414
    and the connection closed (not left hanging), on the room, notes and feed sockets."""
    community = await community_of(server)
    paths = {
        "room": f"/rooms/{room['id']}/ws?token={server.token('ana')}",
        "notes": f"/rooms/{room['id']}/notes?token={server.token('ana')}",
        "feed": f"/feed/ws?{feed_query(server.token('ana'), community)}",
    }
    for kind, path in paths.items():
        longest = padded(path, MAX_LINE)
        assert len(f"GET {longest} HTTP/1.1\r\n") == MAX_LINE
        status, _ = await status_line(server, websocket_request(longest))
        assert status.startswith(b"HTTP/1.1 101"), (kind, status)
        status, closed = await status_line(server, websocket_request(padded(path, MAX_LINE + 1)))
        assert status.startswith(b"HTTP/1.1 414"), (kind, status)
        assert closed, kind


async def test_a_client_offering_only_unknown_subprotocols_gets_403(
    server: Running, room: dict[str, Any]
) -> None:
    """Only subprotocols we do not speak: HTTP 403 at the handshake, counted as a
    `handshake` refusal; one we speak among them is chosen (room and feed sockets)."""
    community = await community_of(server)
    token = server.token("ana")
    urls = {
        "room": f"{server.ws}/rooms/{room['id']}/ws?token={token}",
        "feed": f"{server.ws}/feed/ws?{feed_query(token, community)}",
    }
    before = await refused_handshakes(server)
    for kind, url in urls.items():
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, subprotocols=["menteo.v9", "graphql-ws"])  # type: ignore[list-item]
        assert refused.value.response.status_code == 403, kind
        async with websockets.connect(
            url,
            subprotocols=["menteo.v9", "menteo.v1.msgpack"],  # type: ignore[list-item]
        ) as ws:
            assert ws.subprotocol == "menteo.v1.msgpack", kind
            welcome = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert isinstance(welcome, bytes), kind  # msgpack frames are binary
    assert await refused_handshakes(server) == before + 2


async def test_allowed_origins_star_allows_any_origin_on_every_socket(backend: Backend) -> None:
    """`MENTEO_ALLOWED_ORIGINS=*`: a browser on any origin opens room, notes and feed
    sockets (the token still decides who gets in)."""
    settings = Settings.from_env(
        {"MENTEO_ALLOWED_ORIGINS": "*"},
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        secret=SECRET,
    )
    assert settings.allowed_origins == ("*",)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        community = await community_of(server)
        token = server.token("ana")
        for origin in ("https://anywhere.example", "null", "http://127.0.0.1.evil.example"):
            ana = await RoomClient.connect(server.ws, room["id"], token, origin=origin)
            assert ana.welcome["you"]["user_id"] == "ana", origin
            await ana.close()
            notes = await NotesClient.connect(
                server.ws,
                room["id"],
                token,
                origin=origin,  # type: ignore[arg-type]
            )
            await notes.wait_synced(TIMEOUT)
            await notes.close()
            follower = await websockets.connect(
                f"{server.ws}/feed/ws?{feed_query(token, community)}",
                origin=origin,  # type: ignore[arg-type]
                open_timeout=TIMEOUT,
            )
            async with follower:
                welcome = orjson.loads(await asyncio.wait_for(follower.recv(), TIMEOUT))
                assert welcome["type"] == "welcome", origin
        # The token still decides: a stranger from any origin is closed 4403.
        eve = await RoomClient.connect(
            server.ws,
            room["id"],
            server.token("eve"),
            origin="https://x.example",
            expect_welcome=False,
        )
        assert await eve.closed_with() == 4403
