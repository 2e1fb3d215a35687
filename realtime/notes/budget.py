"""Budgets of the notes socket that count more than one token per message."""

from __future__ import annotations

import time

from ..config import Settings
from ..sockets.limits import LRU


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


class Ledger:
    """Byte and sync request budgets and refusal cooldowns per (room, user), kept by the
    process rather than by a document: a document closes when its last socket leaves, and
    reconnecting must not refill a budget or end a cooldown."""

    __slots__ = ("budgets", "cooldowns", "settings", "syncs")

    def __init__(self, settings: Settings, size: int = 4096) -> None:
        self.settings = settings
        self.budgets: LRU[tuple[str, str], Budget] = LRU(size)
        self.cooldowns: LRU[tuple[str, str], Cooldown] = LRU(size)
        self.syncs: LRU[tuple[str, str], Budget] = LRU(size)

    def spend(self, room_id: str, user_id: str, n: int) -> bool:
        budget = self.budgets.get((room_id, user_id))
        if budget is None:
            settings = self.settings
            budget = Budget(settings.notes_bytes_per_second, settings.notes_bytes_burst)
            self.budgets[(room_id, user_id)] = budget
        return budget.take(n)

    def sync(self, room_id: str, user_id: str) -> bool:
        """Take one sync request (step 1) from the user's budget for the room."""
        budget = self.syncs.get((room_id, user_id))
        if budget is None:
            settings = self.settings
            budget = Budget(settings.notes_sync_per_minute / 60, settings.notes_sync_burst)
            self.syncs[(room_id, user_id)] = budget
        return budget.take()

    def cooling(self, room_id: str, user_id: str) -> bool:
        cooldown = self.cooldowns.get((room_id, user_id))
        return cooldown is not None and cooldown.active()

    def strike(self, room_id: str, user_id: str) -> None:
        cooldown = self.cooldowns.get((room_id, user_id))
        if cooldown is None:
            cooldown = Cooldown(self.settings.notes_refusal_cooldown)
            self.cooldowns[(room_id, user_id)] = cooldown
        cooldown.strike()
