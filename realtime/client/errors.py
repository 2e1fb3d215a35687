"""What the client raises: a refusal of the connection, of one operation, or of a token."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Every error of ``realtime.client``."""


class Refused(ClientError):
    """The server refused the connection for good (docs/protocol.md, close codes): a close
    code such as 4403 (not a member) or 4404 (no such room), a second 4401 in a row, or an
    HTTP refusal of the handshake or event stream. Reconnecting cannot help."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"refused ({code}): {reason}" if reason else f"refused ({code})")
        self.code = code
        self.reason = reason


class FrameRefused(ClientError):
    """The server answered an operation with an ``error`` frame that retrying cannot change
    (``invalid``, ``forbidden``, ``not_found``, ``conflict``, ``archived``…): the operation
    left the outbox."""

    def __init__(self, code: str, message: str, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('type')} refused ({code}): {message}")
        self.code = code
        self.message = message
        self.frame = frame


class ClientClosed(ClientError):
    """The client was closed before the operation was acknowledged (a durable outbox still
    holds it, and the next client on that outbox sends it)."""


class Overflow(ClientError):
    """An ``events()`` iterator fell more than its ``maxsize`` frames behind: it ended after
    the frames it holds (the client itself goes on). Read what was missed over REST, or
    iterate faster."""


class TokenError(ClientError):
    """Raise it from ``get_token`` to say that no token can be had: the client stops with
    it. (Any other exception from ``get_token`` is taken as passing: the client tries
    again with backoff.)"""
