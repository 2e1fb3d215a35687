"""The running server's parts, opened by the lifespan and handed to every endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .broker import Broker
from .config import Settings
from .feed.service import FeedService
from .metrics import Metrics
from .notes.document import NotesDocuments
from .persistence.database import Database
from .persistence.rooms import RoomRecord
from .presence import Presence
from .sockets.limits import LRU, TokenBucket
from .streams.hub import Hub
from .streams.writer import Writer


@dataclass(slots=True)
class State:
    settings: Settings
    db: Database
    broker: Broker
    hub: Hub
    writer: Writer
    presence: Presence
    notes: NotesDocuments
    feed: FeedService
    draining: bool = False
    # Resolved when the process is asked to stop (drain.py): event streams end then.
    stopping: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    metrics: Metrics = field(default_factory=Metrics)
    # Set when a task the whole process depends on ended (watchdog.py): /readyz says why.
    failure: str | None = None
    # How to stop the server then; the runner may give one (``serve``), else as SIGTERM.
    stop_server: Callable[[], None] | None = None
    sockets_per_ip: Counter[str] = field(default_factory=Counter)
    # Per-user frame budgets across all of a user's sockets in this process.
    user_buckets: LRU[str, TokenBucket] = field(default_factory=lambda: LRU(100_000))
    # Rooms by id, as sockets look them up on every connect (a room never changes).
    rooms: LRU[str, RoomRecord] = field(default_factory=lambda: LRU(50_000))
