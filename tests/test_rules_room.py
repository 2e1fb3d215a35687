"""Rules of the room socket (docs/protocol.md) that no other test proved: an error's `id`,
`conflict`, a resent id, a `since` that is not a number, the welcome's history and the
replay page following their settings, two adds at one anchor, and unverifying.

Each test runs a real server on both backends and talks to it over real sockets; what it
expects is written from docs/protocol.md, not computed with the server's code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgpack
import orjson
import pytest
from sqlalchemy import event

from realtime.config import Settings
from tests.backends import Backend
from tests.client import RoomClient, create_room
from tests.servers import SECRET, Running, run_server

MEMBERS = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]


def env_settings(backend: Backend, env: dict[str, str]) -> Settings:
    """Settings read from ``MENTEO_*`` variables (the documented names), on ``backend``."""
    return Settings.from_env(
        env,
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        secret=SECRET,
    )


async def reply(client: RoomClient, cid: str) -> dict[str, Any]:
    """The ack or error that answers the frame with id ``cid``."""
    return await client.recv_until(lambda f: f["type"] in ("ack", "error") and f.get("id") == cid)


async def rest(server: Running, path: str) -> Any:
    async with httpx.AsyncClient(base_url=server.url) as http:
        resp = await http.get(path, headers=server.service())
    assert resp.status_code == 200, resp.text
    return resp.json()


# Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["json", "msgpack"])
async def test_an_error_for_a_frame_without_id_has_a_null_id(
    server: Running, room: dict[str, Any], codec: str
) -> None:
    """`id` is the offending frame's `id` when it had one, else `null` (present, not left
    out), for every kind of error and on both codecs."""
    binary = codec == "msgpack"
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"), msgpack_codec=binary)

    async def error_for(raw: str | bytes) -> dict[str, Any]:
        await ana.ws.send(raw)
        return await ana.recv_until(lambda f: f["type"] == "error")

    def encode(frame: Any) -> str | bytes:
        return msgpack.packb(frame) if binary else orjson.dumps(frame).decode()

    undecodable = b"\xc1" if binary else "{not json"
    without_id = {
        "bad_frame": undecodable,
        "unknown_type": encode({"type": "chat.shout"}),
        "invalid": encode({"type": "chat.send", "body": "no id"}),
    }
    for code, raw in without_id.items():
        error = await error_for(raw)
        assert error["code"] == code, error
        assert "id" in error and error["id"] is None, error
    typing = await error_for(encode({"type": "typing", "active": "yes"}))
    assert typing["code"] == "invalid" and "id" in typing and typing["id"] is None, typing
    # With an id, the error carries it.
    with_id = await error_for(encode({"type": "chat.shout", "id": "u1"}))
    assert (with_id["code"], with_id["id"]) == ("unknown_type", "u1")
    invalid = await error_for(encode({"type": "typing", "id": "t1", "active": "yes"}))
    assert (invalid["code"], invalid["id"]) == ("invalid", "t1")


async def test_an_id_used_by_another_kind_of_event_is_a_conflict(
    server: Running, room: dict[str, Any]
) -> None:
    """`conflict`: the client id is already used by a different kind of event; nothing is
    stored for the refused frame. The id is unique per author: Ben may use Ana's."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert await ana.chat("x1", "hello") == 1
    await ana.send({"type": "checklist.add", "id": "x1", "item_id": "i1", "title": "Step"})
    refused = await reply(ana, "x1")
    assert (refused["type"], refused["code"]) == ("error", "conflict"), refused

    await ana.send({"type": "checklist.add", "id": "x2", "item_id": "i2", "title": "Other"})
    added = await reply(ana, "x2")
    assert added == {"type": "ack", "id": "x2", "seq": 2}
    await ana.send({"type": "chat.send", "id": "x2", "body": "same id as the add"})
    refused = await reply(ana, "x2")
    assert (refused["type"], refused["code"]) == ("error", "conflict"), refused

    assert await ben.chat("x1", "Ben's own x1") == 3  # another author's id space
    messages = (await rest(server, f"/api/rooms/{room['id']}/messages"))["messages"]
    assert [(m["seq"], m["id"], m["author"]["user_id"]) for m in messages] == [
        (1, "x1", "ana"),
        (3, "x1", "ben"),
    ]
    checklist = await rest(server, f"/api/rooms/{room['id']}/checklist")
    assert [i["id"] for i in checklist["items"]] == ["i2"]
    assert checklist["seq"] == 3


