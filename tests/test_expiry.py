"""Long sessions: a socket is warned before its token expires, may refresh it, and is
closed with 4401 at expiry otherwise."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from realtime.auth import issue_token
from tests.client import RoomClient
from tests.servers import Running


async def test_unrefreshed_socket_is_warned_then_closed_4401(server: Running, room: dict[str, Any]) -> None:
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
