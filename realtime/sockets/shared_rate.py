"""Rate budgets that hold across every process, kept in Redis (one Redis or a cluster).

One token bucket per key (a user) in Redis, refilled by a Lua script from Redis' own clock,
so every process takes from the same budget. A process does not ask Redis for every frame:
it takes a *lease* of a few tokens at once (``LEASE_SECONDS`` of the rate, at least one)
and spends it locally, so an admitted frame costs at most one round trip per lease. A
lease not spent within ``LEASE_TTL`` is dropped (its tokens are lost, never handed out
twice): the process's sockets together never admit more than Redis granted them.

While Redis cannot answer (an error, or no answer within ``TIMEOUT``), each process falls
back to its own bucket per key for ``RETRY_AFTER`` seconds (the per-process limit, as
without Redis), then asks Redis again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import weakref
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from ..broker.slots import cluster_client, is_cluster
from .limits import LRU, TokenBucket

log = logging.getLogger("menteo.limits")

LEASE_SECONDS = 0.1  # a lease is this much of the rate (at least one token, at most burst)
LEASE_TTL = 1.0  # a lease older than this is dropped unspent
TIMEOUT = 0.5  # a Redis answer slower than this: the per-process bucket decides
RETRY_AFTER = 2.0  # after a failure, the per-process buckets decide this long
KEYS_KEPT = 100_000  # leases and fallback buckets kept per budget (least recently used go)
# Connections of the budgets' and address slots' client. A join storm asks for an address
# slot per handshake and a lease per user's first frame: several hundred at once.
POOL = 64

# KEYS[1]: the bucket (a hash: t tokens, s stamp in ms). ARGV: rate/s, burst, tokens wanted.
# Returns {granted, tokens left (as text)}. The key expires once the bucket would be full.
LEASE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(held[1])
local stamp = tonumber(held[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate / 1000)
local granted = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {granted, tostring(tokens)}
"""


class _Lease:
    __slots__ = ("expires", "tokens")

    def __init__(self, tokens: int, expires: float) -> None:
        self.tokens = tokens
        self.expires = expires


RedisClient = aioredis.Redis | RedisCluster


def redis_client(url: str) -> RedisClient:
    """A client for the budgets and the address slots: one Redis or a cluster, from
    ``MENTEO_REDIS_URL``. On one Redis a call past the pool waits for a connection (within
    its caller's ``TIMEOUT``) instead of failing at once with ``MaxConnectionsError``, which
    sent every join storm to the per-process fallback; for a cluster see ``gate``."""
    if is_cluster(url):
        return cluster_client(url, max_connections=POOL)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL,
        timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes it


_GATES: weakref.WeakKeyDictionary[RedisCluster, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def gate(client: RedisClient) -> AbstractAsyncContextManager[Any]:
    """What a user of ``client`` holds around each call: redis-py's cluster pools raise past
    their size rather than wait, so one semaphore per client, shared by all its users (the
    budgets, the address slots), keeps the calls in flight within the pool; one Redis's
    blocking pool waits by itself."""
    if isinstance(client, RedisCluster):
        if client not in _GATES:
            _GATES[client] = asyncio.Semaphore(POOL)
        return _GATES[client]
    return nullcontext()


class SharedRate:
    """``rate`` tokens a second per key, at most ``burst`` in a row, for all processes
    together; ``prefix`` names the budget in Redis (it carries the database's epoch, so
    deployments sharing one Redis never share budgets)."""

    def __init__(
        self, client: aioredis.Redis | RedisCluster, prefix: str, rate: float, burst: int
    ) -> None:
        self.client = client  # shared by the budgets; the composition root closes it
        self.gate = gate(client)
        self.prefix = prefix
        self.rate = rate
        self.burst = max(1, burst)
        self.lease_size = max(1, min(self.burst, math.ceil(rate * LEASE_SECONDS)))
        self.leases: LRU[str, _Lease] = LRU(KEYS_KEPT)
        self.local: LRU[str, TokenBucket] = LRU(KEYS_KEPT)
        self.down_until = 0.0
        self.sha = hashlib.sha1(LEASE.encode()).hexdigest()
        self.round_trips = 0  # leases asked of Redis (for tests and metrics)
        self.fallbacks = 0  # decisions taken by the per-process bucket

    def take_now(self, key: str) -> bool | None:
        """Decide without waiting when this process can: True/False from a lease or (Redis
        away) the per-process bucket; None when a lease must be asked for (``take``)."""
        now = time.monotonic()
        lease = self.leases.get(key)
        if lease is not None and lease.tokens > 0 and lease.expires > now:
            lease.tokens -= 1
            return True
        if now < self.down_until:
            return self._fallback(key)
        return None

    async def take(self, key: str) -> bool:
        """One token for ``key``: from a lease, else one round trip for a new lease."""
        return await self.take_or_wait(key) is None

    async def take_or_wait(self, key: str) -> float | None:
        """None when ``key`` got its token; otherwise the seconds until it would."""
        held = self.take_now(key)
        if held is None:
            try:
                async with asyncio.timeout(TIMEOUT):
                    granted, left = await self._lease(key)
            except (RedisError, OSError, TimeoutError) as exc:
                if time.monotonic() >= self.down_until:
                    log.warning("rate budgets: Redis unavailable (%r); per process for now", exc)
                self.down_until = time.monotonic() + RETRY_AFTER
                held = self._fallback(key)
            else:
                self.round_trips += 1
                return self._from_grant(key, granted, left)
        if held:
            return None
        bucket = self.local[key]  # refused by the per-process bucket, which holds the key
        return max(0.0, 1.0 - bucket.tokens) / self.rate

    def _from_grant(self, key: str, granted: int, left: float) -> float | None:
        """Add a grant to the key's lease, then take this caller's token from it. Callers
        that asked at once (a burst of requests, each finding no lease) each got a grant:
        kept together, none is lost, and one refused by Redis (its grant empty) still gets
        a token another's grant brought."""
        now = time.monotonic()
        lease = self.leases.get(key)
        if granted > 0:
            if lease is None or lease.expires <= now:
                lease = self.leases[key] = _Lease(0, now)
            lease.tokens += granted
            lease.expires = now + LEASE_TTL
        if lease is not None and lease.tokens > 0 and lease.expires > now:
            lease.tokens -= 1
            return None
        return max(0.0, 1.0 - left) / self.rate

    async def _lease(self, key: str) -> tuple[int, float]:
        """Up to a lease's tokens from the key's bucket in Redis: how many it granted, and
        the tokens left there."""
        name = f"{self.prefix}{{{key}}}"
        args: list[Any] = [self.rate, self.burst, self.lease_size]
        async with self.gate:
            try:
                reply = await self.client.evalsha(self.sha, 1, name, *args)
            except NoScriptError:
                reply = await self.client.eval(LEASE, 1, name, *args)
        return int(reply[0]), float(reply[1])

    def _fallback(self, key: str) -> bool:
        self.fallbacks += 1
        bucket = self.local.get(key)
        if bucket is None:
            bucket = self.local[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()
