"""Uvicorn's sans-I/O WebSocket protocol, leaner for a server that fans out to idle sockets.

Passed to Uvicorn as ``ws=`` (see ``cli.uvicorn_options``). Two changes, both invisible to an
ASGI app that does not look for them:

- **Direct writes.** The scope's ``menteo.direct_send`` extension is the protocol itself: its
  ``write_wire`` puts ready WebSocket frame bytes on the transport, without the ASGI send
  coroutine, the message dict and websockets' ``Frame`` per recipient. Server frames are
  unmasked, so the bytes a hub builds once per event are right for every socket. It refuses
  (returns False) whenever Uvicorn's own ``send`` would wait or fail, and the caller then
  takes the ASGI path, which keeps backpressure and close semantics exactly as they are.
- **Oversized handshakes are answered** (Uvicorn before 0.55 only). websockets' parser
  queues a 414 or 431 for a request line or headers over its limits (8 KiB, 128 headers);
  Uvicorn 0.55 writes it (``handle_handshake_exception``), older ones never did and the
  connection hung, so for them it is written here and the connection closed.
- **Closes that do not wait on the peer.** ``close_now`` queues the close frame even when
  the transport is full and aborts the connection if it has not closed ``linger`` seconds
  later; ``abort`` drops it at once. Uvicorn's own closes (a missed pong included) are
  graceful only: they wait for the write buffer to drain to a peer that may never read, and
  until then no disconnect reaches the app.
- **Closes spread over time.** ``restart`` closes a socket with 1012 exactly as Uvicorn's
  shutdown does; ``open_sockets`` lists those a stopping process still holds, so it can
  close them a batch at a time (``drain.py``) rather than all at once.
- **Less state per idle socket.** No ``asyncio.Queue`` (three deques and an ``Event``) or
  ``asyncio.Event`` (a deque) per connection, and the handshake's request and response are
  dropped once the socket is accepted.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from .transport import DIRECT_SEND, Handoff

__all__ = ["MenteoWebSocketProtocol", "open_sockets"]

# The servers of this process (one, but for tests running several): each knows its
# connections (Uvicorn's ``ServerState``).
_SERVERS: weakref.WeakSet[Any] = weakref.WeakSet()


class _Waiters:
    """Futures parked until the next wake-up; the list exists only while someone waits."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future[None]] | None = None

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def _park(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)
        try:
            await waiter
        finally:
            if self.waiters is not None and waiter in self.waiters:
                self.waiters.remove(waiter)


