"""A pycrdt document synced with the server's notes socket over a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import websockets
from pycrdt import (
    Awareness,
    Doc,
    Text,
    TransactionEvent,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.asyncio.client import ClientConnection


class NotesClient:
    opened: ClassVar[list[NotesClient]] = []

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.doc = Doc()
        self.text = self.doc.get("notes", type=Text)
        self.applying = False
        self.changed = asyncio.Event()
        self.synced = asyncio.Event()
        self.received: list[bytes] = []
        # Others' cursors as a y-protocols client sees them (no timeout of its own here).
        self.awareness = Awareness(self.doc)
        self.sending: set[asyncio.Future[None]] = set()
        self.doc.observe(self._local_change)
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, base_ws: str, room_id: str, token: str, **kw: Any) -> NotesClient:
        ws = await websockets.connect(
            f"{base_ws}/rooms/{room_id}/notes?token={token}",
            compression=None,
            open_timeout=10,
            **kw,
        )
        client = cls(ws)
        cls.opened.append(client)
        await ws.send(create_sync_message(client.doc))
        return client

    def _local_change(self, event: TransactionEvent) -> None:
        if not self.applying and self.ws.state.name == "OPEN":
            task = asyncio.ensure_future(self._send(create_update_message(event.update)))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def _send(self, data: bytes) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(data)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.received.append(message)
                if message[0] == 0:
                    self.applying = True
                    try:
                        reply = handle_sync_message(message[1:], self.doc)
                    finally:
                        self.applying = False
                    if reply is not None:
                        await self._send(reply)
                    if message[1] == 1:
                        self.synced.set()
                elif message[0] == 1:
                    self.awareness.apply_awareness_update(read_message(message[1:]), "server")
                self.changed.set()
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def others(self) -> dict[int, dict[str, Any]]:
        """The awareness states received, by Yjs client id (this client's own left out)."""
        return {i: s for i, s in self.awareness.states.items() if i != self.doc.client_id}

    async def close_code(self, timeout: float = 10) -> int | None:
        async with asyncio.timeout(timeout):
            await self.ws.wait_closed()
        received = self.ws.protocol.close_rcvd
        return received.code if received is not None else None

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def converged(clients: list[NotesClient], timeout: float = 15) -> str:
    """Wait until every client holds the same text (waking on any client's change)."""
    async with asyncio.timeout(timeout):
        while len({str(c.text) for c in clients}) > 1:
            for c in clients:
                c.changed.clear()
            waits = [asyncio.ensure_future(c.changed.wait()) for c in clients]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
    return str(clients[0].text)
