"""Budgets of the notes socket that count more than one token per message."""

from __future__ import annotations

import time


class Budget:
    """``rate`` units a second, at most ``burst`` saved up; ``take(n)`` spends ``n``."""

    __slots__ = ("burst", "rate", "stamp", "units")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.units = float(burst)
        self.stamp = time.monotonic()

    def take(self, n: float = 1.0) -> bool:
        now = time.monotonic()
        self.units = min(self.burst, self.units + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.units >= n:
            self.units -= n
            return True
        return False


class Cooldown:
    """After a refusal, ``first`` seconds of refusing; each refusal within twice the
    longest cooldown of the last doubles it, up to 64 times ``first``."""

    __slots__ = ("first", "strikes", "until")

    MAX_DOUBLINGS = 6

    def __init__(self, first: float) -> None:
        self.first = first
        self.strikes = 0
        self.until = 0.0

    def active(self) -> bool:
        return time.monotonic() < self.until

    def strike(self) -> None:
        now = time.monotonic()
        longest = self.first * 2**self.MAX_DOUBLINGS
        if now - self.until > 2 * longest:
            self.strikes = 0  # well behaved for a long while: start over
        self.until = now + self.first * 2 ** min(self.strikes, self.MAX_DOUBLINGS)
        self.strikes += 1
