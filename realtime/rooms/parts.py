"""What the room socket is given by the composition root (app.py): the parts it uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..access.service import Access
from ..config import Settings
from ..metrics import Metrics
from ..persistence.database import Database
from ..presence import Presence
from ..reads.digest import Windows
from ..reads.markers import MarkerStore
from ..sockets.admission import Door, Rules
from ..sockets.limits import LRU, TokenBucket
from ..sockets.membership import Grant
from ..sockets.shared_rate import SharedRate
from ..streams.hub import Hub
from ..streams.writer import Writer
from .welcomes import WelcomeReads


@dataclass(slots=True)
class RoomParts:
    door: Door
    rules: Rules[Grant]  # the handshake: the room in the path, and membership
    settings: Settings
    db: Database
    hub: Hub
    writer: Writer
    presence: Presence
    metrics: Metrics
    access: Access  # live members, archive flag; what removals and revocations close
    markers: MarkerStore  # where ``read`` frames go
    windows: Windows  # what a room's events since a marker say (the welcome's digest)
    welcomes: WelcomeReads  # the welcomes' reads, together for the joins of a turn
    # Per-user frame budgets across all of a user's sockets in this process.
    user_buckets: LRU[str, TokenBucket] = field(default_factory=lambda: LRU(100_000))
    # With Redis: the per-user budget for every process together (sockets/shared_rate.py).
    user_rates: SharedRate | None = None
