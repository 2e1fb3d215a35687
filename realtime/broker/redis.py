"""Redis pub/sub: one subscriber connection per process, one SUBSCRIBE per stream.

Redis pub/sub is at-most-once. While Redis is away this process keeps serving its own
sockets; when it is back we resubscribe and ask the hub to read what it missed from the
database (``on_resync``). Publishing goes through one pipeline task, so a burst costs one
round trip, the pool never exceeds its size, and nothing waits on Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..faults import is_fatal
from .base import MessageHandler, QueuedBroker, ResyncHandler

log = logging.getLogger("menteo.broker.redis")

CONTROL = "menteo:control"  # always subscribed, so the connection exists with no streams
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
PIPELINE_MAX = 500
SUBSCRIBE_TIMEOUT = 2.0
STALLED_AFTER = 0.5  # a publish round trip this long: Redis is slow or unreachable


class RedisBroker(QueuedBroker):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=20, timeout=5, socket_connect_timeout=2, socket_timeout=5
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.channels: set[str] = set()
        self.confirm: dict[str, asyncio.Future[None]] = {}
        self.pubsub: PubSub | None = None
        self.lock = asyncio.Lock()  # SUBSCRIBE/UNSUBSCRIBE go out in call order
        self.publishing_since: float | None = None  # loop time the round trip in flight began

    def degraded(self) -> bool:
        if not self.connected.is_set():
            return True
        since = self.publishing_since
        return since is not None and asyncio.get_running_loop().time() - since > STALLED_AFTER

    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        await super().start(on_message, on_resync)
        self.tasks = [
            asyncio.create_task(self._read_loop(), name="menteo-redis-reader"),
            asyncio.create_task(self._publish_loop(), name="menteo-redis-publisher"),
        ]
        # Start even if Redis is down (the database is the truth); /readyz will say so.
        with suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 2.0)

    async def close(self) -> None:
        await self._flush(timeout=1.0)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        if self.pubsub is not None:
            with suppress(Exception):
                await self.pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await self.client.aclose(close_connection_pool=True)

    async def subscribe(self, channel: str) -> None:
        async with self.lock:
            self.channels.add(channel)
            if self.pubsub is None:
                return  # the reader subscribes it when Redis is back
            fut = self.confirm[channel] = asyncio.get_running_loop().create_future()
            try:
                await self.pubsub.subscribe(channel)
            except (RedisError, OSError, RuntimeError):
                # RuntimeError: uvloop's write to a connection that just closed. Either way
                # the reader reconnects and subscribes every channel in ``self.channels``.
                self.confirm.pop(channel, None)
                return
        # Wait for Redis to confirm, so an event published from now on reaches us.
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(fut), SUBSCRIBE_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        async with self.lock:
            self.channels.discard(channel)
            if self.pubsub is not None:
                with suppress(RedisError, OSError, RuntimeError):
                    await self.pubsub.unsubscribe(channel)

    async def ping(self) -> None:
        await self.client.ping()

    async def _read_loop(self) -> None:
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
        first = True
        while True:
            pubsub = self.client.pubsub()
            try:
                async with self.lock:
                    await pubsub.subscribe(CONTROL, *self.channels)
                    self.pubsub = pubsub
                self.connected.set()
                if not first:
                    self.metrics.inc("menteo_broker_reconnects_total")
                    log.warning("redis is back: resubscribed %d channels", len(self.channels))
                    self._guarded(self.on_resync)  # fill from the database what went by
                first = False
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        self._guarded(self._handle, message)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                if not isinstance(exc, (RedisError, OSError)):
                    # Not Redis going away: a bug or a client library's surprise. Count it,
                    # then reconnect as for a lost connection (the database has the events).
                    self.faults.survived("broker", log, exc, "the redis subscriber failed")
                first = False  # whatever connects next must resync
                self.connected.clear()
                self.pubsub = None
                with suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                wait = backoff.next()
                log.warning("redis subscriber lost (%s); retrying in %.1fs", exc, wait)
                await asyncio.sleep(wait)

    def _guarded(self, handler: Callable[..., None], *args: object) -> None:
        """Run one message's (or one resync's) handler: whatever it raises costs that one."""
        try:
            handler(*args)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("broker", log, exc, "a broker message could not be handled")

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        assert isinstance(channel, str)
        if kind == "message":
            data = message.get("data")
            if isinstance(data, bytes):
                self.on_message(channel, data)
        elif kind == "subscribe":
            fut = self.confirm.pop(channel, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _publish_loop(self) -> None:
        backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX)
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                batch = [self.outbox.popleft() for _ in range(min(PIPELINE_MAX, len(self.outbox)))]
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    self.publishing_since = asyncio.get_running_loop().time()
                    try:
                        await pipe.execute()
                    finally:
                        self.publishing_since = None
                    backoff.reset()
                except BaseException as exc:
                    if is_fatal(exc):
                        raise
                    if not isinstance(exc, (RedisError, OSError)):
                        self.faults.survived("broker", log, exc, "publishing failed")
                    # Dropped: stored already; other processes read it on resync or sweep.
                    self.metrics.inc("menteo_broker_dropped_total", "", len(batch))
                    log.warning(
                        "publish failed (%s): %d messages left to the database", exc, len(batch)
                    )
                    await asyncio.sleep(backoff.next())
            self.idle.set()

    async def _flush(self, timeout: float) -> None:
        """On shutdown, give what is queued a moment to go out (it is stored either way)."""
        if self.connected.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), timeout)
