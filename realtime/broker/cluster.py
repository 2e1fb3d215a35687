"""Redis Cluster: sharded pub/sub, one subscriber connection per shard and process.

On a cluster, classic PUBLISH is broadcast to every node; SPUBLISH stays in the shard that
serves the channel's slot. Each channel is named with a hash tag (``slots.tagged``) so that
a room's messages and its presence keys share one slot, on one shard.

Per process and per master serving a subscribed channel: one subscriber connection holding
every such channel (SSUBSCRIBE a slot at a time: one command must not span slots); and per
master a small pool for publishing, one pipeline per master per batch. As with
``RedisBroker`` the broker is a hint: when a shard's connection fails (its master killed) or
the shard unsubscribes us (a failover or a slot move sends SUNSUBSCRIBE), the supervisor
reads the slot map again, subscribes the channels where they live now, then asks the hub to
resync from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from contextvars import Context

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ..faults import is_fatal
from .base import MessageHandler, QueuedBroker, ResyncHandler
from .redis import BACKOFF_MIN, PIPELINE_MAX, SUBSCRIBE_TIMEOUT
from .slots import ClusterURL, SlotMap, node_client, read_slot_map, slot_of, tagged

log = logging.getLogger("menteo.broker.cluster")

NODE_POOL = 4  # per master: the subscriber, a publishing pipeline, a ping or slot map read
STABLE = 5.0  # seconds: trouble again sooner than this doubles the wait before the next look
# A failover takes seconds: while it runs, the slot map is looked at again at least this often.
BACKOFF_MAX = 1.0


class _Shard:
    """One master's subscriber connection and the channels subscribed on it."""

    __slots__ = ("channels", "failed", "leaving", "name", "pubsub", "reader")

    def __init__(self, name: str, pubsub: PubSub) -> None:
        self.name = name
        self.pubsub = pubsub
        self.channels: set[bytes] = set()
        self.leaving: dict[bytes, int] = {}  # our SUNSUBSCRIBEs not yet answered
        self.reader: asyncio.Task[None] | None = None
        self.failed = False


