"""Live feed connections: one registry per process, fed by one hub subscription.

The registry is the only hub listener of the ``feed`` stream in this process. Per event it
hands the same encoded bytes (one encoding per codec: JSON text for WebSockets, an SSE
message for event streams) to every connection whose filter matches: connections following
one community are indexed by it; "following" connections check their follows. A connection
that is still catching up from the database holds live events instead, and applies them
(without those it already sent) when it goes live, so nothing is missed or sent twice.
What it holds is bounded like a backlog: past the transport's bound it ends as too slow.

An event stream's ids are ``EPOCH:SEQ``: a ``Last-Event-ID`` from another database (its
epoch is not ours) resumes nothing, as ``epoch=`` on the socket.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from ..auth import Principal
from ..metrics import NOWHERE, Metrics
from ..persistence.events import StoredEvent
from ..protocol import Codec
from ..streams.history import resume_id
from ..streams.hub import Frames
from .model import FeedFilter


class Outbound(Protocol):
    """What a feed connection needs of its transport (a WebSocket or an event stream)."""

    @property
    def closed(self) -> bool: ...

    @property
    def backlog_limit(self) -> int: ...

    def send(self, data: str | bytes) -> None: ...

    async def send_wait(self, data: str | bytes) -> None: ...

    def overflow(self) -> None: ...


SSE_TYPE = "text/event-stream"


def sse_message(event: str, data: bytes, event_id: str | None) -> bytes:
    """One Server-Sent Events message: ``id:``, ``event:``, one ``data:`` line (JSON never
    holds a raw newline), and the blank line that ends it."""
    head = b"" if event_id is None else b"id: " + event_id.encode() + b"\n"
    return head + b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def _sse_decode(data: str | bytes) -> Any:
    raise ValueError("an event stream is read-only")


def sse_codec(epoch: str) -> Codec:
    """The event stream's codec for a database: ids carry its epoch."""

    def encode(frame: Any) -> bytes:
        seq = frame.get("seq")
        event_id = None if seq is None else resume_id(epoch, seq)
        return sse_message(frame["type"], orjson.dumps(frame), event_id)

    return Codec(SSE_TYPE, True, encode, _sse_decode)


HEARTBEAT = b": heartbeat\n\n"


class FeedConnection:
    """One follower's socket or event stream."""

    def __init__(
        self, principal: Principal, filter: FeedFilter, codec: Codec, transport: Outbound
    ) -> None:
        self.principal = principal
        self.filter = filter
        self.codec = codec
        self.transport = transport
        self.last_seq = 0  # the newest seq this connection is past (sent or filtered out)
        self.held: list[tuple[StoredEvent, Frames]] | None = []  # live events while catching up
        self.held_bytes = 0
        self.follow_changes: list[tuple[str, str, bool]] | None = None  # while follows load

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    @property
    def is_sse(self) -> bool:
        return self.codec.name == SSE_TYPE

    @property
    def following(self) -> bool:
        return self.filter.community is None

    def hold(self, event: StoredEvent, frames: Frames) -> None:
        """Keep a live event until the catch-up is done; past the backlog's bound what is
        held is dropped and the connection ends as too slow (it resumes from its cursor)."""
        assert self.held is not None
        self.held.append((event, frames))
        self.held_bytes += len(frames.encoded(self.codec))
        if self.held_bytes > self.transport.backlog_limit:
            self.held = []
            self.held_bytes = 0
            self.transport.overflow()

    def send_live(self, event: StoredEvent, frames: Frames) -> None:
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            self.transport.send(frames.encoded(self.codec))

    def encode(self, frame: dict[str, Any]) -> str | bytes:
        return self.codec.encode(frame)

    def encode_welcome(self, welcome: dict[str, Any], resume_id: str) -> str | bytes:
        """For an event stream the welcome carries the id to resume from, so a browser that
        reconnects before any event arrived still resumes where it started."""
        if self.is_sse:
            return sse_message("welcome", orjson.dumps(welcome), resume_id)
        return self.codec.encode(welcome)

    def follow_changed(self, kind: str, target: str, active: bool) -> None:
        if self.follow_changes is not None:  # applied once the follows are loaded
            self.follow_changes.append((kind, target, active))
        elif self.filter.follows is not None:
            self.filter.follows.set(kind, target, active)


class FeedRegistry:
    """Every feed connection of this process; the hub's listener for the ``feed`` stream."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.catching_up: set[FeedConnection] = set()
        self.by_community: dict[str, set[FeedConnection]] = {}
        self.following: set[FeedConnection] = set()
        self.by_user: dict[str, set[FeedConnection]] = {}  # following ones, for follow changes
        self.streams: set[FeedConnection] = set()  # event streams, for heartbeats
        # For /metrics: events fanned out, deliveries, and the time the fan-out loops took
        # (bound once: an event is counted without a label lookup).
        count = metrics.counter if metrics else lambda name: NOWHERE
        self.events = count("menteo_feed_events_total")
        self.deliveries = count("menteo_feed_deliveries_total")
        self.fanout_seconds = count("menteo_feed_fanout_seconds_total")

    def add(self, conn: FeedConnection) -> None:
        """Start holding live events for ``conn`` (before its catch-up reads the database)."""
        self.catching_up.add(conn)
        if conn.following:
            self.by_user.setdefault(conn.user_id, set()).add(conn)
        if conn.is_sse:
            self.streams.add(conn)

    def go_live(self, conn: FeedConnection) -> None:
        """Send what was held (past what the catch-up sent), then deliver directly."""
        held, conn.held = conn.held or [], None
        for event, frames in held:
            if conn.filter.matches(event.data):
                conn.send_live(event, frames)
        self.catching_up.discard(conn)
        if conn.filter.community is not None:
            self.by_community.setdefault(conn.filter.community, set()).add(conn)
        else:
            self.following.add(conn)

    def remove(self, conn: FeedConnection) -> None:
        self.catching_up.discard(conn)
        self.following.discard(conn)
        self.streams.discard(conn)
        if conn.filter.community is not None:
            _discard(self.by_community, conn.filter.community, conn)
        if conn.following:
            _discard(self.by_user, conn.user_id, conn)

    # Listener ---------------------------------------------------------------------------
    def on_event(self, event: StoredEvent, frames: Frames) -> None:
        started = time.perf_counter()
        for conn in self.catching_up:
            conn.hold(event, frames)
        data = event.data
        sent = 0
        community = self.by_community.get(data.get("community_id", ""))
        if community:
            for conn in tuple(community):
                conn.send_live(event, frames)
            sent = len(community)
        for conn in tuple(self.following):
            if conn.filter.matches(data):
                conn.send_live(event, frames)
                sent += 1
        self.events.inc()
        self.deliveries.inc(sent)
        self.fanout_seconds.inc(time.perf_counter() - started)

    def on_signal(self, frames: Frames, exclude_user: str | None) -> None:
        frame = frames.frame
        if frame.get("type") != "feed.follow":
            return
        for conn in tuple(self.by_user.get(frame.get("user_id", ""), ())):
            conn.follow_changed(frame["kind"], frame["target_id"], bool(frame["active"]))


def _discard(index: dict[str, set[FeedConnection]], key: str, conn: FeedConnection) -> None:
    conns = index.get(key)
    if conns is not None:
        conns.discard(conn)
        if not conns:
            del index[key]
