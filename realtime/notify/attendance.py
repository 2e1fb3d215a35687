"""Whether a user has an inbox socket, or a feed socket or event stream, open on any process.

Every connection registers with the access registry (``Connections``), which tells this
module of each one opened or closed, by kind. One process: counted here. Several (Redis):
each process also keeps, per user, a Redis hash ``menteo:na:{user}`` with one field per
process and kind (``<kind>\\n<process id>``) whose value is the time it expires. A process
writes a field when its first such connection opens, deletes it when its last closes, and
rewrites its fields every ``ttl / 3`` seconds; a process killed with -9 stops rewriting, so
its fields lapse after ``ttl`` (``MENTEO_PRESENCE_TTL``) and stop counting. A change is
written by a task of its own, a few milliseconds after it happens: opening a socket never
waits for Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from contextlib import suppress

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from ..broker.slots import cluster_client, is_cluster
from ..faults import Faults, is_fatal

log = logging.getLogger("menteo.notify")

KINDS = ("inbox", "feed")  # the connection kinds notifications ask about


class Attendance:
    """This process's connections by user and kind."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def changed(self, kind: str, user_id: str, delta: int) -> None:
        """The registry's observer: a connection of ``kind`` opened (+1) or closed (-1)."""
        if kind not in KINDS:
            return
        key = (user_id, kind)
        count = self.counts.get(key, 0) + delta
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)
        self._dirty(key)

    def _dirty(self, key: tuple[str, str]) -> None:
        return None

    async def present(self, user_id: str, kinds: Iterable[str]) -> bool:
        return any(self.counts.get((user_id, kind), 0) > 0 for kind in kinds)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _key(user_id: str) -> str:
    return f"menteo:na:{{{user_id}}}"


class RedisAttendance(Attendance):
    def __init__(self, url: str, ttl: float, faults: Faults) -> None:
        super().__init__()
        self.client: aioredis.Redis | RedisCluster
        if is_cluster(url):
            self.client = cluster_client(url, max_connections=8)
        else:
            self.client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.ttl = ttl
        self.process = uuid.uuid4().hex[:16]
        self.faults = faults
        self.dirty: set[tuple[str, str]] = set()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _dirty(self, key: tuple[str, str]) -> None:
        self.dirty.add(key)
        self.wake.set()

    async def present(self, user_id: str, kinds: Iterable[str]) -> bool:
        if await super().present(user_id, kinds):
            return True
        fields = await self.client.hgetall(_key(user_id))
        now = time.time()
        wanted = set(kinds)
        for name, value in fields.items():
            text = name.decode() if isinstance(name, bytes) else str(name)
            kind = text.partition("\n")[0]
            if kind in wanted and float(value) > now:
                return True
        return False

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="menteo-notify-attendance")

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        with suppress(Exception):  # this process's users leave now, not after ``ttl``
            for user_id, kind in list(self.counts):
                await self.client.hdel(_key(user_id), f"{kind}\n{self.process}")
        await self.client.aclose()

    async def _run(self) -> None:
        beat = max(self.ttl / 3, 0.1)
        last = 0.0
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(beat):
                    await self.wake.wait()
            self.wake.clear()
            now = time.time()
            keys, self.dirty = self.dirty, set()
            if now - last >= beat:
                keys |= set(self.counts)
                last = now
            try:
                await self._write(keys, now)
            except Exception as exc:
                if is_fatal(exc):
                    raise
                self.dirty |= keys  # again on the next round
                self.faults.survived("notify", log, exc, "webhook attendance: Redis write failed")
                await asyncio.sleep(beat)

    async def _write(self, keys: set[tuple[str, str]], now: float) -> None:
        if not keys:
            return
        expires = now + self.ttl
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id, kind in sorted(keys):
                field = f"{kind}\n{self.process}"
                if self.counts.get((user_id, kind), 0) > 0:
                    pipe.hset(_key(user_id), field, str(expires))
                    pipe.expire(_key(user_id), int(self.ttl * 4) + 60)
                else:
                    pipe.hdel(_key(user_id), field)
            await pipe.execute()
