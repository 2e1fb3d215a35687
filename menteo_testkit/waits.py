"""The one way tests wait: on an event, or on a condition looked at until it holds; always
with a timeout, and a failure that names what was awaited.

Never a sleep standing in for the event: a test that waits "long enough" passes on an idle
machine and fails on a busy one, and one that waits without a timeout turns an early
refusal into the whole run's timeout with no word of what hung.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["POLL", "TIMEOUT", "WaitTimeout", "describe", "wait_event", "wait_until", "within"]

T = TypeVar("T")

TIMEOUT = 10.0  # seconds: generous for a busy machine, short against a hang
POLL = 0.02  # seconds between looks at a condition that has no event of its own


class WaitTimeout(AssertionError, TimeoutError):
    """A wait ran out: an assertion that names what was awaited, and still a TimeoutError
    for a caller that expects one."""


def _expired(what: str, timeout: float, state: Callable[[], object] | None) -> WaitTimeout:
    message = f"not within {timeout:g} s: {what}"
    if state is not None:
        message += f" (now: {state()!r})"
    return WaitTimeout(message)


def describe(function: Callable[..., object]) -> str:
    """A predicate's own source line, to name a wait on it (``lambda f: f["type"] == ...``)."""
    try:
        source = inspect.getsource(function).strip()
    except (OSError, TypeError):
        return getattr(function, "__qualname__", repr(function))
    return source if len(source) <= 160 else source[:157] + "..."


async def within(awaitable: Awaitable[T], what: str, timeout: float = TIMEOUT) -> T:
    """The result of ``awaitable``, or a failure naming ``what`` after ``timeout`` s."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():  # ours, not one raised inside ``awaitable``
            raise _expired(what, timeout, None) from None
        raise


async def wait_event(event: asyncio.Event, what: str, timeout: float = TIMEOUT) -> None:
    """Until ``event`` is set."""
    await within(event.wait(), what, timeout)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    timeout: float = TIMEOUT,
    *,
    wake: asyncio.Event | None = None,
    state: Callable[[], object] | None = None,
    every: float = POLL,
) -> None:
    """Until ``condition()`` (sync or async) holds.

    With ``wake``: looked at again each time that event is set (it is cleared before each
    look), so nothing is missed and nothing polls. Without: looked at every ``every`` s,
    for state that has no event to await (a server's gauges, a port, a database row): a
    look at the state, not a sleep that guesses when it changed. ``state`` describes the
    current state in the failure message."""
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            while True:
                if wake is not None:
                    wake.clear()
                held = condition()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return
                if wake is not None:
                    await wake.wait()
                else:
                    await asyncio.sleep(every)
    except TimeoutError:
        if deadline.expired():
            raise _expired(what, timeout, state) from None
        raise
