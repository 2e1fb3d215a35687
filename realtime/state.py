"""The running server's parts, opened by the lifespan: the composition root's own bag
(app.py, api/). Endpoints below it are given the parts they use, never this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .access.service import Access
from .auth import Tokens
from .broker import Broker
from .config import Settings
from .feed.service import FeedService
from .inbox.service import InboxService
from .metrics import Metrics
from .notes.document import NotesDocuments
from .notify import Notifier
from .persistence.database import Database
from .presence import Presence
from .reads.digest import Windows
from .reads.markers import MarkerStore
from .sockets.admission import AddressSlots, Shutdown
from .sockets.shared_rate import SharedRate
from .sockets.shared_slots import SharedSlots
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
    access: Access  # live members and archive flags, revocations, the connection registry
    tokens: Tokens  # how every token is checked (secret, audience, issuer, revocations)
    markers: MarkerStore
    inbox: InboxService
    # What rooms' events since a seq say, read once for every reader's digest.
    windows: Windows = field(default_factory=Windows)
    # Draining (no new sockets), then stopping (drain.py): event streams end then.
    shutdown: Shutdown = field(default_factory=Shutdown)
    # Sockets and event streams open per client address (given to every endpoint's door).
    slots: AddressSlots | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # Set when a task the whole process depends on ended (watchdog.py): /readyz says why.
    failure: str | None = None
    # How to stop the server then; the runner may give one (``serve``), else as SIGTERM.
    stop_server: Callable[[], None] | None = None
    # Webhook notifications; None without ``MENTEO_WEBHOOK_URL``.
    notifier: Notifier | None = None
    # With Redis: the per-user room frame budget shared by every process.
    user_rates: SharedRate | None = None
    # With Redis: the per-address connection cap over every process.
    shared_slots: SharedSlots | None = None
