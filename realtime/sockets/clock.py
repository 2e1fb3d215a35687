"""Tokens expire on open sockets too: warn ahead, accept a refresh, close 4401 at expiry
(catch-up included)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..auth import AuthError, Principal, verify_token
from ..protocol import Close, ErrorCode, FrameError, frame_id
from .transport import Transport

WARN_BEFORE = 60.0  # seconds before expiry that ``auth.expiring`` is sent, by default


def refresh(secret: str, user_id: str, frame: dict[str, Any]) -> tuple[Principal, dict[str, Any]]:
    """An ``auth.refresh`` frame: a new token for the open socket, same user, later expiry.
    The new principal and the ``auth.refreshed`` reply; the caller re-arms its clock."""
    try:
        principal = verify_token(secret, frame.get("token"))
    except AuthError as exc:
        raise FrameError(ErrorCode.INVALID, f"token refused: {exc}", frame_id(frame)) from None
    if principal.user_id != user_id:
        raise FrameError(ErrorCode.FORBIDDEN, "the token is for another user", frame_id(frame))
    reply = {"type": "auth.refreshed", "id": frame_id(frame)}
    return principal, reply | {"expires_at": iso(principal.expires_at)}


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class TokenClock:
    """One socket's token timers: ``auth.expiring`` ahead of time, then close 4401."""

    __slots__ = ("send_frame", "timers", "transport", "warn_before")

    def __init__(
        self,
        transport: Transport,
        send_frame: Callable[[dict[str, Any]], None],
        warn_before: float = WARN_BEFORE,  # MENTEO_AUTH_EXPIRING_BEFORE
    ) -> None:
        self.transport = transport
        self.send_frame = send_frame
        self.warn_before = max(0.0, warn_before)  # never past expiry: the warning arms the close
        self.timers: list[asyncio.TimerHandle] = []

    def set(self, expires_at: float) -> None:
        """(Re)arm for a token that expires at ``expires_at`` (epoch seconds). One timer at a
        time per socket: the warning arms the close (idle sockets are many; timers cost)."""
        self.cancel()
        left = expires_at - time.time()
        self.timers = [
            asyncio.get_running_loop().call_later(
                max(0.0, left - self.warn_before), self._warn, expires_at
            )
        ]

    def deadline(self, expires_at: float) -> None:
        """Arm the close alone: while a socket catches up no frame may go before its
        welcome, but its token's expiry still ends it (``set`` takes over once it is live)."""
        self.cancel()
        left = max(0.0, expires_at - time.time())
        self.timers = [asyncio.get_running_loop().call_later(left, self._expired)]

    def _warn(self, expires_at: float) -> None:
        self.send_frame({"type": "auth.expiring", "expires_at": iso(expires_at)})
        left = max(0.0, expires_at - time.time())
        self.timers = [asyncio.get_running_loop().call_later(left, self._expired)]

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers = []

    def _expired(self) -> None:
        # Whatever the socket is doing (a catch-up stuck on a peer that stopped reading too):
        # what is queued is dropped and the close goes out at once.
        self.transport.close_soon(Close.UNAUTHORIZED, "token expired", flush=False)
