"""Long sessions: a socket is warned before its token expires, may refresh it, and is
closed with 4401 at expiry otherwise."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import websockets

from realtime.auth import issue_token, verify_token
from realtime.config import Settings
from tests.backends import Backend
from tests.client import RoomClient, connect_inbox, create_room
from tests.servers import Running, make_settings, run_server


async def test_unrefreshed_socket_is_warned_then_closed_4401(
    server: Running, room: dict[str, Any]
) -> None:
    short = issue_token(server.settings.secret, "ana", "Ana", ttl=2)
    ana = await RoomClient.connect(server.ws, room["id"], short)
    warning = await ana.recv_until(lambda f: f["type"] == "auth.expiring")
    assert warning["expires_at"].endswith("Z")
    assert await ana.closed_with() == 4401


async def test_refresh_keeps_the_socket_open(server: Running, room: dict[str, Any]) -> None:
    short = issue_token(server.settings.secret, "ana", "Ana", ttl=2)
    ana = await RoomClient.connect(server.ws, room["id"], short)
    warning = await ana.recv_until(lambda f: f["type"] == "auth.expiring")
    other = issue_token(server.settings.secret, "ben", "Ben", ttl=3600)
    await ana.send({"type": "auth.refresh", "id": "r0", "token": other})
    assert (await ana.recv_until(lambda f: f["type"] == "error"))["code"] == "forbidden"
    await ana.send({"type": "auth.refresh", "id": "r1", "token": "garbage"})
    assert (await ana.recv_until(lambda f: f["type"] == "error"))["code"] == "invalid"
    fresh = issue_token(server.settings.secret, "ana", "Ana", ttl=3600)
    await ana.send({"type": "auth.refresh", "id": "r2", "token": fresh})
    refreshed = await ana.recv_until(lambda f: f["type"] == "auth.refreshed")
    assert refreshed["id"] == "r2"
    # Past the first token's expiry no close comes, and the socket still works. The server
    # runs in this event loop: a timer left armed for that expiry would fire before this
    # wait, which ends just after the instant the warning announced (not a guessed delay).
    left = datetime.fromisoformat(warning["expires_at"]).timestamp() - time.time()
    await ana.no_frame(lambda f: True, left + 0.5, "nothing, no close, past the old expiry")
    await ana.send({"type": "ping", "id": "after"})
    await ana.recv_until(lambda f: f["type"] == "pong", timeout=5)
    assert await ana.chat("still", "open after the old token expired") == 1


async def test_the_warning_comes_as_early_as_auth_expiring_before_says(backend: Backend) -> None:
    """MENTEO_AUTH_EXPIRING_BEFORE=119 with a two-minute token: warned after about one second
    (by default, 60 s before expiry, it would come a minute later), on the room, feed and
    inbox sockets alike."""
    async with run_server(make_settings(backend, auth_expiring_before=119)) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        token = issue_token(server.settings.secret, "ana", "Ana", ttl=120)
        expires_at = datetime.fromtimestamp(
            verify_token(server.settings.secret, token).expires_at, UTC
        )
        ana = await RoomClient.connect(server.ws, room["id"], token)
        warning = await ana.recv_until(lambda f: f["type"] == "auth.expiring", timeout=5)
        assert warning["expires_at"] == expires_at.isoformat().replace("+00:00", "Z")
        url = f"{server.ws}/feed/ws?token={token}&following=1"
        async with websockets.connect(url, subprotocols=["menteo.v1.json"]) as feed:  # type: ignore[list-item]
            async with asyncio.timeout(5):
                while (frame := orjson.loads(await feed.recv()))["type"] != "auth.expiring":
                    pass
        assert frame["expires_at"] == warning["expires_at"]
        inbox = await connect_inbox(server.ws, token)
        inbox_warning = await inbox.recv_until(lambda f: f["type"] == "auth.expiring", timeout=5)
        assert inbox_warning["expires_at"] == warning["expires_at"]


def test_a_negative_warning_time_is_refused() -> None:
    """A warning after expiry would leave the socket open past it (the warning arms the close)."""
    with pytest.raises(ValueError, match="AUTH_EXPIRING_BEFORE"):
        Settings.from_env({"MENTEO_SECRET": "s" * 40, "MENTEO_AUTH_EXPIRING_BEFORE": "-5"})
