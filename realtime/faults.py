"""What a long-lived part does with an error one event caused: survive it, log it, count it.

Native libraries raise what ``except Exception`` does not catch: pyo3's ``PanicException``
(a Rust panic in Yrs, under pycrdt) derives from ``BaseException``. A part every room
depends on (the writer, the hub, the broker reader) catches ``BaseException`` at its
boundary, lets through only what means "stop" (``is_fatal``), and goes on with the next
event: one event fails, never the process.
"""

from __future__ import annotations

import asyncio
import logging

from .metrics import Metrics

# Not an input's fault: a task being cancelled, the process being interrupted or exiting,
# a generator being closed. These always propagate.
FATAL: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

METRIC = "menteo_faults_survived_total"


def is_fatal(exc: BaseException) -> bool:
    """True for what must stop the task (or the process) rather than one event."""
    return isinstance(exc, FATAL)


class Faults:
    """Errors survived, by part (``writer``, ``hub``, ``broker``, ``presence``), as one
    counter in ``/metrics``; each is logged once, with its traceback, by the part that
    caught it."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics()

    def survived(
        self, part: str, log: logging.Logger, exc: BaseException, message: str, *args: object
    ) -> None:
        self.metrics.inc(METRIC, part)
        log.error(message, *args, exc_info=exc)

    def count(self, part: str) -> int:
        return self.metrics.counters[(METRIC, part)]
