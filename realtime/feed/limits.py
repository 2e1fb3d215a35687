"""Per-user rate limits for feed writes (posting, commenting, reacting).

A token bucket per user and action: with Redis, one for every process together
(sockets/shared_rate.py; per process while Redis is away), else in this process. A refused
request learns how long to wait.
"""

from __future__ import annotations

import math
import time

from ..sockets.limits import TokenBucket
from ..sockets.shared_rate import SharedRate

MAX_USERS = 10_000  # buckets kept before the idle (full again) ones are dropped


class UserLimits:
    """``rate`` actions a second per user, at most ``burst`` in a row; rate 0: no limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.buckets: dict[str, TokenBucket] = {}
        self.shared: SharedRate | None = None  # set by the composition root with Redis

    async def take_shared(self, user_id: str) -> float | None:
        """``take``, across every process when ``shared`` is set."""
        if self.rate <= 0 or self.shared is None:
            return self.take(user_id)
        return await self.shared.take_or_wait(user_id)

    def take(self, user_id: str) -> float | None:
        """None if allowed; otherwise the seconds until the next action would be."""
        if self.rate <= 0:
            return None
        bucket = self.buckets.get(user_id)
        if bucket is None:
            if len(self.buckets) >= MAX_USERS:
                self._prune()
            bucket = self.buckets[user_id] = TokenBucket(self.rate, self.burst)
        if bucket.take():
            return None
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self) -> None:
        # A bucket untouched for burst/rate seconds is full again: the same as a new one.
        idle = time.monotonic() - self.burst / self.rate
        for user_id in [u for u, b in self.buckets.items() if b.stamp <= idle]:
            del self.buckets[user_id]


def retry_after_header(seconds: float) -> str:
    """HTTP's Retry-After is whole seconds: round up, never 0."""
    return str(max(1, math.ceil(seconds)))
