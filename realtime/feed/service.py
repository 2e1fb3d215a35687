"""The feed in a running process: live connections, reaction aggregation, rate limits.

One ``FeedService`` per process, opened by the lifespan. It holds the process's single hub
subscription to the ``feed`` stream for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ..config import Settings
from ..metrics import Metrics
from ..persistence.database import Database
from ..persistence.events import last_seqs
from ..protocol import Codec
from ..streams.history import Replay, resume, resume_id
from ..streams.hub import Hub
from ..streams.writer import Writer
from .limits import UserLimits
from .live import HEARTBEAT, FeedConnection, FeedRegistry, sse_codec
from .model import DELETE, FEED_STREAM, FeedFilter, Follows
from .queries import deleted_posts, get_community, load_follows, pending_reactions
from .reactions import ReactionAggregator

log = logging.getLogger("menteo.feed")

OWED_EVERY = 5.0  # seconds between looks for reaction counts a dead process owed the feed


class FilterError(Exception):
    """The query names no feed, or one that does not exist."""

    def __init__(self, status: int, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code
        self.code = code
        self.message = message


BAD_REQUEST = 4400  # the socket's query is not a feed (close code)
NOT_FOUND = 4404


class FeedService:
    def __init__(
        self,
        db: Database,
        hub: Hub,
        writer: Writer,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.settings = settings
        self.registry = FeedRegistry(metrics)
        window = settings.feed_reaction_window
        self.reactions = ReactionAggregator(writer.append, window, metrics)
        self.post_limits = UserLimits(settings.feed_post_rate_per_second, settings.feed_post_burst)
        self.comment_limits = UserLimits(
            settings.feed_comment_rate_per_second, settings.feed_comment_burst
        )
        self.reaction_limits = UserLimits(
            settings.feed_reaction_rate_per_second, settings.feed_reaction_burst
        )
        # Follows change rows and reach every process: they share the reactions' rate,
        # in a bucket of their own.
        self.follow_limits = UserLimits(
            settings.feed_reaction_rate_per_second, settings.feed_reaction_burst
        )
        self._subscription = AsyncExitStack()
        self._heartbeat: asyncio.Task[None] | None = None
        self._owed: asyncio.Task[None] | None = None
        self._sse: Codec | None = None

    @property
    def sse(self) -> Codec:
        """The event stream's codec: its ids carry this database's epoch (known once open)."""
        if self._sse is None:
            self._sse = sse_codec(self.db.epoch)
        return self._sse

    async def start(self) -> None:
        await self._subscription.enter_async_context(self.hub.subscribe(FEED_STREAM, self.registry))
        if self.settings.feed_heartbeat > 0:
            self._heartbeat = asyncio.create_task(self._beat(), name="menteo-feed-heartbeat")
        self._owed = asyncio.create_task(self._append_owed(), name="menteo-feed-owed")

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The timers this service runs for the life of the process (for the watchdog)."""
        return [t for t in (self._heartbeat, self._owed) if t is not None]

    async def flush(self) -> None:
        """Hand pending reaction counts to the writer (before it closes)."""
        await self.reactions.close()

    async def close(self) -> None:
        for task in (self._heartbeat, self._owed):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._subscription.aclose()

    async def _append_owed(self) -> None:
        """Counts acknowledged by a process that died before its ``feed.reaction`` event:
        their marks outlive it (``rows.set_reaction``); any process appends the event.
        A mark younger than two windows is still its own process's business."""
        while True:
            try:
                older = time.time() - max(2 * self.settings.feed_reaction_window, 2.0)
                async with self.db.read() as conn:
                    owed = await pending_reactions(conn, older)
                for post_id in owed:
                    self.reactions.touch(post_id)
            except Exception:
                log.warning("could not look for owed reaction counts", exc_info=True)
            await asyncio.sleep(OWED_EVERY)

    def follow_changed(self, user_id: str, kind: str, target_id: str, active: bool) -> None:
        """Tell the user's open "following" connections, on every process (best effort: a
        reconnect always reads the follows from the database)."""
        frame = {
            "type": "feed.follow",
            "user_id": user_id,
            "kind": kind,
            "target_id": target_id,
            "active": active,
        }
        self.hub.signal(FEED_STREAM, frame)

    async def resolve_filter(self, params: Mapping[str, str]) -> FeedFilter:
        """``community=ID`` or ``following=1``, exactly one."""
        community = params.get("community")
        following = params.get("following")
        if (community is None) == (following is None):
            raise FilterError(
                400, BAD_REQUEST, "invalid", "give exactly one of 'community=ID' or 'following=1'"
            )
        if following is not None:
            if following != "1":  # the documented value only (docs/protocol.md: else 4400)
                raise FilterError(400, BAD_REQUEST, "invalid", "'following' must be 1")
            return FeedFilter(follows=Follows())
        assert community is not None
        async with self.db.read() as conn:
            found = await get_community(conn, community)
        if found is None:
            raise FilterError(404, NOT_FOUND, "not_found", "no such community")
        return FeedFilter(community=community)

    @asynccontextmanager
    async def session(
        self, conn: FeedConnection, since: str | None, epoch: str | None
    ) -> AsyncIterator[None]:
        """Welcome, catch up after ``since`` (if it can be honoured), then live, until the
        block ends. Live events are held from before the database is read, so none is
        missed; the held ones the catch-up already covered are dropped by seq."""
        self.registry.add(conn)
        try:
            if conn.following:
                conn.follow_changes = []
                async with self.db.read() as db:
                    conn.filter.follows = await load_follows(db, conn.user_id)
                changes, conn.follow_changes = conn.follow_changes, None
                for change in changes:
                    conn.follow_changed(*change)
            async with self.db.read() as db:
                last = (await last_seqs(db, [FEED_STREAM])).get(FEED_STREAM, 0)
            resumed = resume(since, epoch, self.db.epoch, last)
            welcome: dict[str, Any] = {
                "type": "welcome",
                "cursor": last,
                "since": resumed.start,
                "recovered": resumed.recovered,
                "epoch": self.db.epoch,
                "filter": conn.filter.describe(),
                "you": {"user_id": conn.user_id, "name": conn.principal.name},
            }
            if conn.filter.follows is not None:
                welcome["follows"] = conn.filter.follows.as_dict()
            welcome_id = resume_id(self.db.epoch, resumed.cursor)
            await conn.transport.send_wait(conn.encode_welcome(welcome, welcome_id))
            conn.last_seq = resumed.cursor
            if resumed.recovered:
                await self._catch_up(conn)
            self.registry.go_live(conn)
            yield
        finally:
            self.registry.remove(conn)

    async def _catch_up(self, conn: FeedConnection) -> None:
        """Every matching event after ``conn.last_seq``, page by page, leaving out posts
        (and their comments and reactions) deleted since; deletions themselves are kept."""
        replay = Replay(FEED_STREAM, self.settings.replay_page)
        while not conn.transport.closed and not replay.done:
            async with self.db.read() as db:
                events = await replay.next_in(db, conn.last_seq)
                matching = [e for e in events if conn.filter.matches(e.data)]
                gone = await deleted_posts(
                    db, {str(e.data["post_id"]) for e in matching if e.type != DELETE}
                )
            for event in events:
                if event.seq <= conn.last_seq:
                    continue
                conn.last_seq = event.seq
                if not conn.filter.matches(event.data):
                    continue
                if event.type != DELETE and event.data.get("post_id") in gone:
                    continue
                if _erased_comment(event.data):
                    continue  # deleted since (its feed.comment.delete follows)
                await conn.transport.send_wait(conn.encode(event.frame()))

    async def _beat(self) -> None:
        """Comments on every event stream, so proxies do not close an idle one."""
        while True:
            await asyncio.sleep(self.settings.feed_heartbeat)
            for conn in tuple(self.registry.streams):
                conn.transport.send(HEARTBEAT)


def _erased_comment(data: Mapping[str, Any]) -> bool:
    comment = data.get("comment")
    return isinstance(comment, dict) and comment.get("deleted") is True
