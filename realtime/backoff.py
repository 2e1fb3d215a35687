"""Exponential backoff with jitter, for reconnecting to Redis.

After a Redis restart every process's reader fails at the same moment; with plain doubling
they would all come back at the same moments too (0.1 s, 0.2 s, 0.4 s...), a thundering
herd on a Redis that is just starting. Each wait is drawn from the upper half of the
current step ("equal jitter"): never less than half the step, spread over the other half.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    __slots__ = ("first", "most", "step")

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.step = first

    def next(self) -> float:
        """The seconds to wait before this retry; the step doubles up to ``most``."""
        step = self.step
        self.step = min(step * 2, self.most)
        return random.uniform(step / 2, step)

    def reset(self) -> None:
        """Connected again: the next failure starts from ``first``."""
        self.step = self.first
