"""Knowing at once that the process was asked to stop.

Uvicorn closes WebSockets with 1012 on SIGTERM, but an event stream is an HTTP response it
waits for until ``MENTEO_SHUTDOWN_TIMEOUT`` and then cancels. Our lifespan's shutdown runs
only after that, too late to end the streams cleanly. So, while the app runs, the signal
handlers uvicorn installed are wrapped: the signal first resolves ``Shutdown.stopping`` (event
streams end their response, readiness turns 503), then reaches uvicorn as before.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop
        self.wrapped: dict[int, tuple[Any, Callable[[int, FrameType | None], None]]] = {}

    def install(self) -> None:
        """Wrap the current handlers (uvicorn's). Signal handlers live in the main thread
        only; elsewhere (a server run in a thread) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # SIG_DFL or SIG_IGN: nobody drains; leave it alone

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.on_stop)
                previous(signum, frame)

            signal.signal(sig, handler)
            self.wrapped[sig] = (previous, handler)

    def stop(self) -> bool:
        """Ask the server to stop as SIGTERM would (the handler we wrapped, uvicorn's in a
        real process); False when there is none, e.g. a server run in a test."""
        wrapped = self.wrapped.get(signal.SIGTERM)
        if wrapped is None:
            return False
        wrapped[0](signal.SIGTERM, None)
        return True

    def uninstall(self) -> None:
        """Put the wrapped handlers back, unless someone replaced ours meanwhile."""
        for sig, (previous, ours) in self.wrapped.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self.wrapped.clear()
