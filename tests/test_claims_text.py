"""Claims and client strings are text every other member's encoder must take.

A token's ``sub`` and ``name`` are text the issuer did not check, and PyJWT's JSON parser
accepts a lone surrogate (``"\\ud800"``) that orjson and msgpack refuse to encode: one such
name in a room's presence made every other member's welcome fail. Claims are refused with
4401 (401 on REST); client frames carrying lone surrogates, by JSON escape or by raw msgpack
bytes, in any field of any frame type, get an error frame and leave the room usable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import msgpack
import orjson
import pytest
import websockets

from tests.backends import Backend
from tests.client import TIMEOUT, RoomClient, create_room
from tests.feed_client import FeedApi, SSEFollower, WSFollower, close_all, feed_query
from tests.servers import Running, make_settings, run_server

# Each a Python string holding lone surrogates (never encodable as UTF-8).
LONE = ["\ud800", "x\udfffy", "\udc00\ud800"]
# Control characters: refused in ids and names (a body may hold newlines and tabs).
CONTROL = ["a\nb", "a\x1b[31m", "\x7f", "a\x85b", "\t"]


def _token(server: Running, claims: dict[str, Any]) -> str:
    return jwt.encode({"exp": time.time() + 60} | claims, server.settings.secret, algorithm="HS256")


async def close_of(url: str, **kw: Any) -> tuple[int, str]:
    """Open a socket the server should close at once; its close code and reason."""
    async with websockets.connect(url, open_timeout=TIMEOUT, compression=None, **kw) as ws:
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("not closed")


def bad_claims() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(label, the claim at fault, claims) for every refused shape."""
    for value in LONE + CONTROL:
        yield f"name {value!r}", "name", {"sub": "ben", "name": value}
        yield f"sub {value!r}", "sub", {"sub": value, "name": "Ben"}


async def test_claims_with_lone_surrogates_or_control_characters_are_refused(
    server: Running, room: dict[str, Any]
) -> None:
    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    async with httpx.AsyncClient(base_url=server.url) as http:
        for label, claim, claims in bad_claims():
            token = _token(server, claims)
            for path in (f"/rooms/{room['id']}/ws", f"/rooms/{room['id']}/notes", "/feed/ws"):
                query = feed_query(token, community) if path == "/feed/ws" else f"token={token}"
                code, reason = await close_of(f"{server.ws}{path}?{query}")
                assert code == 4401, (label, path)
                assert f"'{claim}' claim" in reason and "surrogate" in reason, (label, reason)
            resp = await http.get("/api/rooms", headers={"authorization": f"Bearer {token}"})
            assert resp.status_code == 401, label
            assert f"'{claim}' claim" in resp.json()["error"]["message"], label
            stream = await SSEFollower.connect(
                server.url, feed_query(token, community), welcome=False
            )
            assert stream.status == 401, label
    await close_all()
    # Text that is merely unusual stays accepted: a name in any script, with emoji.
    ok = _token(server, {"sub": "ben", "name": "Bén 😀 ベン"})
    ben = await RoomClient.connect(server.ws, room["id"], ok)
    assert ben.welcome["you"]["name"] == "Bén 😀 ベン"


async def test_a_member_with_a_lone_surrogate_name_cannot_lock_the_others_out(
    server: Running, room: dict[str, Any]
) -> None:
    """The reported attack: ben's token names him "\\ud800"; while he was present (and for
    the presence grace after he dropped), ana's welcome failed to encode and she could not
    join. His socket is refused; hers works, and so does a refresh to a good token."""
    evil = _token(server, {"sub": "ben", "name": "\ud800"})
    code, _ = await close_of(f"{server.ws}/rooms/{room['id']}/ws?token={evil}")
    assert code == 4401
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    assert ana.welcome["presence"] == [{"user_id": "ana", "name": "Ana"}]
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    # A refresh to a token with a bad name is refused too, and the socket carries on.
    await ben.send({"type": "auth.refresh", "id": "r1", "token": evil})
    error = await ben.recv_until(lambda f: f["type"] == "error")
    assert error["code"] == "invalid" and "'name' claim" in error["message"]
    assert await ben.chat("b1", "still Ben") >= 1
    frame = await ana.recv_until(lambda f: f["type"] == "chat.message")
    assert frame["author"]["name"] == "Ben"


def _templates(refresh: str) -> dict[str, dict[str, Any]]:
    """One frame of every type the room socket takes, every field filled."""
    return {
        "chat.send": {"id": "c1", "body": "hello"},
        "typing": {"active": True},
        "ping": {"id": "p1"},
        "auth.refresh": {"id": "r1", "token": refresh},
        "checklist.add": {
            "id": "a1",
            "item_id": "i1",
            "title": "step",
            "description": "why",
            "after": "i0",
            "item": {"id": "i2", "title": "nested"},
        },
        "checklist.toggle": {"id": "t1", "item_id": "i1", "done": True},
        "checklist.rename": {"id": "n1", "item_id": "i1", "title": "renamed"},
        "checklist.move": {"id": "m1", "item_id": "i1", "after": None, "after_id": "i0"},
        "checklist.remove": {"id": "x1", "item_id": "i1"},
        "checklist.verify": {"id": "v1", "item_id": "i1", "verified": True},
        "no.such.type": {"id": "u1"},
    }


MARK = "@@LONE@@"  # replaced after encoding, so the wire carries what no encoder makes


