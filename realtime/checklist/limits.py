"""Roadmap copies are charged by the events they queue: a token bucket of steps per user
and one per room, in this process. A copy that either bucket cannot pay for is refused
whole (429 with the wait), so a loop of copies queues no more than a socket at its rate."""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_KEYS = 10_000  # buckets kept before the full (idle) ones are dropped


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class StepBudget:
    """``rate`` steps a second per key, at most ``burst`` saved up; rate 0: no limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.buckets: dict[str, _Bucket] = {}

    def cost(self, steps: int) -> float:
        # A copy larger than the bucket costs a full bucket (else it could never pass).
        return float(min(max(1, steps), self.burst))

    def wait(self, key: str, steps: int) -> float:
        """Seconds until ``key`` can pay for ``steps`` (0: now)."""
        if self.rate <= 0:
            return 0.0
        bucket = self._refill(key)
        return max(0.0, (self.cost(steps) - bucket.tokens) / self.rate)

    def take(self, key: str, steps: int) -> None:
        if self.rate > 0:
            self._refill(key).tokens -= self.cost(steps)

    def _refill(self, key: str) -> _Bucket:
        now = time.monotonic()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYS:
                self._prune(now)
            bucket = self.buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def _prune(self, now: float) -> None:
        idle = now - self.burst / self.rate  # untouched this long: full again, like a new one
        for key in [k for k, b in self.buckets.items() if b.stamp <= idle]:
            del self.buckets[key]


@dataclass(slots=True)
class CopyLimits:
    per_user: StepBudget
    per_room: StepBudget
