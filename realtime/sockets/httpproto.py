"""Uvicorn's HTTP protocol, with a cap on request heads and a way to drop a connection.

- **A cap on the request head.** The httptools parser puts no bound on a request's headers
  (it buffers a header of any size until it ends), so a client could make the process hold
  megabytes per connection before the app sees anything. Here the request line and headers
  together are capped at ``max_head_bytes`` (``MENTEO_MAX_REQUEST_HEAD_BYTES``, passed as
  Uvicorn's ``h11_max_incomplete_event_size``, the same knob h11 uses, which httptools
  ignores) and at ``MAX_HEADER_LINES`` header lines. Over either the answer is 431 (414 if
  the request line alone is over), then the connection is closed. Every request goes
  through here first, WebSocket handshakes included (the upgrade happens after the head).
- **A way to drop a connection at once.** An event stream is an HTTP response that never
  ends. When its reader stops reading, the ways Uvicorn ends a response the app gives up on
  all wait for the write buffer to drain to that very peer, so the connection (and its file
  descriptor) would stay forever. The scope's ``menteo.abort`` extension
  (``sockets.transport.ABORT``) aborts the transport instead.

Passed to Uvicorn as ``http=`` (see ``cli.uvicorn_options``). The parser is httptools
(``uvicorn[standard]``, a dependency), whose callbacks tell where a head ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings
from .transport import ABORT

__all__ = ["MAX_HEADER_LINES", "HeadMeter", "MenteoHTTPProtocol"]

MAX_HEADER_LINES = 128  # as the WebSocket handshake's parser (websockets)
LINGER = 2.0  # seconds a refused request's rest may still arrive (and is dropped)
_END = b"\r\n\r\n"  # httptools (llhttp) takes CRLF only: a head ends here and nowhere else


class HeadMeter:
    """The size of the request head being received: its bytes and its lines, counted as they
    arrive (before the parser buffers them), so a head over the cap is refused early."""

    __slots__ = ("first_line", "lines", "max_bytes", "reading", "size", "tail")
    first_line: int | None

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.restart()

    def restart(self) -> None:
        """A message ended (or none began): the next bytes begin a request's head."""
        self.reading = True  # False from the head's end to the message's end
        self.size = 0  # bytes of the head so far
        self.lines = 0  # CRLFs in it so far: the request line's, then one per header line
        self.first_line = None  # the request line's length, once it ended
        self.tail = b""  # the head's last 3 bytes: a CRLF or its end may span two reads

    def feed(self, data: bytes) -> int | None:
        """Count ``data`` if a head is being read; the status to refuse it with, or None."""
        if not self.reading:
            return None
        seen = self.tail + data
        if self.first_line is None and (eol := seen.find(b"\r\n")) >= 0:
            self.first_line = self.size - len(self.tail) + eol
        end = seen.find(_END)
        if end >= 0:  # the head ends in this read: its exact size and header lines
            part = seen[: end + len(_END)]
            size = self.size + len(part) - len(self.tail)
            headers = self.lines + _crlfs(part, self.tail) - 2  # less request line and blank
            self.reading = False  # what follows is a body, a WebSocket or the next request
        else:
            self.size += len(data)
            self.lines += _crlfs(seen, self.tail)
            self.tail = seen[-3:]
            size, headers = self.size, self.lines - 1  # the lines ended after the first
        if size <= self.max_bytes and headers <= MAX_HEADER_LINES:
            return None
        line = size if self.first_line is None else self.first_line
        return 414 if line > self.max_bytes else 431


def _refusal(status: int, cap: int, server_state: Any) -> bytes:
    message = (
        f"the request line may be at most {cap} bytes"
        if status == 414
        else f"the request line and headers may be at most {cap} bytes together,"
        f" in at most {MAX_HEADER_LINES} header lines"
    )
    body = orjson.dumps({"error": {"code": "too_large", "message": message}})
    phrase = b"URI Too Long" if status == 414 else b"Request Header Fields Too Large"
    lines = [b"HTTP/1.1 %d %s" % (status, phrase)]
    lines += [name + b": " + value for name, value in server_state.default_headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body)]
    lines += [b"connection: close", b"", body]
    return b"\r\n".join(lines)


def _crlfs(seen: bytes, tail: bytes) -> int:
    """The CRLFs in ``seen`` that end past ``tail`` (those within it were counted before)."""
    return seen.count(b"\r\n") - tail.count(b"\r\n")


class MenteoHTTPProtocol(HttpToolsProtocol):
    """The server's HTTP protocol: request heads are capped, and every HTTP scope it passes
    on has ``menteo.abort``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app: Any = vars(self)["app"]  # set by the parser's protocol
        self.app = self._with_abort
        self._abort_timer: asyncio.TimerHandle | None = None
        cap = self.config.h11_max_incomplete_event_size  # None: not run by cli.uvicorn_options
        self._head = HeadMeter(Settings.max_request_head_bytes if cap is None else cap)
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        status = self._head.feed(data)
        if status is not None:
            self._refuse(status)
            return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head.reading = False  # what follows is a body or a WebSocket
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head.restart()
        super().on_message_complete()

    def _refuse(self, status: int) -> None:
        """Answer 414/431 and end the connection: the parser never sees the rest, the app
        never runs."""
        self._refused = True
        self._unset_keepalive_if_required()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is under way (pipelining): no second one
            return
        self.transport.write(_refusal(status, self._head.max_bytes, self.server_state))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing with the rest of the request unread would reset the connection, and the
        # client could lose the answer: end our side, drop what still comes, and abort if
        # the client has not closed its side within LINGER seconds.
        self.transport.write_eof()
        self.abort(delay=LINGER)

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