class _Inbox(_Waiters):
    """What Uvicorn needs of its receive queue: ``put_nowait``, ``get`` and ``empty``."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        super().__init__()
        self.items: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)
        self._wake()

    def empty(self) -> bool:
        return not self.items

    async def get(self) -> Any:
        while not self.items:
            await self._park()
        return self.items.pop(0)


class _Writable(_Waiters):
    """What Uvicorn needs of its ``writable`` event; ``ready`` is read by ``write_wire``."""

    __slots__ = ("ready",)

    def __init__(self) -> None:
        super().__init__()
        self.ready = True

    def is_set(self) -> bool:
        return self.ready

    def set(self) -> None:
        self.ready = True
        self._wake()

    def clear(self) -> None:
        self.ready = False

    async def wait(self) -> bool:
        if not self.ready:
            await self._park()
        return True


# Uvicorn 0.55 answers a handshake websockets refused to parse; before it, we do.
ANSWERS_OVERSIZED = hasattr(WebSocketsSansIOProtocol, "handle_handshake_exception")


class MenteoWebSocketProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with ``write_wire`` and less per-connection state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Writable()  # type: ignore[assignment]
        self.handoff: Handoff | None = None  # set by a socket kind (transport.offer_handoff)
        server_state = kwargs.get("server_state")
        if server_state is not None:
            _SERVERS.add(server_state)

    if not ANSWERS_OVERSIZED:  # Uvicorn 0.52.1 to 0.54

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            conn = self.conn
            if conn.handshake_exc is not None and conn.state is State.CONNECTING:
                for chunk in conn.data_to_send():  # the refusal; b"" means end of stream
                    if chunk:
                        self.transport.write(chunk)
                self.transport.close()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        # Ready frames would skip permessage-deflate: offered only where it is off.
        if scope is not None and not self.config.ws_per_message_deflate:
            scope["extensions"][DIRECT_SEND] = self

    def start_keepalive(self) -> None:
        # Uvicorn calls this right after writing the 101: the handshake's request and
        # response are not read again (their headers are in the scope). websockets' parser
        # generator keeps the request as a local for the connection's life, so its headers
        # (~2 KiB a socket) are emptied in place as well.
        request = self.__dict__.pop("request", None)
        if isinstance(request, Request):
            request.headers.clear()
        self.__dict__.pop("response", None)
        super().start_keepalive()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(DIRECT_SEND, None)  # the scope -> self cycle
        self.handoff = None  # its closure holds the app's connection

    def accepted(self) -> bool:
        """The handshake completed with a 101 (not refused)."""
        return self.handshake_complete and self.initial_response is None

    def is_open(self) -> bool:
        """Accepted, and neither closing (by either side: a peer's close frame makes the
        state CLOSING while its reply still waits to be written) nor gone."""
        return (
            self.accepted()
            and not self.close_sent
            and not self.disconnected
            and self.conn.state is State.OPEN
        )

    def shutdown(self) -> None:
        """Uvicorn's, but a socket that is closing already only has its transport closed.
        At shutdown Uvicorn sends 1012 to every socket still listed; one whose peer's close
        frame arrived in between is CLOSING (its reply written, its app told), websockets
        refuses a second close with ``InvalidState``, and that error ended the whole process
        with status 1 at the end of a drain instead of a clean exit."""
        if self.accepted() and not self.close_sent and self.conn.state is not State.OPEN:
            self.stop_keepalive()
            self.transport.close()
            return
        super().shutdown()

    def restart(self) -> None:
        """Close with 1012 as Uvicorn's shutdown does: the app's receive ends with 1012 (a
        restart, not a clean leave) and the client reconnects at once with ``since``."""
        if self.is_open():
            self.shutdown()

    def abort(self) -> None:
        """Drop the connection now (the peer stopped reading); the app gets its disconnect."""
        self.transport.abort()

    def close_now(self, code: int, reason: str, linger: float) -> None:
        """Send a close frame without waiting for room, and abort the connection if it has
        not closed within ``linger`` seconds (a peer that reads gets every frame and the close)."""
        if self.disconnected:
            return
        if self.conn.state is State.OPEN and not self.close_sent:
            # As Uvicorn's own close: the app's receive ends with the code it sent.
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            if self.read_paused:  # the peer's close is read even if the app reads no more
                self.read_paused = False
                self.transport.resume_reading()
        self._abort_later(linger)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        if not self.disconnected:  # closed 1011 gracefully: bound the wait for the peer
            self._abort_later(self.ping_timeout or 10.0)

    def _abort_later(self, delay: float) -> None:
        if self.close_timer is not None:
            self.close_timer.cancel()
        # Uvicorn cancels this timer once the connection is lost.
        self.close_timer = self.loop.call_later(delay, self.transport.abort)

    def write_wire(self, data: bytes) -> bool:
        """Write one ready, unmasked frame if Uvicorn's ``send`` would write it at once.

        False when the transport is paused (full), or the socket is not open: the caller
        then goes through the ASGI ``send``, which waits or fails as it always has.
        """
        if (
            self.writable.ready  # type: ignore[attr-defined]
            and self.conn.state is State.OPEN
            and not self.close_sent
            and not self.disconnected
        ):
            self.transport.write(data)
            return True
        return False


def open_sockets() -> list[MenteoWebSocketProtocol]:
    """The WebSockets this process's servers hold open now."""
    return [
        c
        for state in list(_SERVERS)
        for c in list(state.connections)
        if isinstance(c, MenteoWebSocketProtocol) and c.is_open()
    ]
