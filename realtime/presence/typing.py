"""Typing indicators, limited per user: at most one ``presence.typing`` per user and room
per interval, whichever of the user's sockets sent it, and (with Redis) whichever process
they are on. Throttled, not refused: the latest state still goes out once the interval
has passed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("menteo.presence")

# (room, frame, exclude_user): how a frame reaches the room's sockets on every process.
Announce = Callable[[str, dict[str, Any], str | None], None]
# (room, user, interval): True if this process may send the user's typing now. With Redis,
# a ``SET NX PX`` key per room and user that the first process to set it wins.
Claim = Callable[[str, str, float], Awaitable[bool]]

RETRIES = 3  # claims lost to another process before a pending state is dropped


class _Typist:
    """One user in one room, on this process."""

    __slots__ = (
        "claiming", "forget", "interval", "lost", "sent_at", "sockets", "state", "timer", "wanted",
    )  # fmt: skip

    def __init__(self) -> None:
        self.sockets = 0  # the user's open sockets in the room, here
        self.sent_at = -1e9  # monotonic time of the last send (or claim) from here
        self.state: bool | None = None  # the last state sent from here
        self.wanted = False  # the newest state the user's sockets sent
        self.timer: asyncio.TimerHandle | None = None
        self.claiming = False  # a claim is in flight
        self.lost = 0  # claims lost in a row
        self.interval = 0.0  # the interval of the last update
        self.forget: asyncio.TimerHandle | None = None  # set while no socket is open


class TypingGate:
    def __init__(self, announce: Announce, claim: Claim | None = None) -> None:
        self.announce = announce
        self.claim = claim  # None: one process, the local limit is the whole limit
        self.typists: dict[tuple[str, str], _Typist] = {}
        self.claims: set[asyncio.Task[None]] = set()  # referenced until done
        self.failing = False

    def attach(self, room: str, user_id: str) -> None:
        """A socket of the user's opened in the room."""
        typist = self.typists.get((room, user_id))
        if typist is None:
            typist = self.typists[(room, user_id)] = _Typist()
        if typist.forget is not None:  # back within the interval: the limit still holds
            typist.forget.cancel()
            typist.forget = None
        typist.sockets += 1

    def detach(self, room: str, user_id: str) -> None:
        """A socket of the user's closed; the last one takes the user's state with it."""
        typist = self.typists.get((room, user_id))
        if typist is None:
            return
        typist.sockets -= 1
        if typist.sockets > 0:
            return
        if typist.timer is not None:
            typist.timer.cancel()
            typist.timer = None
        # Kept until its interval has passed, so that reconnecting does not reset the limit.
        left = typist.sent_at + typist.interval - time.monotonic()
        if left > 0:
            typist.forget = asyncio.get_running_loop().call_later(
                left, self._forget, room, user_id, typist
            )
        else:
            del self.typists[(room, user_id)]

    def _forget(self, room: str, user_id: str, typist: _Typist) -> None:
        typist.forget = None
        if typist.sockets <= 0 and self.typists.get((room, user_id)) is typist:
            del self.typists[(room, user_id)]

    def update(self, room: str, user_id: str, active: bool, interval: float) -> None:
        """One ``typing`` frame from one of the user's sockets."""
        typist = self.typists.get((room, user_id))
        if typist is None:
            return  # not attached: the socket is closing
        if typist.timer is not None:  # a newer state replaces the one waiting to go out
            typist.timer.cancel()
            typist.timer = None
        typist.wanted = active
        typist.interval = interval
        typist.lost = 0
        if typist.claiming:
            return  # the claim in flight schedules the newest state after its own
        wait = typist.sent_at + interval - time.monotonic()
        if wait <= 0:
            self._go(room, user_id, typist, interval)
        elif active != typist.state:
            typist.timer = asyncio.get_running_loop().call_later(
                wait, self._go, room, user_id, typist, interval
            )

    def _go(self, room: str, user_id: str, typist: _Typist, interval: float) -> None:
        typist.timer = None
        typist.sent_at = time.monotonic()  # this process's sockets wait from now on
        if self.claim is None:
            self._send(room, user_id, typist, typist.wanted)
            return
        typist.claiming = True
        claim = self._claim(room, user_id, typist, typist.wanted, interval)
        task = asyncio.get_running_loop().create_task(claim)
        self.claims.add(task)
        task.add_done_callback(self.claims.discard)

    async def _claim(
        self, room: str, user_id: str, typist: _Typist, active: bool, interval: float
    ) -> None:
        assert self.claim is not None
        try:
            async with asyncio.timeout(min(interval, 1.0)):
                won = await self.claim(room, user_id, interval)
            if self.failing:
                self.failing = False
                log.info("typing claims in Redis work again")
        except Exception as exc:  # Redis away or slow: the per-process limit still holds
            if not self.failing:
                self.failing = True
                log.warning("typing claim failed, limiting per process meanwhile: %r", exc)
            won = True
        typist.claiming = False
        if self.typists.get((room, user_id)) is not typist or typist.sockets <= 0:
            return  # the user's last socket here closed meanwhile
        if won:
            self._send(room, user_id, typist, active)
            if typist.wanted != active:  # changed while the claim was out: it goes next
                typist.timer = asyncio.get_running_loop().call_later(
                    interval, self._go, room, user_id, typist, interval
                )
        elif typist.lost < RETRIES and typist.wanted != typist.state:
            # Another process sent this user's typing within the interval: try again then.
            typist.lost += 1
            typist.timer = asyncio.get_running_loop().call_later(
                interval, self._go, room, user_id, typist, interval
            )

    def _send(self, room: str, user_id: str, typist: _Typist, active: bool) -> None:
        typist.state = active
        frame = {"type": "presence.typing", "user_id": user_id, "active": active}
        self.announce(room, frame, user_id)

    def close(self) -> None:
        for typist in self.typists.values():
            for handle in (typist.timer, typist.forget):
                if handle is not None:
                    handle.cancel()
        self.typists.clear()
        for task in self.claims:
            task.cancel()
