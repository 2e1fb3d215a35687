"""Chat messages people can fix: edit and delete by their author, replies, and history that
shows the current state (welcome, REST, replay), live, on resume and after a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import Running, make_settings, run_server

MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


async def answer(client: RoomClient, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a frame and return its ack or error."""
    await client.send(frame)
    return await client.recv_until(
        lambda f: f["type"] in ("ack", "error") and f.get("id") == frame["id"]
    )


async def edit(client: RoomClient, cid: str, target: int, body: str) -> dict[str, Any]:
    return await answer(client, {"type": "chat.edit", "id": cid, "target": target, "body": body})


async def delete(client: RoomClient, cid: str, target: int) -> dict[str, Any]:
    return await answer(client, {"type": "chat.delete", "id": cid, "target": target})


def of_type(kind: str, **match: Any) -> Any:
    return lambda f: f["type"] == kind and all(f.get(k) == v for k, v in match.items())


async def messages(server: Running, room_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{server.url}/api/rooms/{room_id}/messages", headers=server.service()
        )
    assert resp.status_code == 200, resp.text
    page: list[dict[str, Any]] = resp.json()["messages"]
    return page


async def test_the_author_edits_and_deletes_and_every_member_sees_it(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    first = await ana.chat("m1", "see you Tursday")
    second = await ana.chat("m2", "my password is hunter2")

    ack = await edit(ana, "e1", first, "see you Thursday")
    assert ack == {"type": "ack", "id": "e1", "seq": 3}
    edited = await ben.recv_until(of_type("chat.edited"))
    assert edited == {
        "type": "chat.edited",
        "seq": 3,
        "id": "e1",
        "author": {"user_id": "ana", "name": "Ana"},
        "target": first,
        "body": "see you Thursday",
        "ts": edited["ts"],
    }
    assert await edit(ana, "e1", first, "see you Thursday") == ack  # idempotent by client id

    assert (await delete(ana, "d1", second))["seq"] == 4
    deleted = await ben.recv_until(of_type("chat.deleted"))
    assert {k: deleted[k] for k in ("seq", "id", "target", "by")} == {
        "seq": 4,
        "id": "d1",
        "target": second,
        "by": "ana",
    }
    assert deleted["ts"].endswith("Z") and "body" not in deleted

    # A member joining now (the hub's kept history) and a REST page: the current state.
    cy = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    for page in (cy.welcome["history"], await messages(server, room["id"])):
        assert [m["seq"] for m in page] == [first, second]
        assert page[0]["body"] == "see you Thursday" and page[0]["edited_at"] == edited["ts"]
        assert page[1]["body"] == "" and page[1]["deleted"] is True
        assert page[1]["id"] == "m2" and page[1]["author"]["user_id"] == "ana"
        assert "edited_at" not in page[1] and "hunter2" not in str(page)


async def test_others_cannot_edit_or_delete_and_targets_must_be_live_messages(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    mine = await ana.chat("m1", "mine")
    assert await edit(ana, "e1", mine, "mine, edited") == {"type": "ack", "id": "e1", "seq": 2}
    for frame in (
        {"type": "chat.edit", "id": "x1", "target": mine, "body": "not yours"},
        {"type": "chat.delete", "id": "x2", "target": mine},
    ):
        refused = await answer(ben, frame)
        assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
    for target in (2, 99):  # a chat.edited event's seq; a seq the room has not reached
        assert (await edit(ana, f"n{target}", target, "x"))["code"] == "not_found"
        assert (await delete(ana, f"d{target}", target))["code"] == "not_found"
    assert (await delete(ana, "d1", mine))["type"] == "ack"
    assert (await edit(ana, "e2", mine, "back again"))["code"] == "not_found"
    assert (await delete(ana, "d2", mine))["code"] == "not_found"
    for bad in ({"target": "1"}, {"target": 0}, {"target": True}, {}):
        refused = await answer(ana, {"type": "chat.delete", "id": "b", **bad})
        assert refused["code"] == "invalid", bad
    assert (await answer(ana, {"type": "chat.edit", "id": "b", "target": 1, "body": " "}))[
        "code"
    ] == "invalid"
    # A refusal stores nothing: the room's seq is still the delete's.
    assert (await messages(server, room["id"]))[0]["deleted"] is True
    assert await ana.chat("m2", "next") == 4


async def test_edits_are_refused_after_the_window(backend: Backend) -> None:
    async with run_server(make_settings(backend, edit_window=1.0)) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        seq = await ana.chat("m1", "typo")
        assert (await edit(ana, "e1", seq, "fixed"))["type"] == "ack"
        await asyncio.sleep(1.2)  # the window is wall-clock time: let it pass
        refused = await edit(ana, "e2", seq, "too late")
        assert (refused["code"], refused["message"]) == (
            "forbidden",
            "a message may be edited for 1 s after it was sent",
        )
        assert (await delete(ana, "d1", seq))["type"] == "ack"  # deleting has no window


async def test_a_service_deletes_over_rest(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    seq = await ana.chat("m1", "remove me")
    url = f"{server.url}/api/rooms/{room['id']}/messages"
    member = {"authorization": "Bearer " + server.token("ana", "Ana")}
    async with httpx.AsyncClient() as http:
        assert (await http.delete(f"{url}/{seq}", headers=member)).status_code == 403
        for missing in ("99", "0", "abc"):
            resp = await http.delete(f"{url}/{missing}", headers=server.service())
            assert resp.status_code == 404, (missing, resp.text)
        resp = await http.delete(f"{url}/{seq}", headers=server.service())
        assert resp.status_code == 204 and resp.content == b""
        deleted = await ana.recv_until(of_type("chat.deleted"))
        assert (deleted["target"], deleted["by"], deleted["id"]) == (seq, "backend", None)
        assert (await http.delete(f"{url}/{seq}", headers=server.service())).status_code == 204
    assert (await messages(server, room["id"]))[0]["deleted"] is True
    assert (await ana.chat("m2", "next")) == 3  # the repeated delete stored nothing


async def test_replies_name_a_message_of_the_same_room(
    server: Running, room: dict[str, Any]
) -> None:
    other = await create_room(server.url, server.service(), MEMBERS)
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    elsewhere = await RoomClient.connect(server.ws, other["id"], server.token("ana", "Ana"))
    for i in range(3):
        await elsewhere.chat(f"o{i}", "in the other room")
    question = await ana.chat("q1", "which article?")
    reply = {"type": "chat.send", "id": "r1", "body": "window functions", "reply_to": question}
    assert (await answer(ana, reply))["type"] == "ack"
    live = await ana.recv_until(of_type("chat.message", id="r1"))
    assert live["reply_to"] == question
    refused = await answer(ana, {**reply, "id": "r2", "reply_to": 3})  # the other room's seq
    assert (refused["code"], refused["id"]) == ("not_found", "r2")
    assert (await answer(ana, {**reply, "id": "r3", "reply_to": "1"}))["code"] == "invalid"
    # A reply to a reply, and to a message deleted since: both still chat messages here.
    assert (await answer(ana, {**reply, "id": "r4", "reply_to": 2}))["type"] == "ack"
    assert (await delete(ana, "d1", question))["type"] == "ack"
    assert (await answer(ana, {**reply, "id": "r5", "reply_to": question}))["type"] == "ack"
    page = await messages(server, room["id"])
    assert [m.get("reply_to") for m in page] == [None, 1, 2, 1]
    fresh = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert [m.get("reply_to") for m in fresh.welcome["history"]] == [None, 1, 2, 1]


async def test_changes_reach_a_resuming_client_in_order(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    kept = await ana.chat("m1", "first draft")
    gone = await ana.chat("m2", "oops")
    await ben.recv_until(of_type("chat.message", seq=gone))
    epoch = ben.welcome["epoch"]
    await ben.close()
    await edit(ana, "e1", kept, "final")
    await delete(ana, "d1", gone)
    back = await RoomClient.connect(
        server.ws, room["id"], server.token("ben", "Ben"), since=gone, epoch=epoch
    )
    assert back.welcome["recovered"]
    got = [await back.recv() for _ in range(2)]
    assert [(f["type"], f["seq"], f["target"]) for f in got] == [
        ("chat.edited", 3, kept),
        ("chat.deleted", 4, gone),
    ]
    assert got[0]["body"] == "final"


async def test_after_a_restart_history_and_replay_show_the_current_state(
    backend: Backend,
) -> None:
    settings = make_settings(backend)
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        kept = await ana.chat("m1", "draft")
        gone = await ana.chat("m2", "secret SESAME-42")
        await edit(ana, "e1", kept, "final")
        await edit(ana, "e2", gone, "secret SESAME-43")
        await delete(ana, "d1", gone)
        await ana.close()
    async with run_server(settings) as server:
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        for page in (ana.welcome["history"], await messages(server, room["id"])):
            assert [(m["seq"], m["body"], m.get("deleted")) for m in page] == [
                (kept, "final", None),
                (gone, "", True),
            ]
            assert "edited_at" in page[0]
        replay = await RoomClient.connect(
            server.ws, room["id"], server.token("ana"), since=0, epoch=ana.welcome["epoch"]
        )
        got = [await replay.recv() for _ in range(5)]
        assert [(f["type"], f["seq"]) for f in got] == [
            ("chat.message", 1),
            ("chat.message", 2),
            ("chat.edited", 3),
            ("chat.edited", 4),
            ("chat.deleted", 5),
        ]
        assert got[0]["body"] == "final" and got[1] == {**got[1], "body": "", "deleted": True}
        assert got[2]["body"] == "final"
        assert (got[3]["target"], got[3]["body"], got[3]["deleted"]) == (gone, "", True)
        assert "SESAME" not in str(got)
