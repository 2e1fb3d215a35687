"""Presence across processes, in Redis.

Per room, a hash maps each socket to its user and a sorted set holds each socket's expiry.
A live socket's expiry is pushed forward by its process's heartbeat; a socket that dropped
without a clean close keeps its user present until ``grace`` runs out; a dead process stops
heartbeating, so its sockets expire within ``ttl``. Every process sweeps the rooms it serves
and announces the users whose last socket expired. Lua keeps each step atomic.

``presence.join``/``leave`` are pub/sub signals: the ones published while Redis is away are
lost, and a Redis that restarts empty is refilled only by the next heartbeats. So each
process also keeps the view its sockets were last given per room, compares it with Redis on
every sweep, and sends a ``presence.sync`` snapshot to its own sockets when they differ (and
to every room it serves once Redis is back after an outage).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from ..backoff import Backoff
from ..broker.slots import cluster_client, is_cluster
from ..faults import Faults, is_fatal
from .base import Announce, Presence
from .typing import TypingGate

log = logging.getLogger("menteo.presence")

# Redis that cannot answer: its errors, and a cluster's own (a slot no master covers while
# the cluster heals is not a ``RedisError``).
UNAVAILABLE = (RedisError, RedisClusterException)

CLOSE_WAIT = 3.0  # seconds each part of closing may take before shutdown goes on without it


def _awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each frame down its chain of awaits."""
    out = []
    for _ in range(50):  # a chain, bounded
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        out.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


async def _bounded(task: asyncio.Future[Any], what: str) -> None:
    """Wait for ``task`` at most ``CLOSE_WAIT``: a server's shutdown once waited 25 s in
    presence's close (CI, under load). Past the bound the stop goes on, and the log says
    where the task was waiting, so the cause can be found."""
    done, _ = await asyncio.wait((task,), timeout=CLOSE_WAIT)
    if not done:
        where = _awaiting(task.get_coro()) if isinstance(task, asyncio.Task) else []
        log.warning(
            "%s still running after %.0f s; shutdown goes on (waiting in %s)",
            what,
            CLOSE_WAIT,
            " <- ".join(reversed(where)) or "?",
        )
        task.cancel()
        return
    with suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None and not isinstance(exc, RedisError | OSError):
            log.warning("%s ended with %r", what, exc)


_SWEEP = """
local function user_of(v) return string.match(v, '^([^\\n]*)') end
local function sweep(z, h, now)
  local expired = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #expired == 0 then return {} end
  local touched = {}
  for _, c in ipairs(expired) do
    local v = redis.call('HGET', h, c)
    redis.call('HDEL', h, c)
    redis.call('ZREM', z, c)
    if v then touched[user_of(v)] = true end
  end
  local remaining = {}
  for _, v in ipairs(redis.call('HVALS', h)) do remaining[user_of(v)] = true end
  local gone = {}
  for u, _ in pairs(touched) do
    if not remaining[u] then table.insert(gone, u) end
  end
  return gone
end
"""

# KEYS: zset, hash. ARGV: now, conn, user, name, expires, key ttl (s).
# Returns {1 if this is the user's first socket else 0, users gone, entries of everyone present}.
JOIN = (
    _SWEEP
    + """
local present = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  if user_of(v) == ARGV[3] then present = 1 break end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. '\\n' .. ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
local gone = sweep(KEYS[1], KEYS[2], ARGV[1])
return {1 - present, gone, redis.call('HVALS', KEYS[2])}
"""
)

# KEYS: zset, hash. ARGV: now, conn, clean (1/0), grace expiry. Returns users gone.
LEAVE = (
    _SWEEP
    + """
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[2])
else
  redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])
end
return sweep(KEYS[1], KEYS[2], ARGV[1])
"""
)

# KEYS: zset, hash. ARGV: now. Returns {users gone, entries of everyone still present}.
SWEEP = _SWEEP + "return {sweep(KEYS[1], KEYS[2], ARGV[1]), redis.call('HVALS', KEYS[2])}"

# Seconds to wait after Redis comes back before the snapshot: every process heartbeats at
# once on recovery, so by then the users of sockets that stayed open are written back.
SETTLE = 2.0
POOL = 50  # connections to Redis (per node on a cluster)


def _keys(room: str) -> list[str]:
    # One hash tag per room: both keys live in the same Redis Cluster slot.
    return [f"menteo:pz:{{{room}}}", f"menteo:ph:{{{room}}}"]


