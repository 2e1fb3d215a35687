"""What the feed's socket and event stream are given by the composition root (app.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..access.service import Access
from ..config import Settings
from ..metrics import Metrics
from ..sockets.admission import Door
from .service import FeedService


@dataclass(slots=True)
class FeedParts:
    door: Door
    settings: Settings
    metrics: Metrics
    feed: FeedService
    access: Access  # what a revocation closes

    @property
    def draining(self) -> bool:
        return self.door.shutdown.draining

    @property
    def stopping(self) -> asyncio.Future[None]:
        return self.door.shutdown.stopping
