"""Noticing that a task the whole process depends on has ended.

The writer, the hub's sweeper, the broker's reader and publisher, presence upkeep and the
feed's timers run for the life of the process and survive any one event (``faults.py``).
If one ends anyway (a bug, a cancellation), every room served here stops working while
``/readyz`` would still say 200. So the lifespan watches them: the first to end while the
process is not stopping makes it unhealthy (``/readyz`` 503 with the reason) and stops the
server, which then exits with ``EXIT_FAILED`` for its supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("menteo.watchdog")

# EX_SOFTWARE (sysexits.h): an internal error; a supervisor restarts the process.
EXIT_FAILED = 70


class Watchdog:
    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self.on_failure = on_failure
        self.armed = True

    def watch(self, name: str, task: asyncio.Task[None] | None) -> None:
        """Report ``task`` if it ends before ``disarm``; ``None`` (a part not running in
        this configuration) is ignored."""
        if task is None:
            return
        task.add_done_callback(lambda done: self._ended(name, done))

    def disarm(self) -> None:
        """The process is stopping: the watched tasks end now as they should."""
        self.armed = False

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if not self.armed:
            return
        self.armed = False  # one failure stops the process; the rest follow from it
        if task.cancelled():
            reason = f"{name} stopped: cancelled"
            log.critical("%s; the process stops", reason)
        elif (exc := task.exception()) is not None:
            reason = f"{name} stopped: {type(exc).__name__}"
            log.critical("%s; the process stops", reason, exc_info=exc)
        else:
            reason = f"{name} stopped"
            log.critical("%s; the process stops", reason)
        self.on_failure(reason)
