"""A WebSocket client cheap enough to drive a server from one core: an ``asyncio.Protocol``.

The load generator must not be the bottleneck. ``websockets``' own client costs a future, a
queue hop and a ``recv()`` await per frame (tens of microseconds with its bookkeeping);
this one parses frames straight out of ``data_received`` and hands each payload to a
callback, synchronously, and writes frames with one ``transport.write``. No tasks, no
awaits per frame.

What it does not do (not needed against our own servers on loopback): permessage-deflate,
fragmented *outgoing* frames, TLS. Incoming continuation frames are reassembled. Client
frames are masked, as RFC 6455 requires, with the all-zero key: XOR with zero leaves the
payload as it is, so masking costs the client nothing; the server still does its unmasking
work, the same for every server measured.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import Any

MASK = b"\x00\x00\x00\x00"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

OnMessage = Callable[["WSClient", bytes], None]


class HandshakeError(RuntimeError):
    pass


def frame_header(opcode: int, length: int) -> bytes:
    b0 = 0x80 | opcode
    if length < 126:
        return bytes((b0, 0x80 | length)) + MASK
    if length < 65536:
        return bytes((b0, 0x80 | 126)) + length.to_bytes(2, "big") + MASK
    return bytes((b0, 0x80 | 127)) + length.to_bytes(8, "big") + MASK


class WSClient(asyncio.Protocol):
    """One WebSocket. ``on_message(client, payload)`` runs for every text/binary message."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_message: OnMessage,
        *,
        subprotocol: str | None = None,
        user: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.on_message = on_message
        self.subprotocol = subprotocol
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.close_code: int | None = None
        self._buf = bytearray()
        self._frag: bytearray | None = None
        self.user = user  # whatever the load generator attaches (its member record)

    # Opening -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {self.subprotocol}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _handshake(self, data: bytes) -> bytes | None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > 16384:
                self._fail(HandshakeError("handshake response too long"))
            return None
        head = bytes(self._buf[:end])
        rest = bytes(self._buf[end + 4 :])
        self._buf = bytearray()
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self._fail(HandshakeError(status.decode(errors="replace")))
            return None
        self.is_open = True
        if not self.opened.done():
            self.opened.set_result(None)
        return rest

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # Receiving -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self.is_open:
            rest = self._handshake(data)
            if not rest:
                return
            data = rest
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf = bytearray()
        n = len(data)
        pos = 0
        on_message = self.on_message
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > n:
                break
            payload = data[pos + head : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                if b0 & 0x80:
                    on_message(self, payload)
                else:
                    self._frag = bytearray(payload)
            elif opcode == OP_CONT:
                if self._frag is not None:
                    self._frag += payload
                    if b0 & 0x80:
                        whole, self._frag = bytes(self._frag), None
                        on_message(self, whole)
            elif opcode == OP_PING:
                self.write_frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._closed_by_peer(code)
                return
        if pos < n:
            self._buf = bytearray(data[pos:])

    def _closed_by_peer(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(frame_header(OP_CLOSE, 2) + code.to_bytes(2, "big"))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if self.close_code is None:
            self.close_code = 1006
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # Sending -------------------------------------------------------------------------
    def write_frame(self, opcode: int, payload: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(frame_header(opcode, len(payload)) + payload)

    def send_text(self, payload: bytes) -> None:
        t = self.transport
        if t is not None and self.close_code is None:
            n = len(payload)
            if n < 126:
                t.write(bytes((0x81, 0x80 | n)) + MASK + payload)
            else:
                t.write(frame_header(OP_TEXT, n) + payload)

    def close(self, code: int = 1000) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            if self.close_code is None:
                self.close_code = code
                t.write(frame_header(OP_CLOSE, 2) + code.to_bytes(2, "big"))
            t.close()


async def connect(
    host: str,
    port: int,
    path: str,
    on_message: OnMessage,
    *,
    subprotocol: str | None = None,
    timeout: float = 30.0,
    user: Any = None,
    local_host: str | None = None,
) -> WSClient:
    """``local_host``: the source address (its port the kernel's): one address has about
    28,000 ephemeral ports, so many sockets spread over 127.0.0.2, 127.0.0.3, ..."""
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(
        loop.create_connection(
            lambda: WSClient(host, port, path, on_message, subprotocol=subprotocol, user=user),
            host,
            port,
            local_addr=(local_host, 0) if local_host else None,
        ),
        timeout,
    )
    await asyncio.wait_for(proto.opened, timeout)
    return proto