async def test_a_resent_chat_id_with_another_body_gets_the_first_ack_and_changes_nothing(
    server: Running, room: dict[str, Any]
) -> None:
    """A resent `chat.send` with an id already stored gets the same ack (same seq) and
    creates nothing, whatever its body: the first one stored is the message."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert await ana.chat("c1", "first words") == 1
    first = await ben.recv_until(lambda f: f["type"] == "chat.message")
    await ana.send({"type": "chat.send", "id": "c1", "body": "second thoughts"})
    assert await reply(ana, "c1") == {"type": "ack", "id": "c1", "seq": 1}
    assert await ana.chat("c2", "next") == 2
    # Ben's next message is c2: the resend delivered nothing.
    following = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert (first["seq"], first["body"]) == (1, "first words")
    assert (following["seq"], following["id"]) == (2, "c2")
    messages = (await rest(server, f"/api/rooms/{room['id']}/messages"))["messages"]
    assert [(m["id"], m["body"]) for m in messages] == [("c1", "first words"), ("c2", "next")]


# Resume and history ----------------------------------------------------------------------


@pytest.mark.parametrize("since", ["abc", "1.5", "", "0x1", "-1"])
async def test_a_since_that_is_not_a_seq_gets_history(
    server: Running, room: dict[str, Any], since: str
) -> None:
    """`since` not a number (or not between 0 and the room's seq): `recovered` is false and
    `history` is sent as without `since`; the socket works as any other."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    for i in range(3):
        await ana.chat(f"h{i}", f"history {i}")
    ben = await RoomClient.connect(
        server.ws,
        room["id"],
        server.token("ben"),
        since=since,  # type: ignore[arg-type]
    )
    assert ben.welcome["recovered"] is False
    assert ben.welcome["seq"] == 3
    assert [(m["seq"], m["body"]) for m in ben.welcome["history"]] == [
        (1, "history 0"),
        (2, "history 1"),
        (3, "history 2"),
    ]
    assert await ben.chat("b1", "still a normal socket") == 4
    echoed = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert echoed["seq"] == 4  # nothing before it was replayed


async def test_welcome_history_follows_menteo_history_limit(backend: Backend) -> None:
    """`history` holds the last `MENTEO_HISTORY_LIMIT` chat messages: 3 here, kept in
    memory by the process that delivered them; then 2, read from the database by a fresh
    process on the same database."""
    env = {"MENTEO_HISTORY_LIMIT": "3", "MENTEO_RATE_BURST": "100"}
    async with run_server(env_settings(backend, env)) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        for i in range(1, 8):
            await ana.chat(f"m{i}", f"message {i}")
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
        assert [m["seq"] for m in ben.welcome["history"]] == [5, 6, 7]
        assert ben.welcome["recovered"] is False
        await ana.close()
        await ben.close()
    async with run_server(env_settings(backend, {"MENTEO_HISTORY_LIMIT": "2"})) as server:
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
        assert [m["body"] for m in ben.welcome["history"]] == ["message 6", "message 7"]
        # Also when a `since` cannot be honoured.
        ahead = await RoomClient.connect(server.ws, room["id"], server.token("ana"), since=99)
        assert [m["seq"] for m in ahead.welcome["history"]] == [6, 7]


@contextmanager
def replay_reads(server: Running) -> Iterator[list[int]]:
    """The LIMIT of every read of a stream's events after a seq (the replay's pages), as
    the database is asked for them: SQLAlchemy's statement hook on the server's engines."""
    assert server.state is not None
    db = server.state.db
    engines = [db.engine.sync_engine] + ([db.reader] if db.reader is not None else [])
    limits: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        flat = " ".join(statement.split())
        replay = ("FROM event WHERE event.stream =", "event.seq >", "ORDER BY event.seq LIMIT")
        if all(part in flat for part in replay):
            # stream, seq, then the LIMIT (SQLite adds an OFFSET after it)
            values = list(params.values()) if isinstance(params, dict) else list(params)
            limits.append(int(values[2]))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield limits
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


async def test_resume_reads_menteo_replay_page_events_at_a_time(backend: Backend) -> None:
    """A resume reads the database `MENTEO_REPLAY_PAGE` events at a time (2 here), and the
    pages join into every missed event once, in order."""
    env = {"MENTEO_REPLAY_PAGE": "2", "MENTEO_RATE_BURST": "100"}
    async with run_server(env_settings(backend, env)) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        epoch = ana.welcome["epoch"]
        for i in range(1, 8):
            await ana.chat(f"m{i}", f"message {i}")
        with replay_reads(server) as limits:
            ben = await RoomClient.connect(
                server.ws, room["id"], server.token("ben"), since=0, epoch=epoch
            )
            assert ben.welcome["recovered"] is True
            frames = [await ben.recv_until(lambda f: f["type"] == "chat.message") for _ in range(7)]
            assert [f["seq"] for f in frames] == list(range(1, 8))
            assert await ana.chat("live", "after the catch-up") == 8
            live = await ben.recv_until(lambda f: f["type"] == "chat.message")
            assert live["seq"] == 8
        # 7 events in pages of 2: four reads (the last one short), each asking for 2.
        assert len(limits) >= 4, limits
        assert set(limits) == {2}, limits


# Checklist -------------------------------------------------------------------------------


def order_by_keys(items: dict[str, str]) -> list[str]:
    """docs/protocol.md: the list's order is by `pos` (base-62 digits compared as plain
    strings), then `id`."""
    return sorted(items, key=lambda item_id: (items[item_id], item_id))


async def test_two_adds_at_one_anchor_put_the_later_one_first(
    server: Running, room: dict[str, Any]
) -> None:
    """Two adds at the same place both survive: the later one (higher seq) lands right
    after the anchor, before the earlier one. Sent at once by two members, and one after
    the other."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    watcher = await RoomClient.connect(
        server.ws, room["id"], server.token("backend", role="service")
    )
    for cid, item in (("o1", "a"), ("o2", "b")):
        await ana.send({"type": "checklist.add", "id": cid, "item_id": item, "title": item})
        assert (await reply(ana, cid))["type"] == "ack"
    x = {"type": "checklist.add", "id": "o3", "item_id": "x", "title": "x", "after": "a"}
    y = {"type": "checklist.add", "id": "o4", "item_id": "y", "title": "y", "after": "a"}
    await asyncio.gather(ana.send(x), ben.send(y))
    acks = {"x": await reply(ana, "o3"), "y": await reply(ben, "o4")}
    assert all(a["type"] == "ack" for a in acks.values()), acks
    later, earlier = sorted(acks, key=lambda item: acks[item]["seq"], reverse=True)
    expected = ["a", later, earlier, "b"]

    # Then one after the other at the end's anchor: q (later) before p.
    for cid, item in (("o5", "p"), ("o6", "q")):
        await ana.send(
            {"type": "checklist.add", "id": cid, "item_id": item, "title": item, "after": "b"}
        )
        assert (await reply(ana, cid))["type"] == "ack"
    expected += ["q", "p"]

    # A client applying the events by the documented rule sees that order ...
    keys: dict[str, str] = {}
    while len(keys) < 6:
        added = await watcher.recv_until(lambda f: f["type"] == "checklist.add")
        assert "rebalance" not in added
        keys[added["item"]["id"]] = added["item"]["pos"]
    assert order_by_keys(keys) == expected
    # ... and so do the server's state and a new member's welcome.
    state = await rest(server, f"/api/rooms/{room['id']}/checklist")
    assert [i["id"] for i in state["items"]] == expected
    late = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert [i["id"] for i in late.welcome["checklist"]["items"]] == expected


async def test_the_mentor_unverifies_with_verified_false(
    server: Running, room: dict[str, Any]
) -> None:
    """`checklist.verify` with `verified: false`: every member gets the event with
    `verified: false`; the step stays ticked and its `verified_by`, `verified_at` and
    `verified_title` are null. Only the mentor may do it."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    ops = [
        {"type": "checklist.add", "id": "v1", "item_id": "s", "title": "SQL joins"},
        {"type": "checklist.toggle", "id": "v2", "item_id": "s", "done": True},
        {"type": "checklist.verify", "id": "v3", "item_id": "s"},
    ]
    for frame in ops:
        await ana.send(frame)
        assert (await reply(ana, frame["id"]))["type"] == "ack"
    verified = (await rest(server, f"/api/rooms/{room['id']}/checklist"))["items"][0]
    assert (verified["verified"], verified["verified_by"]) == (True, "ana")

    await ben.send({"type": "checklist.verify", "id": "b1", "item_id": "s", "verified": False})
    refused = await reply(ben, "b1")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")

    await ana.send({"type": "checklist.verify", "id": "v4", "item_id": "s", "verified": False})
    ack = await reply(ana, "v4")
    assert ack["type"] == "ack"
    seen = await ben.recv_until(lambda f: f["type"] == "checklist.verify" and f["id"] == "v4")
    assert (seen["seq"], seen["item_id"], seen["verified"]) == (ack["seq"], "s", False)
    assert seen.get("verified_title") is None

    state = await rest(server, f"/api/rooms/{room['id']}/checklist")
    item = state["items"][0]
    assert item["done"] is True
    assert (item["verified"], item["verified_by"], item["verified_at"], item["verified_title"]) == (
        False,
        None,
        None,
        None,
    )
    assert state["progress"] == {"done": 1, "verified": 0, "total": 1}
    late = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    assert late.welcome["checklist"]["items"][0]["verified"] is False


# Close codes -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001])
async def test_a_clean_close_leaves_at_once(backend: Backend, code: int) -> None:
    """A clean close (1000 normal, 1001 going away) leaves at once: long before the grace
    period a dropped socket keeps its user present for. The server answers the close with
    the same code."""
    settings = env_settings(backend, {"MENTEO_PRESENCE_GRACE": "60"})
    async with run_server(settings) as server:
        room = await create_room(server.url, server.service(), MEMBERS)
        ana = await RoomClient.connect(server.ws, room["id"], server.token("ana"))
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
        await ana.recv_until(lambda f: f["type"] == "presence.join" and f["user_id"] == "ben")
        await ben.ws.close(code)
        echoed = ben.ws.protocol.close_rcvd
        assert echoed is not None and echoed.code == code
        leave = await ana.recv_until(lambda f: f["type"] == "presence.leave", timeout=10)
        assert leave == {"type": "presence.leave", "user_id": "ben"}
