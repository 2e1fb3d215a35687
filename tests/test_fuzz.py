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

from menteo_testkit.waits import wait_until
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


END = "end-of-batch-7f3c9a"  # the last ping's id: no generated frame carries it


async def assert_clean(client: RoomClient) -> int | None:
    """End the batch with a ping and read everything the server answers up to its pong
    (frames are handled in order: the pong comes after every answer to the batch); every
    frame must be documented. A server that hangs fails here instead of passing on
    silence. The close code if the server closed the socket instead."""

    def documented(frame: dict[str, Any]) -> bool:
        assert frame.get("type") in SERVER_FRAMES, frame
        if frame["type"] == "error":
            assert frame["code"] in ERROR_CODES, frame
            assert isinstance(frame["message"], str)
        # A rate-limited ping is answered too: with its error.
        return frame.get("id") == END and frame["type"] in ("pong", "error")

    try:
        await client.send({"type": "ping", "id": END})
        await client.recv_until(documented, what="the pong of the ping that ends the batch")
    except websockets.ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code in CLOSE_CODES, exc
        return exc.rcvd.code
    return None


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


STEP1, STEP2 = b"\x00\x00", b"\x00\x01"  # y-protocols sync messages
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
    from pycrdt import create_sync_message

    from tests.notes_client import NotesClient

    room = await create_room(server.url, server.service(), [("ana", "Ana", "mentor")])
    writer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
    try:
        await writer.wait_synced()
        writer.text += "intact"
        fuzzer = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await fuzzer.wait_for(lambda: str(fuzzer.text) == "intact")
        replies = sum(1 for m in fuzzer.received if m[:2] == STEP2)
        for message in [*messages, create_sync_message(fuzzer.doc)]:
            if message[:2] == STEP1:  # each one is answered (or the socket closed)
                replies += 1
            try:
                await fuzzer.ws.send(message)
            except websockets.ConnectionClosed:
                break
        # The batch ends with a sync step 1: messages are handled in order, so once every
        # step 1 is answered the server has handled the whole batch. A server that hangs
        # fails here instead of passing on a quiet socket.
        await wait_until(
            lambda: (
                sum(1 for m in fuzzer.received if m[:2] == STEP2) >= replies or fuzzer.reader.done()
            ),
            "the answer to the sync step 1 that ends the batch, or a close",
            wake=fuzzer.changed,
        )
        closed_by_server = fuzzer.reader.done()
        await fuzzer.close()
        code = fuzzer.ws.protocol.close_rcvd
        if closed_by_server:
            assert code is not None and code.code in {1007, 1008, 1009, 4413}, code
        fresh = await NotesClient.connect(server.ws, room["id"], server.token("ana"))
        await fresh.wait_for(lambda: "intact" in str(fresh.text))
        await fresh.close()
    finally:
        await writer.close()
