"""Redis Cluster addressing: the ``redis+cluster://`` URL, each channel's hash tag, and which
master serves which slot.

A channel's hash tag is its last ``:``-separated part (a room id, ``feed``, a user id, or the
fixed word of a process-wide channel), unless the channel already holds a ``{tag}``. Presence
keys are tagged with the room id too (``menteo:pz:{room}``), so a room's messages, its notes'
messages and its presence keys all live in one slot, on one shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

SCHEME = "redis+cluster://"
SLOTS = 16384
MAX_NODES = 64  # addresses in one URL: a startup list, not the whole cluster


def is_cluster(url: str) -> bool:
    return url.startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class ClusterURL:
    """``redis+cluster://[user[:password]@]host:port[,host:port…]``: the startup nodes (any
    one reachable is enough to find the rest) and the credentials every node shares."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        if not is_cluster(url):
            raise ValueError(f"not a {SCHEME} URL")
        rest = url.removeprefix(SCHEME).rstrip("/")
        userinfo, at, hosts = rest.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        nodes = tuple(_address(part) for part in hosts.split(","))
        if len(nodes) > MAX_NODES:
            raise ValueError(f"{SCHEME}: at most {MAX_NODES} startup nodes")
        return cls(nodes, username, password)


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:7000
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{SCHEME}: {text!r} is not host:port")
    return host, int(port)


def tagged(channel: str) -> str:
    """The channel's name on the cluster: its last ``:`` part made its hash tag."""
    if "{" in channel:
        return channel  # the caller chose its own tag
    head, sep, tail = channel.rpartition(":")
    return f"{head}{sep}{{{tail}}}"


def slot_of(name: bytes) -> int:
    return int(key_slot(name))


class SlotMap:
    """Which master (``host:port``) serves each slot, from one node's ``CLUSTER SLOTS``."""

    __slots__ = ("masters", "owner")

    def __init__(self, reply: list[Any], asked: tuple[str, int]) -> None:
        self.owner: list[str | None] = [None] * SLOTS
        masters: dict[str, tuple[str, int]] = {}
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0]) or asked[0]  # empty: the node we asked does not know
            address = (host, int(primary[1]))
            name = f"{address[0]}:{address[1]}"
            masters[name] = address
            for slot in range(start, end + 1):
                self.owner[slot] = name
        self.masters = masters

    def node_of(self, name: bytes) -> str | None:
        return self.owner[slot_of(name)]

    def same(self, other: SlotMap | None) -> bool:
        return other is not None and other.owner == self.owner


async def read_slot_map(client: aioredis.Redis, address: tuple[str, int]) -> SlotMap:
    """``CLUSTER SLOTS`` of the node ``client`` talks to (at ``address``)."""
    reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
    return SlotMap(reply, address)


async def cluster_state(client: aioredis.Redis) -> str:
    """The node's verdict on the whole cluster: ``ok`` or ``fail``."""
    info = await client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return str(info.get("cluster_state", "?"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def node_client(address: tuple[str, int], url: ClusterURL, *, pool: int) -> aioredis.Redis:
    """A plain client of one node. No retry of its own: a failed command surfaces at once,
    so the broker reads the slot map again and resubscribes (never a silent reconnect that
    would hide the messages lost meanwhile)."""
    connections = aioredis.BlockingConnectionPool(
        host=address[0],
        port=address[1],
        username=url.username,
        password=url.password,
        max_connections=pool,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis(connection_pool=connections)


def cluster_client(url: str, *, max_connections: int) -> RedisCluster:
    """redis-py's cluster client (slot routing, MOVED handling, retries over a failover),
    for presence's keys and scripts and for ``check``."""
    parsed = ClusterURL.parse(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        username=parsed.username,
        password=parsed.password,
        require_full_coverage=False,  # the other shards serve while one fails over
        max_connections=max_connections,
        socket_connect_timeout=2,
        socket_timeout=5,
    )
