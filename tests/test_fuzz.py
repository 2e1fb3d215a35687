"""Property-based fuzzing of every client frame against a live server.

The server must never crash, never answer with a frame type or close code that
docs/protocol.md does not list, and never store a malformed event. ``FUZZ_EXAMPLES``
sets the number of examples per backend (25 by default, bounded for CI;
`FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py` fuzzes longer).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.client import RoomClient, create_room
from tests.servers import Running

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SERVER_FRAMES = {
    "welcome",
    "ack",
    "chat.message",
    "error",
    "pong",
    "presence.join",
    "presence.leave",
    "presence.sync",
    "presence.typing",
    "auth.expiring",
    "auth.refreshed",
    "checklist.add",
    "checklist.toggle",
    "checklist.rename",
    "checklist.move",
    "checklist.remove",
    "checklist.verify",
    "read.marker",
}
ERROR_CODES = {
    "bad_frame",
    "unknown_type",
    "invalid",
    "rate_limited",
    "conflict",
    "unavailable",
    "not_found",
    "forbidden",
}
CLOSE_CODES = {1000, 1008, 1009, 1013}
CLIENT_TYPES = [
    "chat.send",
    "typing",
    "ping",
    "auth.refresh",
    "read",
    "checklist.add",
    "checklist.toggle",
    "checklist.rename",
    "checklist.move",
    "checklist.remove",
    "checklist.verify",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=80),
    st.text(min_size=3990, max_size=4010, alphabet="ab€😀"),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "id",
        "body",
        "active",
        "token",
        "item_id",
        "title",
        "after",
        "position",
        "done",
        "verified",
        "description",
        "seq",
        "type",
    ]
)
frames = st.one_of(
    # Plausible frames with hostile field values.
    st.builds(
        lambda t, fields: {"type": t, **fields},
        st.sampled_from(CLIENT_TYPES),
        st.dictionaries(field_names, values, max_size=6),
    ),
    values,  # anything at all
)
deep = st.integers(10, 3000).map(lambda n: "[" * n + "]" * n)


async def assert_clean(client: RoomClient) -> int | None:
    """Read what the server answers until quiet; every frame must be documented."""
    try:
        while True:
            frame = await client.recv(timeout=0.3)
            assert frame.get("type") in SERVER_FRAMES, frame
            if frame["type"] == "error":
                assert frame["code"] in ERROR_CODES, frame
                assert isinstance(frame["message"], str)
    except TimeoutError:
        return None
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code in CLOSE_CODES, exc
        return exc.rcvd.code


async def stored_events_are_valid(server: Running, room_id: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = (
            await http.get(
                f"/api/rooms/{room_id}/messages", params={"limit": 100}, headers=server.service()
            )
        ).json()
        for message in page["messages"]:
            assert isinstance(message["body"], str) and 1 <= len(message["body"]) <= 4000
            assert isinstance(message["id"], str) and 1 <= len(message["id"]) <= 64
        state = (await http.get(f"/api/rooms/{room_id}/checklist", headers=server.service())).json()
        for item in state["items"]:
            assert isinstance(item["title"], str) and 1 <= len(item["title"]) <= 200
        assert (await http.get("/healthz")).status_code == 200


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(st.one_of(frames, deep), min_size=1, max_size=6), binary=st.booleans())
async def test_room_socket_survives_any_frame(
    server: Running, batch: list[Any], binary: bool
) -> None:
    room = await create_room(
        server.url, server.service(), [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
    )
    client = await RoomClient.connect(
        server.ws, room["id"], server.token("ana"), msgpack_codec=binary
    )
    for frame in batch:
        if isinstance(frame, str) and frame.startswith("["):
            await client.ws.send(frame.encode() if binary else frame)  # deep nesting, raw
            continue
        try:
            data = msgpack.packb(frame) if binary else orjson.dumps(frame).decode()
        except (TypeError, ValueError, OverflowError):
            continue  # not encodable by this codec
        try:
            await client.ws.send(data)
        except websockets.ConnectionClosed:
            break
    await assert_clean(client)
    await stored_events_are_valid(server, room["id"])
    # The room still works for someone else.
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben"))
    await ben.chat("after-fuzz", "still fine")


notes_messages = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda head, tail: bytes(head) + tail,
        st.lists(st.integers(0, 3), min_size=1, max_size=2),
        st.binary(max_size=120),
    ),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(messages=st.lists(notes_messages, min_size=1, max_size=5))
async def test_notes_socket_survives_corrupted_yjs_messages(
    server: Running, messages: list[bytes]
) -> None:
    from tests.notes_client import NotesClient

    room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    writer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    try:
        await writer.synced.wait()
        writer.text += "intact"
        fuzzer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await fuzzer.wait_for(lambda: str(fuzzer.text) == "intact")
        for message in messages:
            try:
                await fuzzer.ws.send(message)
            except websockets.ConnectionClosed:
                break
        await fuzzer.close()
        code = fuzzer.ws.protocol.close_rcvd
        assert code is None or code.code in {1000, 1007, 1008, 1009, 4413}, code
        fresh = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await fresh.wait_for(lambda: "intact" in str(fresh.text))
        await fresh.close()
    finally:
        await writer.close()
