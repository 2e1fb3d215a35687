"""What the inbox socket is given by the composition root (app.py): the parts it uses."""

from __future__ import annotations

from dataclasses import dataclass

from ..access.service import Access
from ..auth import Principal
from ..config import Settings
from ..metrics import Metrics
from ..sockets.admission import Door, Rules
from .service import InboxService


@dataclass(slots=True)
class InboxParts:
    door: Door
    rules: Rules[Principal]  # the handshake: a user's token (not a service's)
    settings: Settings
    inbox: InboxService
    metrics: Metrics
    access: Access  # what a revocation closes
