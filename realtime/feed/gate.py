"""What every feed connection (WebSocket or event stream) is counted against: the sockets
per address cap (checked before any token is looked at) and the open-connection gauge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..state import State


@asynccontextmanager
async def connection_slot(state: State, scope: dict[str, Any], kind: str) -> AsyncIterator[bool]:
    """Yields False when the client's address has ``max_connections_per_ip`` open already
    (the caller refuses it); otherwise holds a slot for as long as the block runs."""
    address = (scope.get("client") or ("?", 0))[0]
    if state.sockets_per_ip[address] >= state.settings.max_connections_per_ip:
        state.metrics.inc("menteo_limit_hits_total", "connections_per_ip")
        yield False
        return
    state.sockets_per_ip[address] += 1
    try:
        yield True
    finally:
        state.sockets_per_ip[address] -= 1
        if not state.sockets_per_ip[address]:
            del state.sockets_per_ip[address]


@asynccontextmanager
async def counted(state: State, kind: str) -> AsyncIterator[None]:
    """An accepted connection: counted as opened, and open while the block runs."""
    state.metrics.inc("menteo_sockets_opened_total", kind)
    state.metrics.open[kind] += 1
    try:
        yield
    finally:
        state.metrics.open[kind] -= 1
