"""The WebSocket transport (room and feed sockets): one connection at a time, a reader that
hands frames on as they come and a writer that sends in order, and the token refreshed on
the open socket when the server says it expires (``auth.expiring`` → ``auth.refresh``).

A client that takes the hand-off (``handoff``: the room client) is, for a moment, on two:
a stopping process sends ``reconnect`` (docs/protocol.md), the next socket opens (the
balancer sends it to a process that stays) while this one still serves, and once its
welcome came the client switches to it and closes the old one, never without a live room."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .connection import Ended, Reconnecting, log
from .events import Frame
from .transport import SocketTarget

REFRESH_ID = "auth-refresh-"  # the ids of our auth.refresh frames
MOVE_RETRY = 0.1  # seconds before a refused hand-off socket is tried again (then doubled)
MOVE_FOR = 60.0  # the longest a hand-off is tried (the server's close_in is at most 60 s)
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


@dataclass(frozen=True, slots=True)
class Moved:
    """A hand-off's next socket, welcomed: the session goes on there."""

    ws: ClientConnection
    welcome: Frame


def _close_moved(task: asyncio.Task[Moved | None]) -> None:
    """A hand-off that ended after its session did: its next socket is not used."""
    if not task.cancelled() and task.exception() is None and (moved := task.result()):
        moved.ws.transport.abort()


