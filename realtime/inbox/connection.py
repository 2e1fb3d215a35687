"""One inbox socket: where a user's room summaries go once its welcome is sent."""

from __future__ import annotations

from typing import Any

from ..auth import Principal
from ..protocol import Codec
from ..sockets.clock import WARN_BEFORE, TokenClock
from ..sockets.transport import Transport


class InboxConnection:
    __slots__ = ("clock", "codec", "live", "principal", "transport")

    def __init__(
        self,
        principal: Principal,
        codec: Codec,
        transport: Transport,
        warn_before: float = WARN_BEFORE,  # MENTEO_AUTH_EXPIRING_BEFORE, as on the room socket
    ) -> None:
        self.principal = principal
        self.codec = codec
        self.transport = transport
        self.live = False  # set once the welcome is sent: updates go out from then on
        self.clock = TokenClock(transport, self.send_frame, warn_before)

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.transport.send(self.codec.encode(frame))
