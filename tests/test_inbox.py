"""The inbox socket ``/inbox/ws``: a welcome with every room of the user, as ``GET
/api/rooms`` shows them, then ``inbox.room`` whenever one of them changes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from menteo_testkit.waits import wait_until
from realtime.reads.queries import rooms_read_sync
from tests.client import RoomClient, close_code, connect_inbox, create_room
from tests.servers import Running
from tests.test_reads import rooms_of


def about(room_id: str) -> Any:
    return lambda f: f["type"] == "inbox.room" and f["room"]["id"] == room_id


async def listed(server: Running, user: str, room_id: str) -> dict[str, Any]:
    return next(r for r in await rooms_of(server, user) if r["id"] == room_id)


async def test_the_welcome_is_the_room_list_and_every_change_follows(server: Running) -> None:
    service = server.service()
    pair = await create_room(
        server.url, service, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    )
    other = await create_room(
        server.url, service, [("ana", "Ana", "mentor"), ("cy", "Cy", "mentee")]
    )
    ben = await RoomClient.connect(server.ws, pair["id"], server.token("ben", "Ben"))
    await ben.chat("b0", "before the inbox opened")
    inbox = await connect_inbox(server.ws, server.token("ana", "Ana"))
    binary = await connect_inbox(server.ws, server.token("ana", "Ana"), msgpack_codec=True)
    assert inbox.welcome == {
        "type": "inbox.welcome",
        "you": {"user_id": "ana", "name": "Ana"},
        "rooms": await rooms_of(server, "ana"),
    }
    assert binary.welcome == inbox.welcome
    assert [r["id"] for r in inbox.welcome["rooms"]] == [pair["id"], other["id"]]

    # A message by someone else: one more unread, the newest message.
    seq = await ben.chat("b1", "are you there?")
    for client in (inbox, binary):
        update = await client.recv_until(about(pair["id"]))
        assert update["room"] == await listed(server, "ana", pair["id"])
        assert update["room"]["unread"] == 2 and update["room"]["last_seq"] == seq
        assert update["room"]["last_message"]["id"] == "b1"
    # Her own marker, from a room socket.
    ana = await RoomClient.connect(server.ws, pair["id"], server.token("ana", "Ana"))
    await ana.send({"type": "read", "seq": seq})
    read = await inbox.recv_until(about(pair["id"]))
    assert read["room"]["read_seq"] == seq and read["room"]["unread"] == 0
    assert read["room"] == await listed(server, "ana", pair["id"])
    # Her own message changes the newest message, not the count.
    mine = await ana.chat("a1", "yes!")
    update = await inbox.recv_until(about(pair["id"]))
    assert update["room"]["last_message"]["id"] == "a1" and update["room"]["unread"] == 0
    assert update["room"]["last_seq"] == mine
    # Any durable event moves last_seq and last_activity.
    await ben.send({"type": "checklist.add", "id": "k1", "title": "A step"})
    update = await inbox.recv_until(about(pair["id"]))
    assert update["room"]["last_seq"] == mine + 1 and update["room"]["last_message"]["id"] == "a1"
    assert update["room"] == await listed(server, "ana", pair["id"])
    # A room added to her.
    third = await create_room(
        server.url, service, [("dan", "Dan", "mentor"), ("ana", "Ana", "mentee")]
    )
    added = await inbox.recv_until(about(third["id"]))
    assert added["room"] == await listed(server, "ana", third["id"])
    # Rooms of other users are none of hers.
    await create_room(server.url, service, [("dan", "Dan", "mentor"), ("eve", "Eve", "mentee")])
    # A reconnect gets a fresh welcome: the inbox is a view, not a log.
    await inbox.close()
    fresh = await connect_inbox(server.ws, server.token("ana", "Ana"))
    assert fresh.welcome["rooms"] == await rooms_of(server, "ana")
    # A room with no event yet was last active when created.
    assert [r["id"] for r in fresh.welcome["rooms"]] == [third["id"], pair["id"], other["id"]]
    await binary.send({"type": "ping", "id": "p"})
    assert (await binary.recv_until(lambda f: f["type"] == "pong")) == {"type": "pong", "id": "p"}
    assert not [
        f
        for f in binary.skipped
        if f["type"] == "inbox.room" and f["room"]["members"][0]["user_id"] == "eve"
    ]


async def test_every_inbox_of_each_member_hears_of_a_message(
    server: Running, room: dict[str, Any]
) -> None:
    ana = await connect_inbox(server.ws, server.token("ana", "Ana"))
    ben = await connect_inbox(server.ws, server.token("ben", "Ben"))
    writer = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await writer.chat("a1", "hello")
    to_ben = await ben.recv_until(about(room["id"]))
    to_ana = await ana.recv_until(about(room["id"]))
    assert to_ben["room"]["unread"] == 1 and to_ana["room"]["unread"] == 0
    assert to_ben["room"]["last_message"] == to_ana["room"]["last_message"]
    async with httpx.AsyncClient(base_url=server.url) as http:  # a system message counts for both
        await http.post(
            f"/api/rooms/{room['id']}/messages",
            json={"id": "s1", "body": "notice"},
            headers=server.service(),
        )
    assert (await ben.recv_until(about(room["id"])))["room"]["unread"] == 2
    assert (await ana.recv_until(about(room["id"])))["room"]["unread"] == 1


async def test_the_inbox_is_for_users_and_reads_only_ping_and_refresh(
    server: Running, room: dict[str, Any]
) -> None:
    service = server.token("backend", "Backend", role="service")
    assert await close_code(server.ws, f"/inbox/ws?token={service}") == 4403
    assert await close_code(server.ws, "/inbox/ws") == 4401
    inbox = await connect_inbox(server.ws, server.token("cy", "Cy"))  # in no room: none
    assert inbox.welcome["rooms"] == []
    await inbox.send({"type": "read", "id": "r", "seq": 1})
    error = await inbox.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "unknown_type" and error["id"] == "r"
    await inbox.send({"type": "auth.refresh", "id": "t", "token": server.token("cy", "Cy")})
    assert (await inbox.recv_until(lambda f: f["type"] == "auth.refreshed"))["id"] == "t"
    await inbox.send({"type": "auth.refresh", "id": "u", "token": server.token("ana", "Ana")})
    assert (await inbox.recv_until(lambda f: f["type"] == "error"))["code"] == "forbidden"


async def test_an_edit_or_delete_of_the_last_message_reaches_the_summary(
    server: Running, room: dict[str, Any]
) -> None:
    """The room list shows the newest message: an edit shows there, and a delete erases its
    words there too (live, as in ``GET /api/rooms``)."""
    ben = await connect_inbox(server.ws, server.token("ben", "Ben"))
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    seq = await ana.chat("a1", "the password is hunter2")
    await ben.recv_until(about(room["id"]))
    await ana.send({"type": "chat.edit", "id": "e1", "target": seq, "body": "the password is ***"})
    edited = await ben.recv_until(
        lambda f: about(room["id"])(f) and f["room"]["last_message"]["body"].endswith("***")
    )
    assert edited["room"]["last_message"]["edited_at"]
    assert edited["room"] == await listed(server, "ben", room["id"])
    await ana.send({"type": "chat.delete", "id": "d1", "target": seq})
    deleted = await ben.recv_until(
        lambda f: about(room["id"])(f) and f["room"]["last_message"].get("deleted") is True
    )
    assert deleted["room"]["last_message"]["body"] == ""
    assert deleted["room"] == await listed(server, "ben", room["id"])
    assert "hunter2" not in repr(deleted)


async def test_a_delete_whose_signal_was_lost_still_erases_the_summary(
    server: Running, room: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker may lose a signal; the gap it leaves is filled from the database. A
    ``chat.deleted`` read back there erases the newest message's words too."""
    assert server.state is not None
    inbox = server.state.inbox
    deliver = inbox.on_signal
    lost: list[dict[str, Any]] = []

    def lossy(frames: Any, exclude_user: str | None) -> None:
        changes = frames.frame.get("changes") or []
        if not lost and any(c[0] == "chat.deleted" for c in changes):
            lost.append(frames.frame)  # as if the broker dropped it
            return
        deliver(frames, exclude_user)

    monkeypatch.setattr(inbox, "on_signal", lossy)
    ben = await connect_inbox(server.ws, server.token("ben", "Ben"))
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    first = await ana.chat("a0", "hello")
    seq = await ana.chat("a1", "the password is hunter2")
    await ben.recv_until(lambda f: about(room["id"])(f) and f["room"]["last_seq"] == seq)
    await ana.send({"type": "chat.delete", "id": "d1", "target": seq})
    await ana.recv_until(lambda f: f["type"] == "ack" and f.get("id") == "d1")
    # A later event (an edit of an older message) shows the gap.
    await ana.send({"type": "chat.edit", "id": "e1", "target": first, "body": "hello!"})
    update = await ben.recv_until(
        lambda f: about(room["id"])(f) and f["room"]["last_seq"] == seq + 2
    )
    assert lost, "the delete's signal was not intercepted"
    assert update["room"]["last_message"].get("deleted") is True
    assert "hunter2" not in repr(update)
    assert update["room"] == await listed(server, "ben", room["id"])


