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

from menteo_testkit.waits import TIMEOUT, WaitTimeout, describe, wait_until, within


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
        # What a background task raised (the reader, a send): re-raised at the test, by the
        # next wait or by close(), never lost with the task.
        self.errors: list[BaseException] = []
        self.doc.observe(self._local_change)
        self.reader = asyncio.create_task(self._read())
        self.reader.add_done_callback(self._task_done)

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
        # A refused socket (4403...) may already be closed: the first wait names the code.
        await client._send(create_sync_message(client.doc))
        return client

    def _local_change(self, event: TransactionEvent) -> None:
        if not self.applying and self.ws.state.name == "OPEN":
            task = asyncio.ensure_future(self._send(create_update_message(event.update)))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.errors.append(error)
        self.changed.set()  # a waiter looks again: and learns the reader has ended

    def raise_errors(self) -> None:
        """Re-raise what a background task of this client raised, at the caller."""
        if self.errors:
            raise self.errors[0]

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
            pass  # the socket's end, not a failure: close_code() tells how it ended

    async def wait_for(
        self, predicate: Callable[[], bool], what: str | None = None, timeout: float = TIMEOUT
    ) -> None:
        """Until ``predicate()`` holds, looked at on every message received. Fails at once
        when the reader has failed or the socket has closed first: nothing more can arrive,
        so waiting out the timeout would only hide why. A failure names ``what`` (by default
        the predicate's source) and the text held."""
        what = what or describe(predicate)

        def holds() -> bool:
            self.raise_errors()
            if predicate():
                return True
            if self.reader.done():
                raise WaitTimeout(f"the notes socket closed ({self._ended()}) before: {what}")
            return False

        await wait_until(holds, what, timeout, wake=self.changed, state=self._state)

    async def wait_synced(self, timeout: float = TIMEOUT) -> None:
        """Until the server has answered this client's sync step 1 (the document is in)."""
        await self.wait_for(self.synced.is_set, "the server's sync step 2", timeout)

    def _ended(self) -> str:
        received = self.ws.protocol.close_rcvd
        return f"close code {received.code}" if received is not None else "no close frame"

    def _state(self) -> str:
        text = str(self.text)
        return text if len(text) <= 120 else f"{text[:60]}...{text[-60:]} ({len(text)} chars)"

    def others(self) -> dict[int, dict[str, Any]]:
        """The awareness states received, by Yjs client id (this client's own left out)."""
        return {i: s for i, s in self.awareness.states.items() if i != self.doc.client_id}

    async def close_code(self, timeout: float = TIMEOUT) -> int | None:
        await within(self.ws.wait_closed(), "the server to close the notes socket", timeout)
        received = self.ws.protocol.close_rcvd
        return received.code if received is not None else None

    async def close(self) -> None:
        """Close the socket and end the reader with it; what the reader or a send raised is
        raised here (conftest closes every client after each test: a failure there is the
        test's)."""
        await self.ws.close()
        try:
            await within(asyncio.shield(self.reader), "the notes reader to end after close")
        except BaseException:
            self.reader.cancel()
            raise
        self.raise_errors()


async def converged(clients: list[NotesClient], timeout: float = 15) -> str:
    """Wait until every client holds the same text (waking on any client's change)."""
    what = f"{len(clients)} notes clients to hold the same text"

    def texts() -> list[str]:
        return [c._state() for c in clients]

    async def same() -> bool:
        for c in clients:
            c.raise_errors()
        if len({str(c.text) for c in clients}) == 1:
            return True
        for c in clients:
            c.changed.clear()
        waits = [asyncio.ensure_future(c.changed.wait()) for c in clients]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return False

    await wait_until(same, what, timeout, state=texts, every=0)
    return str(clients[0].text)
