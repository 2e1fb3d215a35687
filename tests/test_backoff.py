"""Redis reconnects back off with jitter (realtime/backoff.py): each wait lies in the upper
half of a doubling step, capped, so processes that lost Redis together do not all come
back at the same instants."""

from __future__ import annotations

from realtime.backoff import Backoff


def test_waits_double_within_jitter_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.1, 2.0)
    steps = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    for step in steps:
        wait = backoff.next()
        assert step / 2 <= wait <= step, (step, wait)
    backoff.reset()
    assert 0.05 <= backoff.next() <= 0.1


def test_processes_that_fail_together_retry_apart() -> None:
    first_waits = {round(Backoff(0.1, 2.0).next(), 6) for _ in range(50)}
    assert len(first_waits) > 40  # 50 processes: not one herd at 0.1 s
