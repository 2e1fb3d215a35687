"""A real WebSocket client for the room protocol (the ``websockets`` library)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import msgpack
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from menteo_testkit.waits import WaitTimeout, describe, within

TIMEOUT = 10.0


class RoomClient:
    # Every client a test opened, closed by conftest's teardown whatever the test did.
    opened: ClassVar[list[RoomClient]] = []

    def __init__(self, ws: ClientConnection, binary: bool = False) -> None:
        self.ws = ws
        self.binary = binary
        self.welcome: dict[str, Any] = {}
        self.skipped: list[dict[str, Any]] = []  # frames recv_until passed over, oldest first

    @classmethod
    async def connect(
        cls,
        base_ws: str,
        room_id: str,
        token: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        msgpack_codec: bool = False,
        origin: str | None = None,
        expect_welcome: bool = True,
        handoff: bool = False,
        **kw: Any,
    ) -> RoomClient:
        url = f"{base_ws}/rooms/{room_id}/ws?token={token}"
        if since is not None:
            url += f"&since={since}"
        if epoch is not None:
            url += f"&epoch={epoch}"
        if handoff:
            url += "&handoff=1"
        protocol = "menteo.v1.msgpack" if msgpack_codec else "menteo.v1.json"
        ws = await websockets.connect(
            url,
            subprotocols=[protocol],
            origin=origin,
            open_timeout=TIMEOUT,  # type: ignore[list-item,arg-type]
            compression=None,
            **kw,
        )
        client = cls(ws, binary=msgpack_codec)
        cls.opened.append(client)
        if expect_welcome:
            client.welcome = await client.recv()
            assert client.welcome["type"] == "welcome", client.welcome
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send(msgpack.packb(frame))
        else:
            await self.ws.send(orjson.dumps(frame).decode())

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = msgpack.unpackb(data) if self.binary else orjson.loads(data)
        assert isinstance(frame, dict)
        return frame

    async def recv_until(
        self,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = TIMEOUT,
        what: str | None = None,
    ) -> dict[str, Any]:
        """The first frame for which ``pred`` holds; others are kept for later calls. A
        timeout names ``what`` (by default the predicate's source)."""
        for i, frame in enumerate(self.skipped):
            if pred(frame):
                return self.skipped.pop(i)

        async def first() -> dict[str, Any]:
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame
                self.skipped.append(frame)

        return await within(first(), f"a room frame: {what or describe(pred)}", timeout)

    async def no_frame(
        self, pred: Callable[[dict[str, Any]], bool], seconds: float, what: str
    ) -> None:
        """Assert that no frame for which ``pred`` holds arrives for ``seconds``: the rule
        under test is a silence, so this waits the whole time on purpose. Other frames are
        kept for later calls; the socket closing fails it too."""
        try:
            found = await self.recv_until(pred, timeout=seconds, what=what)
        except WaitTimeout:
            return
        raise AssertionError(f"expected {what}; got {found}")

    async def chat(self, cid: str, body: str) -> int:
        """Send a message and return its seq from the ack."""
        await self.send({"type": "chat.send", "id": cid, "body": body})
        ack = await self.recv_until(lambda f: f["type"] in ("ack", "error") and f.get("id") == cid)
        assert ack["type"] == "ack", ack
        return int(ack["seq"])

    async def close(self) -> None:
        await self.ws.close()

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        """Read until the server closes; return the close code."""
        code = await self.ended(timeout)
        assert code is not None, "closed without a close frame"
        return code

    async def ended(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the connection ends; the close code, or None when it ended without a
        close frame (the server's process died, the network dropped)."""

        async def end() -> int | None:
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd is not None else None

        return await within(end(), "the room socket to end", timeout)


async def create_room(
    base_url: str, headers: dict[str, str], members: list[tuple[str, str, str]], title: str = "Room"
) -> dict[str, Any]:
    body = {
        "title": title,
        "members": [{"user_id": u, "name": n, "role": r} for u, n, r in members],
    }
    async with httpx.AsyncClient() as http:
        resp = await http.post(base_url + "/api/rooms", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    room: dict[str, Any] = resp.json()
    return room


async def close_code(base_ws: str, path: str, **kw: Any) -> int:
    """Open a socket that the server is expected to close right away; return the code."""
    async with websockets.connect(base_ws + path, open_timeout=TIMEOUT, **kw) as ws:

        async def closed() -> int:
            try:
                while True:
                    await ws.recv()
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None, "closed without a close frame"
                return exc.rcvd.code

        return await within(closed(), f"the server to close {path.split('?')[0]}", TIMEOUT)


async def connect_inbox(base_ws: str, token: str, *, msgpack_codec: bool = False) -> RoomClient:
    """The inbox socket (``/inbox/ws``), read with the room client's frame helpers; its
    ``welcome`` is the ``inbox.welcome`` frame."""
    protocol = "menteo.v1.msgpack" if msgpack_codec else "menteo.v1.json"
    ws = await websockets.connect(
        f"{base_ws}/inbox/ws?token={token}",
        subprotocols=[protocol],  # type: ignore[list-item]
        open_timeout=TIMEOUT,
        compression=None,
    )
    client = RoomClient(ws, binary=msgpack_codec)
    RoomClient.opened.append(client)
    client.welcome = await client.recv()
    assert client.welcome["type"] == "inbox.welcome", client.welcome
    return client
