"""Ready frame bytes: the same as websockets would write, and used under Uvicorn."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from realtime.rooms.connection import RoomConnection
from realtime.sockets.transport import Transport
from realtime.sockets.wire import CORK, ws_frame
from tests.client import RoomClient
from tests.servers import Running


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_ws_frame_is_what_websockets_serializes(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
    assert ws_frame(text) == expected
    data = bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
    expected = Frame(Opcode.BINARY, data).serialize(mask=False, extensions=[])
    assert ws_frame(data) == expected


async def test_room_sockets_write_ready_frames(server: Running, room: dict[str, Any]) -> None:
    ana = await RoomClient.connect(server.ws, room["id"], server.token("ana", "Ana"))
    ben = await RoomClient.connect(server.ws, room["id"], server.token("ben", "Ben"))
    assert server.state is not None
    listeners = server.state.hub.streams[room["id"]].listeners
    conns = [c for c in listeners if isinstance(c, RoomConnection)]
    assert len(conns) == 2 and all(c.transport.direct is not None for c in conns)
    assert await ana.chat("m1", "through the direct path") == 1
    got = await ben.recv_until(lambda f: f["type"] == "chat.message")
    assert got["body"] == "through the direct path"
    await ana.close()
    await ben.close()


class FakeDirect:
    def __init__(self, ready: bool) -> None:
        self.ready = ready
        self.writes: list[bytes] = []

    def write_wire(self, data: bytes) -> bool:
        if self.ready:
            self.writes.append(data)
        return self.ready

    def close_now(self, code: int, reason: str, linger: float) -> None:
        raise AssertionError("not closed here")

    def abort(self) -> None:
        raise AssertionError("not aborted here")


async def test_a_batch_is_one_write_per_socket_in_order() -> None:
    sent: list[dict[str, Any]] = []

    async def asgi_send(message: dict[str, Any]) -> None:
        sent.append(message)

    fast, full = FakeDirect(True), FakeDirect(False)
    a = Transport(asgi_send, backlog_bytes=1 << 20, direct=fast)
    b = Transport(asgi_send, backlog_bytes=1 << 20, direct=full)
    with CORK:
        for text in ("one", "two", "three"):
            a.send(text)
            b.send(text)
        assert fast.writes == [] and sent == []  # held until the batch ends
    assert fast.writes == [ws_frame("one") + ws_frame("two") + ws_frame("three")]
    # A transport that refuses the write gets the frames through the ASGI send, in order.
    assert [m["text"] for m in sent] == ["one", "two", "three"]
    a.send("four")  # outside a batch: written at once
    assert fast.writes[-1] == ws_frame("four")


class BrokenDirect(FakeDirect):
    def __init__(self) -> None:
        super().__init__(False)

    def write_wire(self, data: bytes) -> bool:
        raise RuntimeError("transport gone")


async def test_a_failed_direct_write_is_a_lost_peer() -> None:
    async def asgi_send(message: dict[str, Any]) -> None:
        raise AssertionError("the ASGI send is not tried after a failed direct write")

    lost: list[int] = []
    t = Transport(asgi_send, backlog_bytes=1 << 20, direct=BrokenDirect())
    t.on_lost = lost.append
    t.send("one")  # raises nothing into the hub's fan-out loop
    assert t.closed and t.close_code == 1006 and lost == [1006]
    t.send("two")  # closed: dropped quietly
