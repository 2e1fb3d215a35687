"""The in-process broker: one process, nothing to run. Delivery is synchronous."""

from __future__ import annotations

from .base import Broker


class MemoryBroker(Broker):
    def __init__(self) -> None:
        super().__init__()
        self.channels: set[str] = set()

    async def close(self) -> None:
        self.channels.clear()

    def publish(self, channel: str, data: bytes) -> None:
        # The hub already delivered our own events locally; with a single process there is
        # nobody else to tell.
        return None

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)

    async def ping(self) -> None:
        return None

    @property
    def shared(self) -> bool:
        return False
