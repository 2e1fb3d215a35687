"""System messages: ``POST /api/rooms/{id}/messages`` with a service token stores a
``chat.message`` with ``kind: "system"``; member messages carry ``kind: "user"``, and a stored
event without a kind reads as one, in the welcome's history, on replay and in REST pages."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from tests.client import RoomClient
from tests.servers import Running


def _url(room: dict[str, Any]) -> str:
    return f"/api/rooms/{room['id']}/messages"


async def test_a_system_message_is_stored_once_and_reaches_every_member(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"id": "sys-1", "body": "Ben joined the programme"}
        first = await http.post(_url(room), json=body, headers=server.service())
        assert first.status_code == 201, first.text
        stored = first.json()
        assert stored["type"] == "chat.message" and stored["kind"] == "system"
        assert stored["id"] == "sys-1" and stored["body"] == "Ben joined the programme"
        assert stored["author"] == {"user_id": "backend", "name": "Backend"}  # the token's
        # A retry with the same id, even with another body, creates nothing: the stored one.
        for retry in (body, {"id": "sys-1", "body": "something else"}):
            again = await http.post(_url(room), json=retry, headers=server.service())
            assert again.status_code == 200, again.text
            assert again.json() == stored
        page = (await http.get(_url(room), headers=server.service())).json()
    assert page["messages"] == [stored]  # one message, as answered
    live = await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert live == stored
    await ana.chat("c-2", "after")  # the next seq follows: the retries used none
    after = await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert after["seq"] == stored["seq"] + 1 and after["kind"] == "user"


async def test_system_messages_need_a_service_token_a_room_and_a_valid_body(
    server: Running, room: dict[str, Any]
) -> None:
    good = {"id": "s1", "body": "hello"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post(_url(room), json=good)).status_code == 401
        for user in ("ana", "ben", "zed"):  # a member's token (or anyone's) is not the backend's
            member = {"authorization": "Bearer " + server.token(user)}
            refused = await http.post(_url(room), json=good, headers=member)
            assert refused.status_code == 403, user
            assert refused.json()["error"]["code"] == "forbidden"
        missing = await http.post(
            "/api/rooms/no-such-room/messages", json=good, headers=server.service()
        )
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        for bad in (
            {"body": "no id"},
            {"id": "", "body": "x"},
            {"id": "i" * 65, "body": "x"},
            {"id": "line\nbreak", "body": "x"},
            {"id": 7, "body": "x"},
            {"id": "b1"},
            {"id": "b2", "body": ""},
            {"id": "b3", "body": " \n\t "},
            {"id": "b4", "body": "x" * 4001},
            {"id": "b5", "body": "nul \x00 inside"},
            {"id": "b6", "body": ["list"]},
        ):
            resp = await http.post(_url(room), json=bad, headers=server.service())
            assert resp.status_code == 400, bad
            assert resp.json()["error"]["code"] == "invalid", bad
        lone = b'{"id": "b7", "body": "half \\ud800 a pair"}'
        resp = await http.post(_url(room), content=lone, headers=server.service())
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_json"
        longest = await http.post(
            _url(room), json={"id": "i" * 64, "body": "y" * 4000}, headers=server.service()
        )
        assert longest.status_code == 201, longest.text
        page = (await http.get(_url(room), headers=server.service())).json()
    assert [m["id"] for m in page["messages"]] == ["i" * 64]  # nothing refused was stored


async def test_an_id_the_backend_used_for_another_kind_of_event_is_a_conflict(
    server: Running, room: dict[str, Any]
) -> None:
    service = await RoomClient.connect(
        server.ws, room["id"], server.token("backend", "Backend", role="service")
    )
    await service.chat("used-by-chat", "a message the backend sent as a user would")
    await service.send({"type": "checklist.add", "id": "used-by-step", "title": "A step"})
    await service.recv_until(lambda f: f["type"] == "ack" and f["id"] == "used-by-step")
    async with httpx.AsyncClient(base_url=server.url) as http:
        for cid in ("used-by-chat", "used-by-step"):
            resp = await http.post(
                _url(room), json={"id": cid, "body": "system"}, headers=server.service()
            )
            assert resp.status_code == 409, resp.text
            assert resp.json()["error"]["code"] == "conflict"


async def test_kind_in_history_replay_and_rest_pages(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await ana.chat("u-1", "a member's message")
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.post(
            _url(room), json={"id": "s-1", "body": "a system message"}, headers=server.service()
        )
        assert resp.status_code == 201
    await ana.chat("u-2", "another member's message")
    expected = [("u-1", "user"), ("s-1", "system"), ("u-2", "user")]

    # A member's message is stored without a kind (as every message before kinds existed).
    assert server.state is not None
    async with server.state.db.read() as db:
        rows = await db.execute(
            text("SELECT client_id, data FROM event WHERE stream = :s AND type = 'chat.message'"),
            {"s": room["id"]},
        )
        stored = {r.client_id: orjson.loads(r.data) for r in rows}
    assert "kind" not in stored["u-1"] and stored["s-1"]["kind"] == "system"

    def kinds(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(f["id"], f["kind"]) for f in frames if f["type"] == "chat.message"]

    # The welcome's history: kept by the hub while ana is connected, and read from the
    # database once nobody is (both paths).
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert kinds(ben.welcome["history"]) == expected
    await ben.close()
    await ana.close()
    alone = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert kinds(alone.welcome["history"]) == expected
    await alone.close()
    # Replay: a resume from 0 gets every event after the welcome.
    resumed = await RoomClient.connect(server.ws, room["id"], server.token("ben"), since=0)
    assert resumed.welcome["recovered"] is True
    replayed = [await resumed.recv_until(lambda f: f["type"] == "chat.message") for _ in range(3)]
    assert kinds(replayed) == expected
    # msgpack carries it the same way.
    packed = await RoomClient.connect(
        server.ws, room["id"], server.token("ben"), msgpack_codec=True
    )
    assert kinds(packed.welcome["history"]) == expected
    # REST pages.
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = (await http.get(_url(room), headers=server.service())).json()
        older = (
            await http.get(_url(room), params={"before": 3, "limit": 1}, headers=server.service())
        ).json()
    assert kinds(page["messages"]) == expected
    assert kinds(older["messages"]) == [("s-1", "system")]


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_a_member_cannot_send_a_system_message_over_the_socket(
    server: Running, room: dict[str, Any], codec: str
) -> None:
    ben = await RoomClient.connect(
        server.ws, room["id"], server.token("ben"), msgpack_codec=codec == "msgpack"
    )
    await ben.send({"type": "chat.send", "id": "forged", "body": "hi", "kind": "system"})
    frame = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert frame["kind"] == "user"  # a frame's kind is not read: a member's message is a user's
