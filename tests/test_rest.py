"""The REST API for the platform's backend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.client import RoomClient
from tests.servers import Running


async def test_create_room_validates_and_needs_a_service_token(server: Running) -> None:
    good = {"title": "T", "members": [{"user_id": "u", "name": "U", "role": "mentor"}]}
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/api/rooms", json=good)).status_code == 401
        user = {"authorization": "Bearer " + server.token("u")}
        assert (await http.post("/api/rooms", json=good, headers=user)).status_code == 403
        svc = server.service()
        for bad in (
            {"members": []},
            {"title": "", "members": []},
            {"title": "T", "members": [{"user_id": "u", "name": "U", "role": "boss"}]},
            {"title": "T", "members": [{"user_id": "u", "name": "U", "role": "mentor"}] * 2},
            {"title": "T", "members": "all"},
        ):
            resp = await http.post("/api/rooms", json=bad, headers=svc)
            assert resp.status_code == 400, bad
            assert resp.json()["error"]["code"] == "invalid"
        resp = await http.post("/api/rooms", content=b"{oops", headers=svc)
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_json"
        resp = await http.post("/api/rooms", content=b"x" * 70_000, headers=svc)
        assert resp.status_code == 413
        resp = await http.post("/api/rooms", json=good, headers=svc)
        assert resp.status_code == 201
        assert resp.json()["id"] and resp.json()["members"][0]["role"] == "mentor"


async def test_list_rooms_shows_only_the_callers(server: Running, room: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        other = await http.post(
            "/api/rooms",
            headers=server.service(),
            json={"title": "Other", "members": [{"user_id": "cy", "name": "Cy", "role": "mentee"}]},
        )
        ana = {"authorization": "Bearer " + server.token("ana")}
        mine = (await http.get("/api/rooms", headers=ana)).json()["rooms"]
        assert [r["id"] for r in mine] == [room["id"]]
        everything = (await http.get("/api/rooms", headers=server.service())).json()["rooms"]
        assert {r["id"] for r in everything} == {room["id"], other.json()["id"]}


async def test_message_pages(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for i in range(1, 8):
        await ana.chat(f"m{i}", f"body {i}")
    await ana.close()
    url = f"/api/rooms/{room['id']}/messages"
    async with httpx.AsyncClient(base_url=server.url) as http:
        ben = {"authorization": "Bearer " + server.token("ben")}
        newest = (await http.get(url, params={"limit": 3}, headers=ben)).json()
        assert [m["seq"] for m in newest["messages"]] == [5, 6, 7] and newest["has_more"]
        assert newest["messages"][0]["type"] == "chat.message"
        assert newest["messages"][0]["body"] == "body 5"
        older = (await http.get(url, params={"limit": 3, "before": 5}, headers=ben)).json()
        assert [m["seq"] for m in older["messages"]] == [2, 3, 4] and older["has_more"]
        oldest = (await http.get(url, params={"limit": 3, "before": 2}, headers=ben)).json()
        assert [m["seq"] for m in oldest["messages"]] == [1] and not oldest["has_more"]
        default = (await http.get(url, headers=ben)).json()
        assert len(default["messages"]) == 7 and not default["has_more"]
        for bad in ({"limit": 101}, {"limit": 0}, {"before": "x"}):
            assert (await http.get(url, params=bad, headers=ben)).status_code == 400


@pytest.mark.parametrize("path", ["/api/rooms/{id}", "/api/rooms/{id}/messages"])
async def test_room_routes_need_membership(
    server: Running, room: dict[str, Any], path: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        url = path.format(id=room["id"])
        assert (await http.get(url)).status_code == 401
        eve = {"authorization": "Bearer " + server.token("eve")}
        assert (await http.get(url, headers=eve)).status_code == 403
        assert (await http.get(path.format(id="missing"), headers=eve)).status_code == 404
        ben = {"authorization": "Bearer " + server.token("ben")}
        assert (await http.get(url, headers=ben)).status_code == 200


async def test_health_and_readiness(server: Running) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = (await http.get("/readyz")).json()
        assert ready == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