class SocketClient(Reconnecting):
    """A client on one WebSocket; ``connect_options`` go to ``websockets``' ``connect()``
    (``ssl``, ``proxy``, ``additional_headers``, ``ping_interval``…)."""

    handoff = False  # whether the socket is opened with ``handoff=1`` and moves on request

    def __init__(
        self, url: str, *, connect_options: Mapping[str, Any] | None = None, **kw: Any
    ) -> None:
        super().__init__(url, **kw)
        self.connect_options: dict[str, Any] = {"compression": None, **(connect_options or {})}
        self._outgoing: asyncio.Queue[Frame] | None = None  # the live socket's, else None
        self._refreshing: asyncio.Task[None] | None = None  # auth.expiring's new token
        self._moving: asyncio.Task[Moved | None] | None = None  # a hand-off's next socket
        self._moving_ended: asyncio.Future[None] | None = None  # set when it is done
        self.moves = 0  # hand-offs taken: switched to the next socket before the old closed
        self._closing: set[asyncio.Task[None]] = set()  # old sockets of hand-offs, closing

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
        opened = await self._open(token)
        if isinstance(opened, Ended):
            return opened
        ws, first = opened, None
        try:
            while True:
                ended = await self._serve(ws, first)
                if isinstance(ended, Moved):
                    moved: Moved | None = ended
                else:
                    if self._moving is not None:  # gone while the next one opens: not live
                        self._outgoing = None
                        self._down()
                        self._set_state("reconnecting", {"code": ended.code, "delay": 0.0})
                    moved = await self._moved()
                if moved is None:
                    assert isinstance(ended, Ended)
                    return ended
                self.moves += 1
                self._outgoing = None  # until the next socket's reader takes over
                self._down()  # what the old socket did not ack goes again on the next
                self._close_later(ws)
                ws, first = moved.ws, moved.welcome
        finally:
            self._outgoing = None
            if self._refreshing is not None:  # the next socket opens with a fresh token
                self._refreshing.cancel()
                self._refreshing = None
            if self._moving is not None:
                self._moving.add_done_callback(_close_moved)  # its next socket too
                self._moving.cancel()
                self._moving = None
            self._down()
            await ws.close()

    def _close_later(self, ws: ClientConnection) -> None:
        """Close the old socket of a hand-off (1000) without holding up the next one."""
        task = asyncio.create_task(ws.close(), name=f"menteo-{self.name}-close-old")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _open(self, token: str) -> ClientConnection | Ended:
        target = self._target(token)
        try:
            async with asyncio.timeout(self.welcome_timeout):
                return await connect(
                    target.url,
                    subprotocols=[Subprotocol(p) for p in target.subprotocols],
                    **self.connect_options,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            return Ended(status, f"HTTP {status} at the handshake", fatal=refused_status(status))
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return Ended(None, f"cannot connect: {exc!r}")

    async def _serve(self, ws: ClientConnection, first: Frame | None = None) -> Ended | Moved:
        """Read until the socket ends or a hand-off's next socket is welcomed, writing
        meanwhile; the reader and the writer end together. ``first``: the welcome, when
        a hand-off already read it."""
        outgoing: asyncio.Queue[Frame] = asyncio.Queue()
        reader = asyncio.create_task(self._read(ws, outgoing, first))
        writer = asyncio.create_task(self._write(ws, outgoing))
        try:
            while True:
                ended = self._moving_ended = asyncio.get_running_loop().create_future()
                await asyncio.wait((reader, writer, ended), return_when=asyncio.FIRST_COMPLETED)
                if reader.done() or writer.done():
                    break
                moved = await self._moved()  # the move's task ended: welcomed, or failed
                if moved is not None:
                    return moved
        finally:
            self._moving_ended = None
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if writer.done() and not writer.cancelled() and (error := writer.exception()) is not None:
            raise error
        return reader.result()

    async def _moved(self) -> Moved | None:
        """The hand-off's next socket once it is welcomed (waited for, if the old one ended
        first), or None: no move, or it failed (the old socket's close brings the usual
        reconnect)."""
        moving = self._moving
        if moving is None:
            return None
        try:
            moved = await moving  # cancelled here: ``_session`` still sees it, and closes it
        except Exception as exc:  # a bug of ours: reconnect as after any close
            log.warning("%s: the hand-off failed: %r", self.name, exc)
            moved = None
        self._moving = None
        return moved

    def _move_ended(self, task: asyncio.Task[Moved | None]) -> None:
        ended = self._moving_ended
        if task is self._moving and ended is not None and not ended.done():
            ended.set_result(None)  # wakes ``_serve``

    async def _move(self, until: float) -> Moved | None:
        """Asked to ``reconnect``: the next socket (to a process that stays), welcomed."""
        opened = await self._open_next(until)
        if opened is None:
            return None
        try:
            async with asyncio.timeout(self.welcome_timeout):
                first = decode(await opened.recv())
        except (ConnectionClosed, TimeoutError):
            first = None
        except asyncio.CancelledError:  # the client stopped meanwhile
            opened.transport.abort()
            raise
        if first is None or first["type"] != "welcome":
            await opened.close()
            return None
        return Moved(opened, first)

    async def _open_next(self, until: float) -> ClientConnection | None:
        """A hand-off's next socket. A refused attempt (the balancer may not know yet that
        this process drains) is tried again, briefly spaced, while the old socket is still
        due to serve (``until``)."""
        for attempt in itertools.count():
            try:
                token = await self.tokens.for_connect()
            except Exception as exc:
                log.info("%s: no token for the hand-off: %r", self.name, exc)
                return None
            opened = await self._open(token)
            if not isinstance(opened, Ended):
                return opened
            if opened.fatal or time.monotonic() >= until:
                log.info("%s: the hand-off's socket did not open: %s", self.name, opened.reason)
                return None
            await asyncio.sleep(min(MOVE_RETRY * 2**attempt, 1.0))  # the spacing itself
        raise AssertionError("unreachable")

    async def _read(
        self, ws: ClientConnection, outgoing: asyncio.Queue[Frame], first: Frame | None = None
    ) -> Ended:
        welcomed = False
        try:
            if first is None:
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
        if kind == "reconnect":
            if self.handoff and self._moving is None:
                close_in = frame.get("close_in")
                until = time.monotonic() + (close_in if isinstance(close_in, int | float) else 0)
                move = self._move(min(until, time.monotonic() + MOVE_FOR))
                self._moving = asyncio.create_task(move, name=f"menteo-{self.name}-move")
                self._moving.add_done_callback(self._move_ended)
        elif kind == "auth.expiring":
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
