"""The Python client of Menteo realtime (asyncio, on ``websockets``).

- ``RoomClient``: a room socket kept open and resumed with ``since``/``epoch`` across
  reconnects (backoff with jitter), an outbox whose client ids make every operation count
  once however often it is resent, presence and typing, read markers, checklist
  operations, token refresh through ``get_token()``, and every frame (those it does not
  know too) to handlers (``on``) and iterators (``events``).
- ``FeedSocket`` and ``FeedStream``: the community feed over the feed socket or the event
  stream, each event once and in order across reconnects.

It speaks docs/protocol.md and imports nothing of the server but ``realtime.protocol``
(an import contract in pyproject.toml). REST calls and the event stream need ``httpx``:
``pip install "menteo-realtime[client]"``.
"""

from __future__ import annotations

from .connection import Reconnecting
from .errors import ClientClosed, ClientError, FrameRefused, Overflow, Refused, TokenError
from .events import Events, Frame
from .feed import FeedSocket, FeedStream
from .outbox import Outbox, Pending, new_client_id
from .rest import ApiError
from .room import END, Checklist, RoomClient
from .tokens import TokenGetter, token_claims
from .transport import SocketTarget, backoff_delay, socket_target

__all__ = [
    "END",
    "ApiError",
    "Checklist",
    "ClientClosed",
    "ClientError",
    "Events",
    "FeedSocket",
    "FeedStream",
    "Frame",
    "FrameRefused",
    "Outbox",
    "Overflow",
    "Pending",
    "Reconnecting",
    "Refused",
    "RoomClient",
    "SocketTarget",
    "TokenError",
    "TokenGetter",
    "backoff_delay",
    "new_client_id",
    "socket_target",
    "token_claims",
]
