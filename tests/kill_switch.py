"""``menteo-realtime`` with a kill switch, for tests of what a dead writer does to a process.

Nothing a client sends can kill the writer any more, so the test kills it from outside:
SIGUSR1 cancels the writer's task, as a bug or a native crash would end it. Run as
``python -m tests.kill_switch serve --port 0``.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from realtime.cli import main
from realtime.streams.writer import Writer

_start = Writer.start


def _start_with_kill_switch(self: Writer) -> None:
    _start(self)
    task = self.task
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, task.cancel)


Writer.start = _start_with_kill_switch  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
