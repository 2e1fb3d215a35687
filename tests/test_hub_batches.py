"""A commit batch crosses the broker as one message per stream, and arrives in seq order."""

from __future__ import annotations

from pathlib import Path

import orjson

from realtime.broker.base import Broker
from realtime.persistence.database import Database
from realtime.persistence.events import StoredEvent
from realtime.streams.hub import Frames, Hub


class Wire(Broker):
    """Two processes' brokers on one wire: what one publishes, the other receives."""

    def __init__(self) -> None:
        super().__init__()
        self.peer: Wire | None = None
        self.sent: list[tuple[str, bytes]] = []

    async def close(self) -> None:
        pass

    def publish(self, channel: str, data: bytes) -> None:
        self.sent.append((channel, data))
        if self.peer is not None:
            self.peer.on_message(channel, data)

    async def subscribe(self, channel: str) -> None:
        pass

    async def unsubscribe(self, channel: str) -> None:
        pass

    async def ping(self) -> None:
        pass


class Seen:
    def __init__(self) -> None:
        self.seqs: list[tuple[str, int]] = []

    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        self.seqs.append((event.stream, event.seq))

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        pass


def _event(stream: str, seq: int) -> StoredEvent:
    return StoredEvent(stream, seq, "chat.message", "ana", "Ana", f"c{seq}", {"body": "x"}, "t")


async def test_one_message_per_stream_per_commit(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/hub.db")
    await db.prepare(auto_migrate=True)
    a, b = Wire(), Wire()
    a.peer = b
    hub_a, hub_b = Hub(db, a), Hub(db, b)
    await hub_a.start()
    await hub_b.start()
    seen = Seen()
    try:
        async with hub_b.subscribe("r1", seen), hub_b.subscribe("r2", seen):
            batch = [_event("r1", 1), _event("r2", 1), _event("r1", 2), _event("r1", 3)]
            hub_a.committed(batch)
            assert len(a.sent) == 2  # r1's three events in one message, r2's in another
            assert len(orjson.loads(a.sent[0][1])["es"]) == 3
            assert "e" in orjson.loads(a.sent[1][1])
            assert seen.seqs == [("r1", 1), ("r1", 2), ("r1", 3), ("r2", 1)]
            assert hub_b.filled == 0  # no hole: nothing was read from the database
    finally:
        await hub_a.close()
        await hub_b.close()
        await db.close()
