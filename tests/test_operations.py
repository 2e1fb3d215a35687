"""What an operator relies on: metrics for every limit, a per-address socket cap."""

from __future__ import annotations

from typing import Any

import httpx

from tests.backends import Backend
from tests.client import RoomClient, close_code, create_room
from tests.servers import Running, make_settings, run_server


async def metric(server: Running, line_start: str) -> float:
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_sockets_refusals_and_limit_hits(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert await metric(server, 'menteo_sockets_open{kind="room"}') == 1
    assert await close_code(server.ws, f"/rooms/{room['id']}/ws?token=bad") == 4401
    assert await metric(server, 'menteo_sockets_refused_total{reason="unauthorized"}') == 1
    await ana.chat("m1", "counted")
    assert await metric(server, "menteo_events_appended_total") >= 1
    assert await metric(server, "menteo_commits_total") >= 1
    await ana.ws.send("x" * (server.settings.max_frame_bytes + 1))
    assert await ana.closed_with() == 1009
    assert await metric(server, 'menteo_limit_hits_total{limit="frame_too_big"}') == 1
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    assert "counted" not in text  # no room content in metrics
    assert "# TYPE menteo_limit_hits_total counter" in text


async def test_sockets_per_address_are_capped_before_auth(backend: Backend) -> None:
    async with run_server(make_settings(backend, max_connections_per_ip=2)) as server:
        room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
        first = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        second = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        # The third from the same address is refused whatever its token.
        assert await close_code(server.ws, f"/rooms/{room['id']}/ws?token=whatever") == 1013
        assert await metric(server, 'menteo_limit_hits_total{limit="connections_per_ip"}') == 1
        await second.close()
        await first.chat("ok", "the first two are fine")
        third = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        await third.close()
