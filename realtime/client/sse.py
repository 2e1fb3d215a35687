"""The event-stream transport (Server-Sent Events, ``GET /feed/stream``): what a browser's
``EventSource`` does, resuming with ``Last-Event-ID``, with the token in the
``Authorization`` header rather than the URL. Needs ``httpx``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..protocol import Close
from .connection import Ended, Reconnecting
from .socket import refused_status

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True, slots=True)
class Message:
    id: str | None
    event: str
    data: str


class SSEParser:
    """The event-stream format, a line at a time (``id:``, ``event:``, ``data:``, comments)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []

    def line(self, line: str) -> Message | None:
        """The message a blank line completes, else None."""
        if line == "":
            message = None
            if self._data:
                message = Message(self._id, self._event, "\n".join(self._data))
            self._id, self._event, self._data = None, "message", []
            return message
        if line.startswith(":"):  # a comment: the server's heartbeat
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class EventStreamClient(Reconnecting):
    """A client on one event stream; ``http_options`` go to ``httpx.AsyncClient``
    (``verify``, ``proxy``…). ``read_timeout``: seconds without a byte (the server sends a
    heartbeat every 15 s by default) after which the stream is taken for dead."""

    def __init__(
        self,
        url: str,
        *,
        read_timeout: float = 45.0,
        http_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(url, **kw)
        self.read_timeout = read_timeout
        self.http_options = http_options or {}

    def _request(self, token: str) -> tuple[str, dict[str, str], dict[str, str]]:
        """The stream's path, query and headers for the next connection."""
        raise NotImplementedError

    async def _session(self, token: str) -> Ended:
        import httpx

        path, params, headers = self._request(token)
        timeout = httpx.Timeout(self.welcome_timeout, read=self.read_timeout)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, **self.http_options) as http,
                http.stream("GET", self.base_url + path, params=params, headers=headers) as resp,
            ):
                if resp.status_code != 200:
                    await resp.aread()
                    return _refusal(resp)
                return await self._read(resp)
        except httpx.HTTPError as exc:
            return Ended(None, f"cannot connect: {exc!r}")
        finally:
            self._down()

    async def _read(self, resp: httpx.Response) -> Ended:
        import httpx

        parser, welcomed = SSEParser(), False
        try:
            async for line in resp.aiter_lines():
                message = parser.line(line)
                if message is None:
                    continue
                frame = orjson.loads(message.data)
                if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                    continue
                if not welcomed:
                    if frame["type"] != "welcome":
                        return Ended(None, f"the first event was not a welcome: {frame!r}")
                    welcomed = True
                    await self._welcomed_frame(frame)
                elif frame["type"] == "auth.expired":  # renew, and resume where it ended
                    return Ended(Close.UNAUTHORIZED, "the token expired", welcomed=True)
                else:
                    self._frame(frame)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            return Ended(None, f"the stream broke: {exc!r}", welcomed=welcomed)
        return Ended(None, "the server ended the stream", welcomed=welcomed)


def _refusal(resp: httpx.Response) -> Ended:
    status = resp.status_code
    reason = f"HTTP {status}: {resp.text[:200]}"
    if status == 401:  # as a 4401 close: renewed once, then final
        return Ended(Close.UNAUTHORIZED, reason)
    return Ended(status, reason, fatal=refused_status(status))
