"""Loopback ports."""

from __future__ import annotations

import asyncio
import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it; a later bind may still race)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def listening(port: int, host: str = HOST) -> bool:
    """Whether something accepts connections on ``port`` now (a connect, then a close)."""
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:  # not listening yet
        return False
    writer.close()
    await writer.wait_closed()
    return True
