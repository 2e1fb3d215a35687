"""Clients for the community feed: REST calls, a WebSocket follower, and a real SSE
follower (httpx streaming, parsing the event-stream format as a browser does)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from menteo_testkit.waits import describe, wait_event, within

TIMEOUT = 10.0


class FeedApi:
    """REST calls as one user (or the service) against one server."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"authorization": "Bearer " + token}

    async def call(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT) as http:
            return await http.request(
                method, path, json=json, headers=self.headers | (headers or {})
            )

    async def ok(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        resp = await self.call(method, path, json=json)
        assert resp.status_code == status, (resp.status_code, resp.text)
        return resp.json()

    async def community(self, name: str = "Data Engineering") -> str:
        return str((await self.ok("POST", "/api/communities", {"name": name}, 201))["id"])

    async def thread(self, community_id: str, title: str = "Learning Rust") -> str:
        body = {"title": title, "community_id": community_id}
        return str((await self.ok("POST", "/api/threads", body, 201))["id"])

    async def post(self, thread_id: str, body: str) -> dict[str, Any]:
        post: dict[str, Any] = await self.ok(
            "POST", f"/api/threads/{thread_id}/posts", {"body": body}, 201
        )
        return post

    async def comment(self, post_id: str, body: str) -> dict[str, Any]:
        comment: dict[str, Any] = await self.ok(
            "POST", f"/api/posts/{post_id}/comments", {"body": body}, 201
        )
        return comment

    async def react(self, post_id: str, kind: str, on: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok(
            "PUT" if on else "DELETE", f"/api/posts/{post_id}/reactions/{kind}"
        )
        return result

    async def follow(self, kind: str, target: str, on: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok(
            "PUT" if on else "DELETE", f"/api/follows/{kind}/{target}"
        )
        return result

    async def delete(self, post_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("DELETE", f"/api/posts/{post_id}")
        return result

    async def feed(self, query: str) -> dict[str, Any]:
        page: dict[str, Any] = await self.ok("GET", f"/api/feed?{query}")
        return page


def feed_query(
    token: str | None,
    community: str | None = None,
    following: bool = False,
    since: int | None = None,
) -> str:
    parts = []
    if token is not None:
        parts.append(f"token={token}")
    if community is not None:
        parts.append(f"community={community}")
    if following:
        parts.append("following=1")
    if since is not None:
        parts.append(f"since={since}")
    return "&".join(parts)


class FeedFollower:
    """What the two kinds of follower share: frames in arrival order."""

    welcome: dict[str, Any]
    skipped: list[dict[str, Any]]

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raise NotImplementedError

    async def recv_until(
        self,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = TIMEOUT,
        what: str | None = None,
    ) -> dict[str, Any]:
        """The first frame for which ``pred`` holds; others are kept for later calls."""
        for i, frame in enumerate(self.skipped):
            if pred(frame):
                return self.skipped.pop(i)

        async def first() -> dict[str, Any]:
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame
                self.skipped.append(frame)

        return await within(first(), f"a feed frame: {what or describe(pred)}", timeout)

    async def events_until(
        self,
        pred: Callable[[dict[str, Any]], bool],
        timeout: float = TIMEOUT,
        what: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every feed event up to and including the first for which ``pred`` holds."""
        got: list[dict[str, Any]] = []

        async def upto() -> list[dict[str, Any]]:
            while True:
                frame = self.skipped.pop(0) if self.skipped else await self.recv(timeout)
                if str(frame.get("type", "")).startswith("feed."):
                    got.append(frame)
                    if pred(frame):
                        return got

        return await within(upto(), f"feed events up to: {what or describe(pred)}", timeout)


class WSFollower(FeedFollower):
    opened: ClassVar[list[WSFollower]] = []

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome = {}
        self.skipped = []

    @classmethod
    async def connect(cls, base_ws: str, query: str, *, welcome: bool = True) -> WSFollower:
        ws = await websockets.connect(
            f"{base_ws}/feed/ws?{query}", open_timeout=TIMEOUT, compression=None
        )
        follower = cls(ws)
        cls.opened.append(follower)
        if welcome:
            follower.welcome = await follower.recv()
            assert follower.welcome["type"] == "welcome", follower.welcome
        return follower

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert isinstance(frame, dict)
        return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        async def end() -> int:
            try:
                while True:
                    await self.ws.recv()
            except websockets.ConnectionClosed as exc:
                assert exc.rcvd is not None, "closed without a close frame"
                return exc.rcvd.code

        return await within(end(), "the feed socket to close", timeout)

    async def close(self) -> None:
        await self.ws.close()


class StreamEnded(ConnectionError):
    """The event stream ended while an event was awaited; ``how`` is ``"clean"`` (the
    server ended the response) or ``"aborted"`` (the connection broke: ``error``)."""

    def __init__(self, how: str, error: BaseException | None) -> None:
        super().__init__(f"the event stream ended ({how}{f': {error!r}' if error else ''})")
        self.how = how
        self.error = error


@dataclass
class SSEMessage:
    id: str | None
    event: str
    data: str


class SSEFollower(FeedFollower):
    """An EventSource in Python: parses ``id:``, ``event:``, ``data:`` and comments, and
    keeps the last event id as a browser does (for ``Last-Event-ID`` on reconnect)."""

    opened: ClassVar[list[SSEFollower]] = []

    def __init__(self) -> None:
        self.welcome = {}
        self.skipped = []
        self.messages: asyncio.Queue[SSEMessage | None] = asyncio.Queue()
        self.comments = 0
        self.comment_seen = asyncio.Event()
        self.last_event_id: str | None = None
        self.status = 0
        self.headers: httpx.Headers = httpx.Headers()
        self.client: httpx.AsyncClient | None = None
        self.stream: contextlib.AbstractAsyncContextManager[httpx.Response] | None = None
        self.reader: asyncio.Task[None] | None = None
        # How the stream ended: None while open; "clean" (the server ended the response),
        # "aborted" (the connection broke, end_error holds why), "closed" (by close()).
        self.ended: str | None = None
        self.end_error: BaseException | None = None
        self.finished = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        base_url: str,
        query: str,
        *,
        last_event_id: str | int | None = None,
        headers: dict[str, str] | None = None,
        welcome: bool = True,
    ) -> SSEFollower:
        follower = cls()
        cls.opened.append(follower)
        extra = dict(headers or {})
        if last_event_id is not None:
            extra["last-event-id"] = str(last_event_id)
        follower.client = httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None))
        follower.stream = follower.client.stream(
            "GET", f"{base_url}/feed/stream?{query}", headers=extra
        )
        resp = await follower.stream.__aenter__()
        follower.status = resp.status_code
        follower.headers = resp.headers
        if resp.status_code != 200:
            await resp.aread()
            return follower
        follower.reader = asyncio.create_task(follower._read(resp))
        if welcome:
            follower.welcome = await follower.recv()
            assert follower.welcome["type"] == "welcome", follower.welcome
        return follower

    async def _read(self, resp: httpx.Response) -> None:
        event_id: str | None = None
        event = "message"
        data: list[str] = []
        try:
            async for line in resp.aiter_lines():
                if line == "":
                    if data:
                        if event_id is not None:
                            self.last_event_id = event_id
                        self.messages.put_nowait(SSEMessage(event_id, event, "\n".join(data)))
                    event_id, event, data = None, "message", []
                elif line.startswith(":"):
                    self.comments += 1
                    self.comment_seen.set()
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "id":
                        event_id = value
                    elif name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
            self.ended = "clean"  # the server ended the response (its last chunk came)
        except httpx.HTTPError as exc:  # the connection broke mid-response
            self.ended, self.end_error = "aborted", exc
        except asyncio.CancelledError:
            self.ended = "closed"  # by close(), on our side
            raise
        except BaseException as exc:  # a bug here: raised again by close() and message()
            self.ended, self.end_error = "failed", exc
            raise
        finally:
            self.finished.set()
            self.messages.put_nowait(None)

    async def message(self, timeout: float = TIMEOUT) -> SSEMessage:
        msg = await within(self.messages.get(), "an event on the event stream", timeout)
        if msg is None:
            self.messages.put_nowait(None)
            raise StreamEnded(self.ended or "?", self.end_error)
        return msg

    async def end(self, timeout: float = TIMEOUT) -> str:
        """Until the stream has ended; how: ``"clean"`` (the server ended the response) or
        ``"aborted"`` (the connection broke; ``end_error`` says how). Events still queued
        stay readable."""
        await wait_event(self.finished, "the event stream to end", timeout)
        if self.ended == "failed":
            assert self.end_error is not None
            raise self.end_error
        assert self.ended is not None
        return self.ended

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.message(timeout)
        frame = orjson.loads(msg.data)
        assert isinstance(frame, dict)
        assert msg.event == frame["type"], (msg.event, frame)
        if "seq" in frame:  # ids are EPOCH:SEQ
            assert msg.id is not None and msg.id.endswith(f":{frame['seq']}"), (msg.id, frame)
        frame["_sse_id"] = msg.id
        return frame

    async def close(self) -> None:
        """Close from our side; what the reader raised (a bug in it, not the stream's end)
        is raised here."""
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
            self.reader = None
        if self.stream is not None:
            with contextlib.suppress(httpx.HTTPError):  # closing a broken stream says so
                await self.stream.__aexit__(None, None, None)
            self.stream = None
        if self.client is not None:
            await self.client.aclose()
            self.client = None


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [int(f["seq"]) for f in frames]


def strip(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames without the transport's own annotations, to compare across transports."""
    return [{k: v for k, v in f.items() if not k.startswith("_")} for f in frames]


async def close_all() -> None:
    """Close every follower a test opened (closing raises only what a reader raised)."""
    while WSFollower.opened:
        await WSFollower.opened.pop().close()
    while SSEFollower.opened:
        await SSEFollower.opened.pop().close()