class RedisPresence(Presence):
    def __init__(
        self,
        url: str,
        announce: Announce,
        rooms: Callable[[], Iterable[str]],
        *,
        grace: float,
        ttl: float,
        announce_local: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(announce, grace=grace)
        # Snapshots go to this process's sockets only: every process reconciles its own.
        self.announce_local = announce_local
        self.client: aioredis.Redis | RedisCluster
        # A join storm waits for a connection instead of failing past the pool: a blocking
        # pool does it on one Redis; redis-py's cluster pools raise instead, so a semaphore
        # holds the commands in flight to the pool's size.
        self.gate: AbstractAsyncContextManager[Any] = nullcontext()
        if is_cluster(url):
            self.client = cluster_client(url, max_connections=POOL)
            self.gate = asyncio.Semaphore(POOL)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=POOL, timeout=5, socket_connect_timeout=2, socket_timeout=5
            )
            self.client = aioredis.Redis(connection_pool=pool)
        self.rooms = rooms  # the rooms this process serves: the ones it sweeps
        self.ttl = ttl
        self.local: dict[str, dict[str, str]] = {}  # room -> live conn -> "user\nname"
        scripts: Callable[[str], Any] = self.client.register_script
        if isinstance(self.client, RedisCluster):
            scripts = functools.partial(_ClusterScript, self.client)
        self.join_script = scripts(JOIN)
        self.leave_script = scripts(LEAVE)
        self.sweep_script = scripts(SWEEP)
        # On a cluster, upkeep goes on past a master that is away (``_shard_failed``).
        self.down: set[str] = set()  # masters that failed this round
        self.failure: Exception | None = None  # the first of those failures
        self.task: asyncio.Task[None] | None = None
        self.views: dict[str, dict[str, str]] = {}  # room -> user -> name, as last shown
        self.heard: dict[str, int] = {}  # room -> presence signals and snapshots (races)
        self.suspect: dict[str, dict[str, str]] = {}  # room -> a difference seen once
        self.unsure: set[str] = set()  # rooms a socket was welcomed in without Redis
        self.resync_at: float | None = None  # after an outage: snapshot every room then
        self.beat_now = False
        # Set while a heartbeat is in flight: a leave waits for it, or the heartbeat (which
        # read the socket before it closed) would write it back after its leave.
        self.beating: asyncio.Future[None] | None = None
        self.syncs = 0  # snapshots sent (for tests and metrics)
        # Typing limited per user across processes: one SET NX PX key per room and user.
        self.typing = TypingGate(announce, self._claim_typing)
        self.faults = Faults()  # the app shares its own
        self.metrics = self.faults.metrics  # presence.sync snapshots (the app shares its own)

    async def start(self) -> None:
        self.task = asyncio.create_task(self._maintain(), name="menteo-presence")

    async def close(self) -> None:
        await super().close()
        if self.task is not None:
            self.task.cancel()
            await _bounded(self.task, "presence upkeep")
        if isinstance(self.client, RedisCluster):
            closing = asyncio.ensure_future(self.client.aclose())
        else:
            closing = asyncio.ensure_future(self.client.aclose(close_connection_pool=True))
        await _bounded(closing, "closing presence's Redis client")

    async def join(self, room: str, user_id: str, name: str, conn_id: str) -> list[dict[str, str]]:
        self.local.setdefault(room, {})[conn_id] = f"{user_id}\n{name}"
        now = time.time()
        heard = self.heard.get(room, 0)
        try:
            async with self.gate:
                result = await self.join_script(
                    keys=_keys(room),
                    args=[now, conn_id, user_id, name, now + self.ttl, int(self.ttl * 4) + 60],
                )
        except Exception:
            self.unsure.add(room)  # the heartbeat writes the socket later; a snapshot follows
            raise
        first, gone, entries = result
        raced = self.heard.get(room, 0) != heard
        self._announce_gone(room, gone)
        if int(first):
            self._joined(room, user_id, name)
        return self._welcome_view(room, _users(entries), raced)

    async def _claim_typing(self, room: str, user_id: str, interval: float) -> bool:
        """True if no process sent this user's typing in the room within ``interval``."""
        key = f"menteo:pt:{{{room}}}:{user_id}"
        async with self.gate:
            return bool(await self.client.set(key, b"1", nx=True, px=max(1, int(interval * 1000))))

    async def leave(self, room: str, user_id: str, conn_id: str, *, clean: bool) -> None:
        conns = self.local.get(room, {})
        conns.pop(conn_id, None)
        if not conns:
            self.local.pop(room, None)
        if self.beating is not None:
            await asyncio.wait((self.beating,))
        now = time.time()
        async with self.gate:
            gone = await self.leave_script(
                keys=_keys(room), args=[now, conn_id, "1" if clean else "0", now + self.grace]
            )
        self._announce_gone(room, gone)

    async def online(self, room: str) -> list[dict[str, str]]:
        """Also what the room's sockets are taken to show from now on: a welcome's list.

        The room's other sockets here were shown ``views[room]``; when the welcome's list
        differs, or a join, leave or snapshot reached the room while Redis was read (its
        order against the read is unknown), the room gets a snapshot at the next sweep:
        otherwise a socket shown a late leave would differ from a view that no longer says
        so, and the comparison with Redis would never correct it."""
        heard = self.heard.get(room, 0)
        try:
            async with self.gate:
                users = _users(await self.client.hvals(_keys(room)[1]))
        except Exception:
            self.unsure.add(room)  # the welcome shows a guess; a snapshot follows
            raise
        return self._welcome_view(room, users, self.heard.get(room, 0) != heard)

    def _welcome_view(self, room: str, users: dict[str, str], raced: bool) -> list[dict[str, str]]:
        """``users`` read for a welcome (``raced``: a signal reached the room meanwhile), kept
        as what the room's sockets show; a difference from what they were shown, or a race,
        gets the room a snapshot at the next sweep (``online``)."""
        shown = self.views.get(room)
        if raced or (shown is not None and shown != users):
            self.unsure.add(room)
        self.views[room] = users
        return _listing(users)

    async def here(self, room: str, user_id: str) -> bool:
        async with self.gate:
            entries = await self.client.hvals(_keys(room)[1])
        return user_id in _users(entries)

    def observe(self, room: str, frame: dict[str, Any]) -> None:
        """The hub's hook: a signal delivered to this process's sockets of ``room``."""
        kind = frame.get("type")
        if kind not in ("presence.join", "presence.leave"):
            return
        self.heard[room] = self.heard.get(room, 0) + 1
        view = self.views.get(room)
        if view is None:
            return
        if kind == "presence.join":
            view[frame["user_id"]] = frame.get("name", "")
        else:
            view.pop(frame["user_id"], None)

    def resynced(self) -> None:
        """The broker reconnected (the hub's hook): signals may have been lost meanwhile."""
        self._recovering()

    def _recovering(self) -> None:
        self.beat_now = True
        self.resync_at = time.monotonic() + SETTLE

    def _announce_gone(self, room: str, gone: list[bytes]) -> None:
        for user in gone:
            self._left(room, user.decode() if isinstance(user, bytes) else str(user))

    async def _maintain(self) -> None:
        """Heartbeat our live sockets, sweep the rooms we serve, and reconcile views."""
        beat_every = max(self.ttl / 3, 0.1)
        sweep_every = min(1.0, beat_every)
        last_beat = 0.0
        failing = False
        # Failing (Redis away): retries spread out, so processes do not all come back at once.
        retry = Backoff(sweep_every, 2 * sweep_every)
        while True:
            await asyncio.sleep(retry.next() if failing else sweep_every)
            try:
                now = time.time()
                if self.beat_now or now - last_beat >= beat_every:
                    self.beat_now = False
                    await self._heartbeat(now)
                    last_beat = now
                await self._sweep(now)
                if failing:
                    failing = False
                    retry.reset()
                    log.info("presence upkeep recovered")
                    self._recovering()
            except (*UNAVAILABLE, OSError) as exc:
                failing = True
                log.warning("presence upkeep failed: %s", exc)
            except BaseException as exc:
                if is_fatal(exc):
                    raise
                # One room's odd state must not end upkeep for every room (watchdog.py).
                failing = True
                self.faults.survived("presence", log, exc, "presence upkeep failed")

    async def _sweep(self, now: float) -> None:
        rooms = list(self.rooms())
        for stale in (self.views.keys() | self.unsure) - set(rooms):
            self._forget(stale)
        snapshot_all = self.resync_at is not None and time.monotonic() >= self.resync_at
        settling = self.resync_at is not None and not snapshot_all
        for room in rooms:
            heard = self.heard.get(room, 0)
            node = self._node(room)
            if node is not None and node in self.down:
                continue
            try:
                async with self.gate:
                    gone, entries = await self.sweep_script(keys=_keys(room), args=[now])
            except (*UNAVAILABLE, OSError) as exc:
                self._shard_failed(node, exc)
                continue
            raced = self.heard.get(room, 0) != heard
            self._announce_gone(room, gone)
            # Only rooms whose sockets were given a view here (a feed stream has none).
            if (room in self.views or room in self.unsure) and not raced and not settling:
                forced = snapshot_all or room in self.unsure
                self.unsure.discard(room)
                self._reconcile(room, _users(entries), force=forced)
        failure, self.failure = self.failure, None
        self.down.clear()
        if failure is not None:
            raise failure  # upkeep failed this round: recovery snapshots, as for one Redis
        if snapshot_all:
            self.resync_at = None

    def _node(self, room: str) -> str | None:
        """The cluster master of ``room``'s keys (None on one Redis: all fail together)."""
        if not isinstance(self.client, RedisCluster):
            return None
        try:
            node = self.client.get_node_from_key(_keys(room)[0])
        except UNAVAILABLE:  # the slot map is not read yet, or a slot not covered
            return "?"
        return "?" if node is None else str(node.name)

    def _shard_failed(self, node: str | None, exc: BaseException) -> None:
        """One Redis away fails the round at once; on a cluster, the rooms on other masters
        are still swept and heartbeated, and the round fails at its end."""
        if node is None or not isinstance(exc, (RedisError, OSError)):
            raise exc
        self.down.add(node)
        self.failure = self.failure or exc

    def _reconcile(self, room: str, users: dict[str, str], *, force: bool) -> None:
        """Send a snapshot when Redis and what the sockets were told differ twice running
        (once could be a join or leave whose signal is still on its way), or when forced."""
        if users == self.views.get(room) and not force:
            self.suspect.pop(room, None)
            return
        if not force and self.suspect.get(room) != users:
            self.suspect[room] = users
            return
        self.suspect.pop(room, None)
        self.views[room] = dict(users)
        self.heard[room] = self.heard.get(room, 0) + 1  # a welcome reading now races it
        if self.announce_local is not None:
            self.syncs += 1
            self.metrics.inc("menteo_presence_syncs_total")
            self.announce_local(room, {"type": "presence.sync", "presence": _listing(users)})

    def _forget(self, room: str) -> None:
        self.views.pop(room, None)
        self.heard.pop(room, None)
        self.suspect.pop(room, None)
        self.unsure.discard(room)

    async def _heartbeat(self, now: float) -> None:
        """Push our live sockets' expiry forward, writing their entries again in full: after
        Redis restarts empty, this is what puts the users who stayed connected back."""
        # Read now, in one go: a socket that leaves from here on waits for this heartbeat
        # (``beating``), so its leave lands after it.
        groups: dict[str | None, dict[str, dict[str, str]]] = {}  # a pipeline per master
        for room, conns in self.local.items():
            groups.setdefault(self._node(room), {})[room] = dict(conns)
        beats = [self._beat(now, rooms) for rooms in groups.values()]
        self.beating = done = asyncio.get_running_loop().create_future()
        try:
            outcomes = await asyncio.gather(*beats, return_exceptions=True)
        finally:
            self.beating = None
            done.set_result(None)
        for node, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._shard_failed(node, outcome)

    async def _beat(self, now: float, rooms: dict[str, dict[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        keep = int(self.ttl * 4) + 60
        for room, conns in rooms.items():
            zset, users = _keys(room)
            pipe.hset(users, mapping=dict(conns.items()))
            pipe.zadd(zset, dict.fromkeys(conns, now + self.ttl))
            pipe.expire(zset, keep)
            pipe.expire(users, keep)
        async with self.gate:
            await pipe.execute()


class _ClusterScript:
    """A Lua script on a cluster: ``EVALSHA``, else the whole script (``EVAL``) to the node
    of its keys. redis-py's own loads a missing script on every master at once, which fails
    for every room while any one master is away."""

    def __init__(self, client: RedisCluster, script: str) -> None:
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.script, len(keys), *keys, *args)


def _users(entries: list[Any]) -> dict[str, str]:
    """Hash values ``user\nname`` (one per socket) as user -> name."""
    users: dict[str, str] = {}
    for raw in entries:
        entry = raw.decode() if isinstance(raw, bytes) else str(raw)
        user_id, _, name = entry.partition("\n")
        users[user_id] = name
    return users


def _listing(users: dict[str, str]) -> list[dict[str, str]]:
    return [{"user_id": u, "name": users[u]} for u in sorted(users)]
