"""The "since you left" digest: ``GET /api/rooms/{id}/digest`` and the welcome's ``digest``
list what the other members did after a seq, and nothing of your own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text

from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.notes_client import NotesClient
from tests.servers import Running, make_settings, run_server


async def digest(server: Running, room_id: str, user: str, since: int | None = None) -> Any:
    headers = {"authorization": "Bearer " + server.token(user)}
    query = "" if since is None else f"?since={since}"
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(f"/api/rooms/{room_id}/digest{query}", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def op(client: RoomClient, frame: dict[str, Any]) -> int:
    """A checklist operation, acked."""
    await client.send(frame)
    ack = await client.recv_until(
        lambda f: f.get("id") == frame["id"] and f["type"] in ("ack", "error")
    )
    assert ack["type"] == "ack", ack
    return int(ack["seq"])


async def edit_notes(server: Running, room_id: str, user: str, words: str) -> None:
    """One notes update by ``user``, stored: the server relays an update once it is stored,
    so it is stored when another socket of the user has it."""
    writer = await NotesClient.connect(server.ws, room_id, server.token(user))
    watcher = await NotesClient.connect(server.ws, room_id, server.token(user))
    await asyncio.gather(writer.synced.wait(), watcher.synced.wait())
    writer.text += words
    await watcher.wait_for(lambda: str(watcher.text).endswith(words))
    await writer.close()
    await watcher.close()


async def notes_updates_by(server: Running, room_id: str) -> set[str]:
    assert server.state is not None
    async with server.state.db.read() as conn:
        rows = await conn.execute(
            text("SELECT author_id FROM event WHERE stream = :s AND type = 'notes.update'"),
            {"s": "notes:" + room_id},
        )
        return {row.author_id for row in rows}


async def test_the_digest_lists_what_the_others_did_and_nothing_of_yours(server: Running) -> None:
    room = await create_room(
        server.url, server.service(), [("ben", "Ben", "mentor"), ("ana", "Ana", "mentee")]
    )
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await op(ben, {"type": "checklist.add", "id": "z", "title": "Old step"})
    await op(ben, {"type": "checklist.add", "id": "k", "title": "Kept"})
    marker = await ana.chat("a0", "see you next week")
    await ana.send({"type": "read", "seq": marker})
    await ana.recv_until(lambda f: f["type"] == "read.marker")
    await ana.close()

    # Away: the mentor's doings and the mentee's own (from another device).
    first = await ben.chat("b1", "how did it go?")
    await op(ben, {"type": "checklist.add", "id": "x", "title": "Learn SQL"})
    await op(ben, {"type": "checklist.add", "id": "y", "title": "Write tests"})
    await op(ben, {"type": "checklist.toggle", "id": "t1", "item_id": "x", "done": True})
    await op(ben, {"type": "checklist.verify", "id": "v1", "item_id": "x"})
    await op(ben, {"type": "checklist.remove", "id": "r1", "item_id": "z"})
    await op(ben, {"type": "checklist.add", "id": "tmp", "title": "Temporary"})
    await op(ben, {"type": "checklist.remove", "id": "r2", "item_id": "tmp"})  # came and went
    await op(
        ben, {"type": "checklist.rename", "id": "n1", "item_id": "k", "title": "Kept, renamed"}
    )
    await ben.chat("b2", "ping me")
    await edit_notes(server, room["id"], "ben", "Ben's notes. ")
    other = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await other.chat("a1", "mine: not in the digest")
    await op(other, {"type": "checklist.add", "id": "w", "title": "My own step"})
    await op(other, {"type": "checklist.toggle", "id": "t2", "item_id": "y", "done": True})
    await edit_notes(server, room["id"], "ana", "Ana's notes. ")
    last = await ben.chat("b3", "talk soon")
    await other.close()

    got = await digest(server, room["id"], "ana")
    assert got == {
        "room_id": room["id"],
        "from_seq": marker,
        "to_seq": last,
        "messages": 3,
        "by": [{"user_id": "ben", "name": "Ben", "messages": 3}],
        "checklist": {
            "added": ["Learn SQL", "Write tests"],
            "done": ["Learn SQL"],  # "Write tests" was ticked by ana herself
            "verified": ["Learn SQL"],
            "removed": ["Old step"],
        },
        "notes": {"changed": True, "by": ["ben"]},
        "first_unread_seq": first,
        "truncated": False,
    }
    back = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert back.welcome["unread"] == 3 and back.welcome["digest"] == got
    # From the end there is nothing new; ben's digest has only ana's doings.
    empty = await digest(server, room["id"], "ana", since=last)
    assert empty["messages"] == 0 and empty["first_unread_seq"] is None
    assert empty["checklist"] == {"added": [], "done": [], "verified": [], "removed": []}
    assert empty["notes"] == {"changed": False, "by": []} and empty["from_seq"] == last
    his = await digest(server, room["id"], "ben", since=marker)
    assert his["by"] == [{"user_id": "ana", "name": "Ana", "messages": 1}]
    assert his["checklist"] == {
        "added": ["My own step"],
        "done": ["Write tests"],
        "verified": [],
        "removed": [],
    }
    assert his["notes"] == {"changed": True, "by": ["ana"]}


async def test_a_welcome_has_a_digest_when_the_checklist_changed_even_with_nothing_unread(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    await ana.chat("a1", "hi")
    await op(ana, {"type": "checklist.add", "id": "mine", "title": "Mine"})  # her own change
    again = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert again.welcome["unread"] == 0 and again.welcome["digest"] is None
    await op(ben, {"type": "checklist.toggle", "id": "t", "item_id": "mine", "done": True})
    back = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert back.welcome["unread"] == 0
    assert back.welcome["digest"]["checklist"]["done"] == ["Mine"]


async def test_a_long_absence_is_truncated_at_the_event_bound(backend: Backend) -> None:
    async with run_server(make_settings(backend, digest_max_events=5)) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        for i in range(5):
            await ben.chat(f"b{i}", "hello")
        whole = await digest(server, room["id"], "ana")
        assert whole["messages"] == 5 and not whole["truncated"]
        await ben.chat("b5", "one more")
        cut = await digest(server, room["id"], "ana")
        assert cut["truncated"] and cut["messages"] == 5 and cut["to_seq"] == 6
        # The service reads from the beginning (it has no marker); bad sinces are refused.
        async with httpx.AsyncClient(base_url=server.url) as http:
            url = f"/api/rooms/{room['id']}/digest"
            full = (await http.get(url + "?since=3", headers=server.service())).json()
            assert full["from_seq"] == 3 and full["messages"] == 3 and not full["truncated"]
            for bad in ("-1", "x", str(2**63)):
                resp = await http.get(url + "?since=" + bad, headers=server.service())
                assert resp.status_code == 400, bad
            missing = await http.get("/api/rooms/no-such-room/digest", headers=server.service())
            assert missing.status_code == 404


async def test_the_digest_knows_who_edited_the_notes_after_compaction(backend: Backend) -> None:
    settings = make_settings(backend, notes_compact_every=2, notes_retention=0.0)
    async with run_server(settings) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        for i in range(4):
            await edit_notes(server, room["id"], "ben", f"edit {i}. ")
        # Each document close compacts, dropping the updates stored before it (retention 0):
        # ana's edits close it again until ben's rows are gone.
        async with asyncio.timeout(15):
            n = 0
            while "ben" in await notes_updates_by(server, room["id"]):
                n += 1
                await edit_notes(server, room["id"], "ana", f"ana {n}. ")
        got = await digest(server, room["id"], "ana")
        assert got["notes"] == {"changed": True, "by": ["ben"]}


async def test_kept_windows_are_bounded_by_the_events_they_hold(server: Running) -> None:
    """A window holds every checklist event since the reader's marker, and its key the
    room's last seq: a member who never reads makes one longer window of a busy room at
    every welcome. Kept by count only (2,048), they grew with the history (a 20-minute soak
    of clients that never send ``read``: about 70 MB); now also by the events they hold."""
    from realtime.reads.digest import Windows

    assert server.state is not None
    room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    for i in range(12):
        await op(ana, {"type": "checklist.add", "id": f"a{i}", "item_id": f"s{i}", "title": "S"})
    windows = Windows(size=100, events=30)
    for last in range(1, 13):  # a welcome after each step: windows of 1, 2, ... 12 events
        await server.state.db.run(windows.get, room["id"], 0, last, 10_000)
    assert windows.reads == 12
    assert windows.held == sum(len(w.checklist) for w in windows.kept.values()) <= 30
    assert [key[2] for key in windows.kept] == [11, 12]  # the newest, within the budget
    big = Windows(size=100, events=5)
    await server.state.db.run(big.get, room["id"], 0, 12, 10_000)
    assert not big.kept and big.held == 0  # one over the whole budget is not kept
    await ana.close()
