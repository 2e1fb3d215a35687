"""The per-address connection cap for every process together, kept in Redis.

One hash per client address; each process holds one field in it, ``<count>:<deadline>``:
how many connections of that address it has open, and until when (Redis' clock) that
count stands. A new connection runs one Lua script: the other processes' live counts, plus
this process's own after the new one, must stay within the cap; fields past their deadline
(a process that died without closing anything) are dropped on the way. Each process
rewrites its fields every ``ttl / 3`` seconds (its heartbeat), and soon after a connection
closes, so a crashed process's slots come free within ``ttl`` (``MENTEO_PRESENCE_TTL``) and
a closed connection's slot within a moment.

The handshakes of one address that arrive while its claim is on its way wait for it, then
ask together in one script call (the highest of their counts; each is admitted if its own
count fits): a reconnect storm from one address (a NAT, a proxy, a load test) takes a
round trip per batch, not per socket, and the cap holds exactly as if each had asked alone.

While Redis cannot answer, admission falls back to this process's own count (the
per-process cap, always checked first).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from .shared_rate import TIMEOUT, RedisClient, gate

log = logging.getLogger("menteo.limits")

RETRY_AFTER = 2.0  # after a failure, the per-process count decides this long
FLUSH_DELAY = 0.05  # closed connections are written back at most this late

# KEYS[1]: the address's hash. ARGV: this process's field, its count with the new
# connections, the cap, the ttl in ms, its count with the first of them. Returns the room
# left for this process (the cap less the others' live counts); when the first fits, the
# count stored is as many as fit.
CLAIM = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local me = ARGV[1]
local total = tonumber(ARGV[2])
local held = redis.call('HGETALL', KEYS[1])
for i = 1, #held, 2 do
  if held[i] ~= me then
    local count, deadline = string.match(held[i + 1], '^(%d+):(%d+)$')
    if count == nil or tonumber(deadline) < now then
      redis.call('HDEL', KEYS[1], held[i])
    else
      total = total + tonumber(count)
    end
  end
end
local room = tonumber(ARGV[3]) - (total - tonumber(ARGV[2]))
if tonumber(ARGV[5]) > room then
  return room
end
local stored = math.min(tonumber(ARGV[2]), room)
redis.call('HSET', KEYS[1], me, stored .. ':' .. (now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return room
"""

# KEYS[1]: the address's hash. ARGV: field, count, ttl in ms: store (or drop, at 0).
PUT = """
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
"""


class SharedSlots:
    """Counts of open connections per address across processes (module docstring)."""

    def __init__(self, client: RedisClient, prefix: str, limit: int, ttl: float) -> None:
        self.client = client  # shared with the rate budgets; the composition root closes it
        self.gate = gate(client)
        self.prefix = prefix
        self.limit = limit
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.me = uuid.uuid4().hex[:12]
        self.counts: dict[str, int] = {}  # address -> this process's open connections
        self.dirty: set[str] = set()  # addresses whose count changed since written
        self.down_until = 0.0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        # address -> the claims waiting for the one on its way: (count, answer)
        self.waiting: dict[str, list[tuple[int, asyncio.Future[bool]]]] = {}
        self.asking: set[asyncio.Task[None]] = set()  # kept: a task held weakly can go
        self.round_trips = 0  # claim calls made (for tests)
        self.claim_sha = hashlib.sha1(CLAIM.encode()).hexdigest()
        self.put_sha = hashlib.sha1(PUT.encode()).hexdigest()

    def start(self) -> None:
        self.task = asyncio.create_task(self._upkeep(), name="menteo-address-slots")

    async def close(self) -> None:
        for task in [*self.asking, *([self.task] if self.task is not None else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A claim task cancelled before it first ran answered nobody: no handshake waits on.
        for waiting in self.waiting.values():
            for _, answer in waiting:
                answer.cancel()
        self.waiting.clear()
        for address in self.counts:
            self.counts[address] = 0
        self.dirty |= set(self.counts)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(TIMEOUT):
                await self._flush(list(self.dirty))  # our slots free at once, not at ttl

    async def claim(self, address: str, mine: int) -> bool:
        """Whether a connection of ``address`` may open here, where it would be this
        process's ``mine``-th: within the cap counted over every process."""
        if time.monotonic() < self.down_until:
            self.dirty.add(address)
            return True
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self.waiting.get(address)
        if waiting is not None:  # a claim of this address is on its way: go after it
            waiting.append((mine, answer))
        else:
            self.waiting[address] = [(mine, answer)]
            task = asyncio.ensure_future(self._claims(address))
            self.asking.add(task)
            task.add_done_callback(self.asking.discard)
        return await answer

    async def _claims(self, address: str) -> None:
        """Ask for ``address``'s waiting claims, one call for all, until none wait."""
        while batch := self.waiting.get(address):
            self.waiting[address] = []
            counts = [mine for mine, _ in batch]
            try:
                if time.monotonic() < self.down_until:
                    room = None
                else:
                    async with asyncio.timeout(TIMEOUT):
                        args = [self.me, max(counts), self.limit, self.ttl_ms, min(counts)]
                        self.round_trips += 1
                        room = int(await self._script(self.claim_sha, CLAIM, address, args))
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
                room = None
            except BaseException as exc:  # cancelled (stopping), or a bug: no claim hangs
                for _, answer in batch + self.waiting.pop(address, []):
                    if answer.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        answer.cancel()
                    else:
                        answer.set_exception(exc)
                raise
            if room is None:  # Redis away: this process's own count decides
                self.dirty.add(address)
            for mine, answer in batch:
                if not answer.done():  # its handshake may have gone meanwhile
                    answer.set_result(room is None or mine <= room)
        self.waiting.pop(address, None)

    def changed(self, address: str, count: int) -> None:
        """This process's count for ``address`` is now ``count`` (written back soon)."""
        if count:
            self.counts[address] = count
        else:
            self.counts.pop(address, None)
        self.dirty.add(address)
        self.wake.set()

    async def _upkeep(self) -> None:
        beat = self.ttl_ms / 3000
        next_beat = time.monotonic() + beat
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - time.monotonic())):
                    await self.wake.wait()
                    await asyncio.sleep(FLUSH_DELAY)  # gather the closes of a moment
            self.wake.clear()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + beat
                due = list(self.dirty | set(self.counts))
            else:
                due = list(self.dirty)
            if not due:
                continue
            try:
                async with asyncio.timeout(max(TIMEOUT, beat)):
                    await self._flush(due)
            except Exception as exc:  # any failure: try again at the next beat, never die
                self._failed(exc)

    async def _flush(self, addresses: list[str]) -> None:
        for address in addresses:
            self.dirty.discard(address)
            count = self.counts.get(address, 0)
            try:
                await self._script(self.put_sha, PUT, address, [self.me, count, self.ttl_ms])
            except BaseException:
                self.dirty.add(address)
                raise

    async def _script(self, sha: str, script: str, address: str, args: list[Any]) -> Any:
        key = f"{self.prefix}{{{address}}}"
        async with self.gate:
            try:
                return await self.client.evalsha(sha, 1, key, *args)
            except NoScriptError:
                return await self.client.eval(script, 1, key, *args)

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self.down_until:
            log.warning("address slots: Redis unavailable (%r); per process for now", exc)
        self.down_until = time.monotonic() + RETRY_AFTER
