"""A client that stops reading: a raw TCP connection with a small receive buffer that does
the WebSocket or HTTP handshake, reads the response head, and then reads nothing more, so
the server's writes back up. Plus what a test observes of the server meanwhile."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from menteo_testkit.waits import wait_until
from tests.servers import Running

RECEIVE_BUFFER = 4096  # SO_RCVBUF: the kernel keeps a few KiB for us, then the window closes


@dataclass
class Stalled:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes  # the response's status line and headers
    port: int  # our end's port: how the server knows the connection

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def on_server(self, server: Running) -> bool:
        """Whether the server still holds this connection (its protocol is still there)."""
        assert server.server is not None
        peer = ("127.0.0.1", self.port)
        return any(
            tuple(getattr(conn, "client", None) or ()) == peer
            for conn in server.server.server_state.connections
        )

    async def closed_by_server(self, timeout: float) -> None:
        """Read again, until the server's end of the connection (FIN or reset)."""
        self.writer.transport.resume_reading()
        async with asyncio.timeout(timeout):
            try:
                while await self.reader.read(1 << 16):
                    pass
            except ConnectionResetError:
                pass

    async def close_frame(self, timeout: float) -> int:
        """Read again, WebSocket frames (server frames are unmasked) until a close; its code."""
        self.writer.transport.resume_reading()
        async with asyncio.timeout(timeout):
            while True:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
                if first & 0x0F == 0x8:  # close
                    code: int = struct.unpack("!H", payload[:2])[0]
                    return code

    def close(self) -> None:
        self.writer.transport.abort()


async def stalled(server: Running, request: bytes) -> Stalled:
    """Connect with a small receive buffer, send ``request``, read the response head, stop."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=RECEIVE_BUFFER)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.transport.pause_reading()  # from here on, nothing is read
    return Stalled(reader, writer, head, sock.getsockname()[1])


def websocket_request(path: str, subprotocol: str | None = "menteo.v1.json") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for a condition on the server's state, or fail naming ``what``. The server's
    gauges and its connection set have no event to await: ``wait_until`` looks at them
    every 20 ms until the timeout (a look, not a sleep that stands in for the event)."""
    await wait_until(condition, what, timeout)