class ClusterBroker(QueuedBroker):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = ClusterURL.parse(url)
        self.clients: dict[str, aioredis.Redis] = {}  # one per node address seen
        self.slots: SlotMap | None = None
        self.channels: dict[bytes, str] = {}  # subscribed: name on the cluster -> ours
        self.shards: dict[str, _Shard] = {}
        self.unreachable: set[str] = set()  # masters a publish failed on, until the next look
        self.confirm: dict[bytes, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()  # subscriptions and the slot map change in call order
        self.trouble = asyncio.Event()  # a shard failed or moved: look at the slot map again

    def degraded(self) -> bool:
        return not self.connected.is_set()

    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        await super().start(on_message, on_resync)
        self.tasks = [
            asyncio.create_task(self._supervise(), name="menteo-redis-cluster"),
            asyncio.create_task(self._publish_loop(), name="menteo-redis-publisher"),
        ]
        with suppress(TimeoutError):  # start even if the cluster is down, as RedisBroker
            await asyncio.wait_for(self.connected.wait(), 2.0)

    async def close(self) -> None:
        if self.connected.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 1.0)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task
        for name in list(self.shards):
            await self._drop(name)
        for client in self.clients.values():
            with suppress(Exception):
                await client.aclose(close_connection_pool=True)

    async def subscribe(self, channel: str) -> None:
        wire = tagged(channel).encode()
        async with self.lock:
            self.channels[wire] = channel
            node = self.slots.node_of(wire) if self.slots is not None else None
            shard = None if node is None else self.shards.get(node) or self._open(node)
            if shard is None or shard.failed:
                return  # the supervisor subscribes it once its master is back
            try:
                [fut] = await self._join(shard, [wire])
            except (RedisError, OSError, RuntimeError):
                self._fail(shard)
                return
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(fut), SUBSCRIBE_TIMEOUT)

    async def unsubscribe(self, channel: str) -> None:
        wire = tagged(channel).encode()
        async with self.lock:
            self.channels.pop(wire, None)
            for shard in self.shards.values():
                if wire in shard.channels:
                    await self._leave(shard, wire)

    async def ping(self) -> None:
        """Every master is reachable; a slot map that changed with nobody telling us (no
        subscription there, no publish) is looked at again by the supervisor."""
        slots = await self._read_slots()
        if self.slots is not None and not slots.same(self.slots):
            self.trouble.set()
        await asyncio.gather(*(self._client(*master).ping() for master in slots.masters.items()))

    # The supervisor ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff, resync, last = BACKOFF_MIN, False, -STABLE
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.trouble.clear()  # what went wrong so far, this look covers
                async with self.lock:
                    waiting = await self._refresh()
                if waiting:  # so that an event published from now on reaches us
                    await asyncio.wait(waiting, timeout=SUBSCRIBE_TIMEOUT)
                self.connected.set()
                if resync:
                    self.metrics.inc("menteo_broker_reconnects_total")
                    log.warning("redis cluster: subscribed again on %d shards", len(self.shards))
                    self._guarded(self.on_resync)  # fill from the database what went by
                resync = False
                await self.trouble.wait()
                resync = True
                # Trouble again soon after the last look: the slot map may still be stale.
                soon = loop.time() - last < STABLE
                backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX) if soon else 0.0
                last = loop.time()
                await asyncio.sleep(backoff)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                if not isinstance(exc, (RedisError, OSError)):
                    self.faults.survived("broker", log, exc, "the cluster supervisor failed")
                resync = True
                self.connected.clear()
                backoff = min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX)
                log.warning("redis cluster unreachable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)

    async def _refresh(self) -> list[asyncio.Future[None]]:
        """Read the slot map; subscribe each channel on the master serving it now, from a
        fresh connection where the old one failed. Returns the confirmations to await."""
        for name in [name for name, shard in self.shards.items() if shard.failed]:
            await self._drop(name)
        self.slots = slots = await self._read_slots()
        self.unreachable.clear()
        wanted: dict[str, list[bytes]] = {}
        failure: Exception | None = None
        for wire in self.channels:
            node = slots.node_of(wire)
            if node is None:
                failure = RedisError(f"no master serves slot {slot_of(wire)}")
            else:
                wanted.setdefault(node, []).append(wire)
        for name in [name for name in self.shards if name not in wanted]:
            await self._drop(name)
        waiting: list[asyncio.Future[None]] = []
        for name, wires in wanted.items():  # one master down leaves the others subscribed
            shard = self.shards.get(name) or self._open(name)
            try:
                for wire in shard.channels - set(wires):  # served elsewhere now
                    await self._leave(shard, wire)
                waiting += await self._join(shard, [w for w in wires if w not in shard.channels])
            except (RedisError, OSError, RuntimeError) as exc:
                shard.failed = True
                failure = exc
        if failure is not None:
            raise failure
        return waiting

    async def _read_slots(self) -> SlotMap:
        """The slot map from the first node that answers: the masters we know, then the URL's."""
        known = list(self.slots.masters.values()) if self.slots is not None else []
        failure: Exception = RedisError("no cluster node to ask")
        for address in dict.fromkeys([*known, *self.url.nodes]):
            try:
                client = self._client(f"{address[0]}:{address[1]}", address)
                return await read_slot_map(client, address)
            except (RedisError, OSError) as exc:
                failure = exc
        raise failure

    # Shards -----------------------------------------------------------------------------------

    def _client(self, name: str, address: tuple[str, int] | None = None) -> aioredis.Redis:
        client = self.clients.get(name)
        if client is None:
            if address is None:
                assert self.slots is not None
                address = self.slots.masters[name]
            client = self.clients[name] = node_client(address, self.url, pool=NODE_POOL)
        return client

    def _open(self, name: str) -> _Shard:
        shard = self.shards[name] = _Shard(name, self._client(name).pubsub())
        return shard

    async def _join(self, shard: _Shard, wires: list[bytes]) -> list[asyncio.Future[None]]:
        by_slot: dict[int, list[bytes]] = {}
        for wire in wires:
            by_slot.setdefault(slot_of(wire), []).append(wire)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for group in by_slot.values():
            for wire in group:
                futures.append(self.confirm.setdefault(wire, loop.create_future()))
            await shard.pubsub.ssubscribe(*group)
            shard.channels.update(group)
        if shard.reader is None and shard.channels:
            # A context of its own: not the request id of the socket that subscribed first.
            shard.reader = asyncio.create_task(
                self._read(shard), name=f"menteo-redis-shard-{shard.name}", context=Context()
            )
        return futures

    async def _leave(self, shard: _Shard, wire: bytes) -> None:
        shard.channels.discard(wire)
        shard.leaving[wire] = shard.leaving.get(wire, 0) + 1
        try:
            await shard.pubsub.sunsubscribe(wire)
        except (RedisError, OSError, RuntimeError):
            self._fail(shard)

    async def _drop(self, name: str) -> None:
        shard = self.shards.pop(name)
        for wire in shard.channels:
            fut = self.confirm.pop(wire, None)
            if fut is not None:
                fut.cancel()
        if shard.reader is not None:
            shard.reader.cancel()
            with suppress(asyncio.CancelledError):
                await shard.reader
        with suppress(Exception):
            await shard.pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _fail(self, shard: _Shard) -> None:
        shard.failed = True
        self.trouble.set()

    async def _read(self, shard: _Shard) -> None:
        try:
            while not shard.failed:
                message = await shard.pubsub.get_message(timeout=5.0)
                if message is not None:
                    self._guarded(self._handle, shard, message)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            if not isinstance(exc, (RedisError, OSError)):
                self.faults.survived("broker", log, exc, "a shard's subscriber failed")
            log.warning("redis cluster: lost the subscriber on %s (%s)", shard.name, exc)
            self._fail(shard)

    def _guarded(self, handler: Callable[..., None], *args: object) -> None:
        """Run one message's (or one resync's) handler: whatever it raises costs that one."""
        try:
            handler(*args)
        except BaseException as exc:
            if is_fatal(exc):
                raise
            self.faults.survived("broker", log, exc, "a broker message could not be handled")

    def _handle(self, shard: _Shard, message: dict[str, object]) -> None:
        kind, wire = message.get("type"), message.get("channel")
        assert isinstance(wire, bytes)
        if kind == "smessage":
            channel, data = self.channels.get(wire), message.get("data")
            if channel is not None and isinstance(data, bytes):
                self.on_message(channel, data)
        elif kind == "ssubscribe":
            fut = self.confirm.pop(wire, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == "sunsubscribe":
            if shard.leaving.get(wire, 0) > 0:  # ours
                shard.leaving[wire] -= 1
                if not shard.leaving[wire]:
                    del shard.leaving[wire]
            elif wire in shard.channels:  # the shard's: a failover or a slot move
                log.warning("redis cluster: %s no longer serves %r", shard.name, wire)
                self._fail(shard)

    # Publishing -------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                batch = [self.outbox.popleft() for _ in range(min(PIPELINE_MAX, len(self.outbox)))]
                try:
                    await self._send(batch)
                except BaseException as exc:
                    if is_fatal(exc):
                        raise
                    self.faults.survived("broker", log, exc, "publishing failed")
                    self.metrics.inc("menteo_broker_dropped_total", "", len(batch))
            self.idle.set()

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        """One pipeline per master, all at once; what cannot go is left to the database."""
        slots = self.slots
        by_node: dict[str, list[tuple[bytes, bytes]]] = {}
        for channel, data in batch:
            wire = tagged(channel).encode()
            node = slots.node_of(wire) if slots is not None else None
            if node is None or node in self.unreachable:
                self.metrics.inc("menteo_broker_dropped_total")
                continue
            by_node.setdefault(node, []).append((wire, data))
        if by_node:
            assert slots is not None
            sends = (
                self._send_to(node, slots.masters[node], msgs) for node, msgs in by_node.items()
            )
            await asyncio.gather(*sends)

    async def _send_to(
        self, node: str, address: tuple[str, int], messages: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            pipe = self._client(node, address).pipeline(transaction=False)
            for wire, data in messages:
                pipe.execute_command("SPUBLISH", wire, data)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            # Its master died or the slot moved: skip it until the supervisor looked again.
            self.metrics.inc("menteo_broker_dropped_total", "", len(messages))
            self.unreachable.add(node)
            self.trouble.set()
            log.warning(
                "publish on %s failed (%s): %d left to the database", node, exc, len(messages)
            )