def _variants(frame: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The frame with MARK in each value (nested ones too), in the type, and as a key."""
    yield "type", frame | {"type": MARK}
    yield "key", frame | {MARK: "x"}
    for name, value in frame.items():
        if name == "type":
            continue
        yield name, frame | {name: MARK}
        if isinstance(value, dict):
            for inner in value:
                yield f"{name}.{inner}", frame | {name: value | {inner: MARK}}


def _json_wire(frame: dict[str, Any], escape: str) -> str:
    return orjson.dumps(frame).decode().replace(MARK, escape)


def _msgpack_wire(frame: dict[str, Any], raw: bytes) -> bytes:
    packed: bytes = msgpack.packb(frame)
    header = bytes([0xA0 | len(raw)])  # a fixstr: the bytes are claimed to be UTF-8
    return packed.replace(bytes([0xA0 | len(MARK)]) + MARK.encode(), header + raw)


# JSON escapes of lone surrogates, and the same code points as raw (invalid) UTF-8 bytes.
JSON_ESCAPES = ["\\ud800", "x\\udfffy", "\\udc00\\ud800", "\\ud83d"]
RAW_BYTES = [b"\xed\xa0\x80", b"x\xed\xbf\xbfy", b"\xed\xb0\x80\xed\xa0\x80"]


async def test_lone_surrogates_in_every_field_of_every_frame_leave_the_room_usable(
    backend: Backend,
) -> None:
    settings = make_settings(
        backend, rate_per_second=500, rate_burst=2000, user_rate_per_second=500,
        user_rate_burst=2000,
    )  # fmt: skip
    async with run_server(settings) as server:
        room = await create_room(
            server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
        refresh = server.token("ana", "Ana")
        sent = 0
        for binary in (False, True):
            ana = await RoomClient.connect(
                server.ws, room["id"], server.token("ana", "Ana"), msgpack_codec=binary
            )
            for kind, template in _templates(refresh).items():
                for field, frame in _variants({"type": kind} | template):
                    wires: list[str | bytes] = (
                        [_msgpack_wire(frame, raw) for raw in RAW_BYTES]
                        if binary
                        else [_json_wire(frame, escape) for escape in JSON_ESCAPES]
                    )
                    for wire in wires:
                        await ana.ws.send(wire)
                        reply = await ana.recv_until(
                            lambda f: f["type"] in ("error", "ack", "pong", "auth.refreshed")
                        )
                        assert reply["type"] == "error", (kind, field, wire, reply)
                        assert reply["code"] in ("bad_frame", "invalid"), (kind, field, reply)
                        sent += 1
            # The sender's socket carries on, and the other member hears it.
            marker = f"after-{binary}"
            assert await ana.chat(marker, "still here") >= 1
            heard = await ben.recv_until(
                lambda f, m=marker: f["type"] == "chat.message" and f["id"] == m
            )
            assert heard["body"] == "still here"
            await ana.close()
        assert sent > 200
        # Ben got nothing of the fuzz: no error, no stray frame; a newcomer joins cleanly.
        assert not [f for f in ben.skipped if f["type"] not in ("presence.join", "presence.leave")]
        cy = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
        assert [f["body"] for f in cy.welcome["history"]] == ["still here", "still here"]
        assert cy.welcome["checklist"]["items"] == []


@pytest.mark.parametrize("bad", CONTROL)
async def test_client_ids_refuse_control_characters(
    server: Running, room: dict[str, Any], bad: str
) -> None:
    """A client id is echoed in every member's frames: one line of text."""
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    await ana.send({"type": "chat.send", "id": bad, "body": "hi"})
    reply = await ana.recv_until(lambda f: f["type"] in ("ack", "error"))
    assert reply["type"] == "error" and reply["code"] == "invalid", reply
    assert "control character" in reply["message"]
    # A body may hold newlines and tabs.
    assert await ana.chat("ok", "line one\nline\ttwo") == 1


async def test_feed_socket_and_rest_bodies_refuse_lone_surrogates(
    server: Running,
) -> None:
    community = await FeedApi(server.url, server.token("backend", role="service")).community()
    token = server.token("ana", "Ana")
    feed = await WSFollower.connect(server.ws, feed_query(token, community))
    for kind in ("ping", "auth.refresh", "nope"):
        for escape in JSON_ESCAPES:
            await feed.ws.send(_json_wire({"type": kind, "id": MARK, "token": MARK}, escape))
            reply = await feed.recv_until(lambda f: f["type"] in ("error", "pong"))
            assert reply["type"] == "error" and reply["code"] == "bad_frame", reply
    await feed.send({"type": "ping", "id": "p"})
    assert (await feed.recv_until(lambda f: f["type"] == "pong"))["id"] == "p"
    api = FeedApi(server.url, token)
    thread = await api.thread(community)
    post = (await api.post(thread, "hello"))["id"]
    for path, body in (
        ("/api/threads", {"title": MARK, "community_id": community}),
        (f"/api/threads/{thread}/posts", {"body": MARK}),
        (f"/api/posts/{post}/comments", {"body": MARK}),
    ):
        for escape in JSON_ESCAPES:
            async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
                resp = await http.post(
                    path,
                    content=orjson.dumps(body).decode().replace(MARK, escape).encode(),
                    headers=api.headers | {"content-type": "application/json"},
                )
            assert resp.status_code == 400, (path, resp.text)
    await close_all()
