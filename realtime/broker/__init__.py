"""Brokers chosen by URL: empty or ``memory://`` in-process, ``redis://`` Redis pub/sub,
``redis+cluster://`` Redis Cluster's sharded pub/sub."""

from __future__ import annotations

from .base import Broker, MessageHandler, ResyncHandler
from .memory import MemoryBroker


def create_broker(url: str) -> Broker:
    if not url or url.startswith("memory://"):
        return MemoryBroker()
    if url.startswith("redis+cluster://"):
        from .cluster import ClusterBroker  # imported lazily, as RedisBroker

        return ClusterBroker(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBroker  # imported lazily: redis is only needed when used

        return RedisBroker(url)
    raise ValueError(
        f"unsupported broker URL {url!r}: use redis://HOST:PORT, "
        "redis+cluster://HOST:PORT[,HOST:PORT...] or leave unset"
    )


__all__ = ["Broker", "MemoryBroker", "MessageHandler", "ResyncHandler", "create_broker"]
