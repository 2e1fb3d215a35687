"""The broker interface: bytes in, bytes out, one handler per process.

A broker is a hint, not the truth: it may drop or reorder messages (Redis pub/sub does).
The hub above it orders by seq and fills holes from the database.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable

from ..faults import Faults

MessageHandler = Callable[[str, bytes], None]
ResyncHandler = Callable[[], None]

OUTBOX_MAX = 100_000  # messages waiting for Redis; past this the oldest are dropped


class Broker(ABC):
    """Channels are strings; the hub subscribes each channel once per process."""

    def __init__(self) -> None:
        self.on_message: MessageHandler = lambda channel, data: None
        # Called after the broker lost messages for a while (e.g. Redis reconnected):
        # the hub then reads what it missed from the database.
        self.on_resync: ResyncHandler = lambda: None
        # Errors one message caused that the reader survived (the app shares its own).
        self.faults = Faults()
        # Reconnects and drops are counted here (the app shares its own).
        self.metrics = self.faults.metrics

    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        self.on_message = on_message
        self.on_resync = on_resync

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def publish(self, channel: str, data: bytes) -> None:
        """Send without waiting; a message that cannot be sent is dropped (the DB has it)."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Return once messages published from now on will be handed to ``on_message``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the broker is not reachable (for /readyz)."""

    def degraded(self) -> bool:
        """True while messages may be lost or late (the connection is down, or a publish has
        waited too long): the hub then reads its streams from the database often instead."""
        return False

    @property
    def shared(self) -> bool:
        """True when other processes see what this one publishes."""
        return True


class QueuedBroker(Broker):
    """A broker whose publishes wait in one bounded outbox for a writer task of its own
    (Redis and Redis Cluster): ``publish`` never blocks the live path."""

    def __init__(self) -> None:
        super().__init__()
        self.outbox: deque[tuple[str, bytes]] = deque(maxlen=OUTBOX_MAX)
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()  # set while the outbox is empty
        self.idle.set()
        self.tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    def publish(self, channel: str, data: bytes) -> None:
        if len(self.outbox) == self.outbox.maxlen:
            self.metrics.inc("menteo_broker_dropped_total")
        self.outbox.append((channel, data))
        self.idle.clear()
        self.wake.set()