async def test_a_delete_during_the_rooms_load_erases_what_the_load_read(
    server: Running, room: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first inbox of a room on a process reads the room from the database; a delete
    whose signal comes before that read returns still erases the words the read found."""
    assert server.state is not None
    inbox = server.state.inbox
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    seq = await ana.chat("a1", "the password is hunter2")
    read_done, release = asyncio.Event(), asyncio.Event()
    run = inbox.db.run

    async def held_run(fn: Any, *args: Any, **kw: Any) -> Any:
        found = await run(fn, *args, **kw)
        if fn is rooms_read_sync:
            read_done.set()
            await release.wait()  # the delete commits and is signalled meanwhile
        return found

    monkeypatch.setattr(inbox.db, "run", held_run)
    opening = asyncio.create_task(connect_inbox(server.ws, server.token("ben", "Ben")))
    try:
        await wait_until(read_done.is_set, "the room's load to read", 15)
        await ana.send({"type": "chat.delete", "id": "d1", "target": seq})
        await ana.recv_until(lambda f: f["type"] == "ack" and f.get("id") == "d1")
        view = inbox.rooms[room["id"]]
        await wait_until(lambda: seq + 1 in view.pending, "the delete's signal", 15)
    finally:
        release.set()
    ben = await opening
    shown = next(r for r in ben.welcome["rooms"] if r["id"] == room["id"])
    assert shown["last_message"].get("deleted") is True and "hunter2" not in repr(shown)
    assert shown == await listed(server, "ben", room["id"])
