"""Read markers and unread counts: the ``read`` frame, ``read.marker``, the welcome's
``read``/``unread`` and ``GET /api/rooms``'s summaries, on both backends."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server


def is_marker(frame: dict[str, Any]) -> bool:
    return frame["type"] == "read.marker"


async def rooms_of(server: Running, user: str) -> list[dict[str, Any]]:
    headers = {"authorization": "Bearer " + server.token(user)}
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get("/api/rooms", headers=headers)
    assert resp.status_code == 200, resp.text
    rooms: list[dict[str, Any]] = resp.json()["rooms"]
    return rooms


async def metric(server: Running, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


async def test_a_read_reaches_every_tab_and_the_marker_survives_a_restart(
    backend: Backend,
) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        tab1 = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        tab2 = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        assert tab1.welcome["read"] == {"ana": 0, "ben": 0}
        assert tab1.welcome["unread"] == 0 and tab1.welcome["digest"] is None
        for i in range(3):
            await ben.chat(f"b{i}", f"message {i}")

        await tab1.send({"type": "read", "seq": 2})
        for client in (tab1, tab2, ben):  # the sender's tab too
            assert await client.recv_until(is_marker) == {
                "type": "read.marker",
                "user_id": "ana",
                "seq": 2,
            }
        # Lower is ignored; above the room's last seq is clamped to it.
        await tab2.send({"type": "read", "seq": 1})
        await tab2.send({"type": "read", "seq": 99})
        for client in (tab1, tab2, ben):
            assert (await client.recv_until(is_marker))["seq"] == 3
        await ben.send({"type": "read", "seq": 3})
        assert await tab1.recv_until(is_marker) == {
            "type": "read.marker",
            "user_id": "ben",
            "seq": 3,
        }
        await tab1.send({"type": "ping", "id": "after"})
        await tab1.recv_until(lambda f: f["type"] == "pong")
        assert not [f for f in tab1.skipped if is_marker(f)]  # nothing for the ignored read
        for client in (tab1, tab2, ben):
            await client.close()
    async with run_server(settings) as again:
        ana = await RoomClient.connect(again.ws, room["id"], again.token("ana", "Ana"))
        assert ana.welcome["read"] == {"ana": 3, "ben": 3}
        assert ana.welcome["unread"] == 0 and ana.welcome["digest"] is None


async def test_unread_counts_in_the_welcome_and_the_room_list(server: Running) -> None:
    service = server.service()
    first = await create_room(
        server.url, service, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    )
    second = await create_room(
        server.url, service, [("ana", "Ana", "mentor"), ("cy", "Cy", "mentee")]
    )
    ana = await RoomClient.connect(server.ws, first["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, first["id"], server.token("ben", "Ben"))
    cy = await RoomClient.connect(server.ws, second["id"], server.token("cy", "Cy"))
    await cy.chat("c0", "an older message in the second room")
    seqs = {}
    for cid, who in [("b1", ben), ("a1", ana), ("b2", ben), ("a2", ana), ("b3", ben), ("b4", ben)]:
        seqs[cid] = await who.chat(cid, f"text of {cid}")
    async with httpx.AsyncClient(base_url=server.url) as http:  # a system message counts
        resp = await http.post(
            f"/api/rooms/{first['id']}/messages",
            json={"id": "s1", "body": "notice"},
            headers=service,
        )
        assert resp.status_code == 201
    await ben.send({"type": "checklist.add", "id": "k1", "title": "A step"})  # not a message
    await ben.recv_until(lambda f: f["type"] == "ack" and f["id"] == "k1")
    await ana.send({"type": "read", "seq": seqs["b2"]})
    await ana.recv_until(is_marker)

    # After ana's marker (b2): a2 is hers, b3, b4 and the notice are not.
    again = await RoomClient.connect(server.ws, first["id"], server.token("ana", "Ana"))
    assert again.welcome["read"] == {"ana": seqs["b2"], "ben": 0}
    assert again.welcome["unread"] == 3
    assert (await RoomClient.connect(server.ws, first["id"], server.token("ben"))).welcome[
        "unread"
    ] == 3  # a1, a2 and the notice

    async with httpx.AsyncClient(base_url=server.url) as http:
        history = (await http.get(f"/api/rooms/{first['id']}/messages", headers=service)).json()
        checklist = (
            await http.get(f"/api/rooms/{first['id']}/checklist/history", headers=service)
        ).json()
    rooms = await rooms_of(server, "ana")
    assert [r["id"] for r in rooms] == [first["id"], second["id"]]  # newest activity first
    mine = rooms[0]
    assert mine["last_seq"] == again.welcome["seq"] == checklist["events"][-1]["seq"]
    assert mine["last_activity"] == checklist["events"][-1]["ts"]
    assert mine["last_message"] == history["messages"][-1]  # the notice
    assert mine["read_seq"] == seqs["b2"] and mine["unread"] == 3
    assert mine["title"] == first["title"] and mine["members"] == first["members"]
    assert rooms[1]["unread"] == 1 and rooms[1]["read_seq"] == 0
    await cy.chat("c1", "now the second room is the newest")
    assert [r["id"] for r in await rooms_of(server, "ana")] == [second["id"], first["id"]]
    # A service token lists every room as created, without a reader's counts.
    async with httpx.AsyncClient(base_url=server.url) as http:
        every = (await http.get("/api/rooms", headers=service)).json()["rooms"]
    assert {r["id"] for r in every} == {first["id"], second["id"]}
    assert all("unread" not in r for r in every)


async def test_unread_stops_at_999(backend: Backend) -> None:
    fast = {
        "rate_per_second": 10_000.0,
        "rate_burst": 10_000,
        "user_rate_per_second": 10_000.0,
        "user_rate_burst": 10_000,
    }
    async with run_server(make_settings(backend, **fast)) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        for i in range(1000):
            await ben.send({"type": "chat.send", "id": f"m{i}", "body": "x"})
        await ben.recv_until(lambda f: f["type"] == "ack" and f["id"] == "m999", timeout=60)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        assert ana.welcome["unread"] == 999  # 1000 or more: 999
        assert (await rooms_of(server, "ana"))[0]["unread"] == 999
        await ana.send({"type": "read", "seq": 2})
        await ana.recv_until(is_marker)
        assert (await rooms_of(server, "ana"))[0]["unread"] == 998


async def test_a_flood_of_reads_is_rate_limited_and_costs_a_bounded_number_of_writes(
    server: Running, room: dict[str, Any]
) -> None:
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    for i in range(10):
        await ben.chat(f"b{i}", "hello")
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    writes = await metric(server, "menteo_read_marker_writes_total")
    started = time.monotonic()
    frames = 60  # 50 in the socket's burst, then 10 refused (fewer than the 20 strikes)
    for seq in range(1, frames + 1):  # each would move the marker if written alone
        await ana.send({"type": "read", "seq": seq})
    refused = await ana.recv_until(lambda f: f["type"] == "error")
    assert refused["code"] == "rate_limited"
    seen = []
    while not seen or seen[-1] < 10:
        seen.append((await ben.recv_until(is_marker))["seq"])
    elapsed = time.monotonic() - started
    assert seen == sorted(set(seen)) and seen[-1] == 10  # forward only, clamped to the last
    interval = server.settings.read_flush_interval
    written = await metric(server, "menteo_read_marker_writes_total") - writes
    assert 1 <= written <= elapsed / interval + 2, (written, elapsed)
    assert len(seen) <= written  # each announcement is a write that moved it
    # A flood past the strikes closes the socket, as for any frame.
    for seq in range(200):
        await ana.send({"type": "read", "seq": seq})
    assert await ana.closed_with() == 1008


async def test_read_frames_are_validated_and_a_service_has_no_marker(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for bad in ({}, {"seq": "3"}, {"seq": -1}, {"seq": True}, {"seq": 1.5}, {"seq": 2**60}):
        await ana.send({"type": "read", "id": "r", **bad})
        error = await ana.recv_until(lambda f: f["type"] == "error")
        assert error["code"] == "invalid" and error["id"] == "r", bad
    service = await RoomClient.connect(
        server.ws, room["id"], server.token("backend", "Backend", role="service")
    )
    assert service.welcome["read"] == {"ana": 0, "ben": 0} and service.welcome["unread"] == 0
    await service.send({"type": "read", "id": "s", "seq": 0})
    error = await service.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "forbidden" and error["id"] == "s"
