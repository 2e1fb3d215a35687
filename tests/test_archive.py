"""Archived rooms: readable, not writable; unarchiving restores writing (issue 16, item 2)."""

from __future__ import annotations

from typing import Any

from tests.access_client import bearer, call, patch_room
from tests.client import RoomClient
from tests.notes_client import NotesClient
from tests.servers import Running


def reply(cid: str) -> Any:
    return lambda f: f.get("type") in ("ack", "error") and f.get("id") == cid


async def notes_text(server: Running, room_id: str) -> str:
    resp = await call(server.url, server.service(), "GET", f"/api/rooms/{room_id}/notes")
    assert resp.status_code == 200
    return str(resp.json()["text"])


async def test_an_archived_room_is_read_only_until_unarchived(
    server: Running, room: dict[str, Any]
) -> None:
    service, room_id = server.service(), room["id"]
    ana = await RoomClient.connect(server.ws, room_id, server.token("ana"))
    ben = await RoomClient.connect(server.ws, room_id, server.token("ben"))
    notes = await NotesClient.connect(server.ws, room_id, server.token("ben"))
    reader = await NotesClient.connect(server.ws, room_id, server.token("ana"))
    await notes.synced.wait()
    notes.text += "agenda"
    await reader.wait_for(lambda: str(reader.text) == "agenda")  # stored before relayed
    assert await ana.chat("c1", "last words") == 1
    await ana.send({"type": "checklist.add", "id": "a1", "item_id": "s1", "title": "SQL"})
    assert (await ana.recv_until(reply("a1")))["type"] == "ack"

    resp = await patch_room(server.url, service, room_id, archived=True, title="Ana & Ben (done)")
    assert resp.status_code == 200, resp.text
    assert resp.json()["archived"] is True and resp.json()["title"] == "Ana & Ben (done)"
    updated = await ben.recv_until(lambda f: f["type"] == "room.updated")
    assert updated["room"]["archived"] is True and updated["room"]["title"] == "Ana & Ben (done)"
    assert updated["seq"] == 3 and {m["user_id"] for m in updated["room"]["members"]} == {
        "ana",
        "ben",
    }

    # Writes are refused with `archived`; the socket stays open.
    await ben.send({"type": "chat.send", "id": "c2", "body": "anyone?"})
    assert (await ben.recv_until(reply("c2")))["code"] == "archived"
    for op in (
        {"type": "checklist.add", "id": "a2", "item_id": "s2", "title": "dbt"},
        {"type": "checklist.toggle", "id": "t1", "item_id": "s1", "done": True},
        {"type": "checklist.rename", "id": "r1", "item_id": "s1", "title": "SQL!"},
        {"type": "checklist.move", "id": "m1", "item_id": "s1", "after": None},
        {"type": "checklist.remove", "id": "x1", "item_id": "s1"},
        {"type": "checklist.verify", "id": "v1", "item_id": "s1"},
    ):
        await ana.send(op)
        refused = await ana.recv_until(reply(op["id"]))
        assert refused["type"] == "error" and refused["code"] == "archived", (op, refused)
    await ben.send({"type": "ping", "id": "p"})
    assert (await ben.recv_until(lambda f: f["type"] == "pong"))["id"] == "p"
    copy = await call(
        server.url, service, "POST", f"/api/rooms/{room_id}/checklist", {"roadmap_id": "x"}
    )
    assert copy.status_code == 409 and copy.json()["error"]["code"] == "archived"

    # The notes take no update: the socket that tries is closed 4423, the document unchanged.
    notes.text += " and more"
    assert await notes.close_code() == 4423
    assert await notes_text(server, room_id) == "agenda"
    late_reader = await NotesClient.connect(server.ws, room_id, server.token("ana"))
    await late_reader.wait_for(lambda: str(late_reader.text) == "agenda")  # still readable
    assert str(reader.text) == "agenda"  # nothing of the refused edit was relayed

    # History, checklist and the welcome stay readable.
    ben_rest = bearer(server.token("ben"))
    page = await call(server.url, ben_rest, "GET", f"/api/rooms/{room_id}/messages")
    assert [m["body"] for m in page.json()["messages"]] == ["last words"]
    checklist = await call(server.url, ben_rest, "GET", f"/api/rooms/{room_id}/checklist")
    assert [i["title"] for i in checklist.json()["items"]] == ["SQL"]
    late = await RoomClient.connect(server.ws, room_id, server.token("ben"))
    assert late.welcome["room"]["archived"] is True
    assert [m["body"] for m in late.welcome["history"]] == ["last words"]

    resp = await patch_room(server.url, service, room_id, archived=False)
    assert resp.status_code == 200 and resp.json()["archived"] is False
    await ben.recv_until(lambda f: f["type"] == "room.updated" and not f["room"]["archived"])
    assert await ben.chat("c3", "we are back") == 5
    writer = await NotesClient.connect(server.ws, room_id, server.token("ben"))
    await writer.wait_for(lambda: str(writer.text) == "agenda")
    writer.text += "!"
    await reader.wait_for(lambda: str(reader.text) == "agenda!")


async def test_patch_is_service_only_and_validated(server: Running, room: dict[str, Any]) -> None:
    service, room_id = server.service(), room["id"]
    mentor = bearer(server.token("ana"))
    assert (await patch_room(server.url, mentor, room_id, archived=True)).status_code == 403
    assert (await patch_room(server.url, service, "nope", archived=True)).status_code == 404
    for body in ({}, {"archived": "yes"}, {"title": ""}, {"title": "x" * 201}, {"title": 5}):
        resp = await call(server.url, service, "PATCH", f"/api/rooms/{room_id}", body)
        assert resp.status_code == 400, (body, resp.text)
    same = await patch_room(server.url, service, room_id, archived=False)
    assert same.status_code == 200 and same.json()["archived"] is False
    listed = await call(server.url, service, "GET", "/api/rooms")
    assert listed.json()["rooms"][0]["archived"] is False
