"""The WebSocket transport (room and feed sockets): one connection at a time, a reader that
hands frames on as they come and a writer that sends in order, and the token refreshed on
the open socket when the server says it expires (``auth.expiring`` → ``auth.refresh``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .connection import Ended, Reconnecting, log
from .events import Frame
from .transport import SocketTarget

REFRESH_ID = "auth-refresh-"  # the ids of our auth.refresh frames
_refreshes = itertools.count(1)


def decode(data: str | bytes) -> Frame | None:
    """A frame: a JSON object with a string ``type``; None for anything else."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return frame if isinstance(frame, dict) and isinstance(frame.get("type"), str) else None


# HTTP answers to a handshake that trying again cannot change: no such path (a wrong URL or
# prefix), a request line or head too large. Not 403: a process that is shutting down
# refuses new sockets with it, as it refuses a foreign Origin or subprotocol, which this
# client never sends; nor 408, 429 or 5xx.
REFUSED_STATUSES = frozenset({400, 404, 405, 410, 414, 426, 431})


def refused_status(status: int) -> bool:
    return status in REFUSED_STATUSES


class SocketClient(Reconnecting):
    """A client on one WebSocket; ``connect_options`` go to ``websockets``' ``connect()``
    (``ssl``, ``proxy``, ``additional_headers``, ``ping_interval``…)."""

    def __init__(
        self, url: str, *, connect_options: Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        super().__init__(url, **kw)
        self.connect_options: dict[str, Any] = {"compression": None, **(connect_options or {})}
        self._outgoing: asyncio.Queue[Frame] | None = None  # the live socket's, else None
        self._refreshing: asyncio.Task[None] | None = None  # auth.expiring's new token

    def send(self, frame: Frame) -> bool:
        """Send a frame now, in order with the others; False (not sent) when not live.
        For what must arrive, use the room's operations: they go through the outbox."""
        if self._outgoing is None:
            return False
        self._outgoing.put_nowait(frame)
        return True

    def _target(self, token: str) -> SocketTarget:
        raise NotImplementedError

    async def _session(self, token: str) -> Ended:
        target = self._target(token)
        try:
            async with asyncio.timeout(self.welcome_timeout):
                ws = await connect(
                    target.url,
                    subprotocols=[Subprotocol(p) for p in target.subprotocols],
                    **self.connect_options,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            return Ended(status, f"HTTP {status} at the handshake", fatal=refused_status(status))
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return Ended(None, f"cannot connect: {exc!r}")
        try:
            return await self._serve(ws)
        finally:
            self._outgoing = None
            if self._refreshing is not None:  # the next socket opens with a fresh token
                self._refreshing.cancel()
                self._refreshing = None
            self._down()
            await ws.close()

    async def _serve(self, ws: ClientConnection) -> Ended:
        """Read until the socket ends, writing meanwhile; both end together."""
        outgoing: asyncio.Queue[Frame] = asyncio.Queue()
        reader = asyncio.create_task(self._read(ws, outgoing))
        writer = asyncio.create_task(self._write(ws, outgoing))
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if writer.done() and not writer.cancelled() and (error := writer.exception()) is not None:
            raise error
        return reader.result()

    async def _read(self, ws: ClientConnection, outgoing: asyncio.Queue[Frame]) -> Ended:
        welcomed = False
        try:
            async with asyncio.timeout(self.welcome_timeout):
                first = decode(await ws.recv())
            if first is None or first["type"] != "welcome":
                return Ended(None, f"the first frame was not a welcome: {first!r}")
            welcomed = True
            self._outgoing = outgoing
            await self._welcomed_frame(first)
            while True:
                frame = decode(await ws.recv())
                if frame is not None:
                    self._socket_frame(frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            reason = exc.rcvd.reason if exc.rcvd is not None else "dropped"
            return Ended(code, reason, welcomed=welcomed)
        except TimeoutError:
            return Ended(None, "no welcome in time")

    async def _write(self, ws: ClientConnection, outgoing: asyncio.Queue[Frame]) -> None:
        with contextlib.suppress(ConnectionClosed):  # the reader says how it ended
            while True:
                await ws.send(orjson.dumps(await outgoing.get()).decode())
        await asyncio.Future()  # until the reader ends

    def _socket_frame(self, frame: Frame) -> None:
        kind = frame["type"]
        if kind == "auth.expiring":
            if self.tokens.renewable and self._refreshing is None:
                task = asyncio.create_task(self._refresh(), name=f"menteo-{self.name}-refresh")
                task.add_done_callback(self._refreshed)
                self._refreshing = task
        elif kind == "error" and str(frame.get("id")).startswith(REFRESH_ID):
            # The old token stays in force; its 4401 at expiry renews once more.
            log.warning("%s: auth.refresh refused: %s", self.name, frame.get("message"))
        self._frame(frame)

    async def _refresh(self) -> None:
        """A new token from get_token, sent on the open socket (docs/protocol.md)."""
        token = await self.tokens.renew()
        self.send({"type": "auth.refresh", "id": f"{REFRESH_ID}{next(_refreshes)}", "token": token})

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning(
                "%s: token refresh failed (at expiry: renewed, reconnected): %r", self.name, exc
            )
