"""Uvicorn's HTTP protocol, with a way for the app to drop a connection at once.

An event stream is an HTTP response that never ends. When its reader stops reading, the
ways Uvicorn ends a response the app gives up on all wait for the write buffer to drain to
that very peer, so the connection (and its file descriptor) would stay forever. The scope's
``menteo.abort`` extension (``sockets.transport.ABORT``) aborts the transport instead.
Passed to Uvicorn as ``http=`` (see ``cli.uvicorn_options``); the parser is Uvicorn's choice
(httptools when installed, else h11).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .transport import ABORT

__all__ = ["MenteoHTTPProtocol"]


class MenteoHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """The server's HTTP protocol; every HTTP scope it passes on has ``menteo.abort``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app: Any = vars(self)["app"]  # set by the parser's protocol
        self.app = self._with_abort
        self._abort_timer: asyncio.TimerHandle | None = None

    async def _with_abort(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self._cancel_timer()  # a new request: the peer reads
            scope.setdefault("extensions", {})[ABORT] = self.abort
        await self._inner_app(scope, receive, send)

    def abort(self, delay: float = 0.0) -> None:
        """Drop the connection now, or ``delay`` seconds from now if it is still open then
        (an ended response that may still wait on a peer that stopped reading)."""
        self._cancel_timer()
        if delay > 0:
            self._abort_timer = asyncio.get_running_loop().call_later(delay, self.abort)
        else:
            self.transport.abort()  # a closing transport too: its close waits on the peer

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
