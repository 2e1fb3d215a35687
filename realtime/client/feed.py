"""The community feed, live: over the feed socket (``FeedSocket``) or the event stream
(``FeedStream``), the same events either way, each ``seq`` (the feed's cursor) once and in
order across reconnects. Follow ``community=ID`` or ``following=True``; ``since``: the
cursor of a REST page already read (docs/protocol.md, "Cursors and pages")."""

from __future__ import annotations

from typing import Any

from ..protocol import Close
from .connection import Reconnecting
from .events import Frame
from .rest import request
from .socket import SocketClient
from .sse import EventStreamClient
from .transport import QueryValue, SocketTarget, socket_target

FEED_CLOSE = 4400  # the query names no feed


class _Feed(Reconnecting):
    """What both transports share: what to follow and where to resume."""

    fatal_closes = frozenset({Close.UNAUTHORIZED, Close.FORBIDDEN, Close.NOT_FOUND, FEED_CLOSE})

    def __init__(
        self,
        url: str,
        *,
        community: str | None = None,
        following: bool = False,
        since: int | None = None,
        **kw: Any,
    ) -> None:
        if (community is None) == (not following):
            raise TypeError("follow either a community or following=True")
        super().__init__(url, **kw)
        self.community, self.following = community, following
        self.last_seq = since

    @property
    def cursor(self) -> int | None:
        """The newest feed event seen (or the welcome's cursor): where a resume starts."""
        return self.last_seq

    async def page(self, *, before: int | None = None, limit: int | None = None) -> Any:
        """A REST page of posts, newest first (``GET /api/feed``; needs httpx): open with
        ``since=page["cursor"]`` to miss nothing after it."""
        params = {**self._feed_query(), "before": before, "limit": limit}
        return await request(self.base_url, self.tokens, "GET", "api/feed", params=params)

    def _feed_query(self) -> dict[str, QueryValue]:
        return {"community": self.community} if self.community else {"following": "1"}

    def _welcomed(self, frame: Frame) -> None:
        if not frame.get("recovered"):  # live from the welcome's cursor on
            cursor = frame.get("cursor")
            self.last_seq = cursor if isinstance(cursor, int) else None


class FeedSocket(_Feed, SocketClient):
    """``async with FeedSocket(url, token=T, community=C) as feed: async for event in
    feed.events("feed.post"): …``"""

    name = "feed socket"

    def _target(self, token: str) -> SocketTarget:
        query = self._feed_query()
        if self.last_seq is not None:
            query |= {"since": self.last_seq, "epoch": self.epoch}
        return socket_target(self.base_url, "feed/ws", token, query)


class FeedStream(_Feed, EventStreamClient):
    """The same over Server-Sent Events (``GET /feed/stream``)."""

    name = "event stream"

    def _request(self, token: str) -> tuple[str, dict[str, str], dict[str, str]]:
        params = {k: str(v) for k, v in self._feed_query().items() if v is not None}
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if self.last_seq is not None:
            if self.epoch is not None:
                headers["Last-Event-ID"] = f"{self.epoch}:{self.last_seq}"
            else:
                params["since"] = str(self.last_seq)
        return "feed/stream", params, headers
