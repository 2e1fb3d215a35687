"""Skip without a service or binary on a developer's machine; fail on CI, where all must run."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

FALSE = ("", "0", "false", "no", "off")


def on_ci() -> bool:
    """Any truthy ``CI`` (``true``, ``1``, ``yes``...), as CI services set it."""
    return os.environ.get("CI", "").strip().lower() not in FALSE


def skip_or_fail(message: str) -> NoReturn:
    """Skip here with ``message``; on CI fail with it instead: a missing part is a failure."""
    if on_ci():
        pytest.fail(message + "; on CI it must run")
    pytest.skip(message)


@contextmanager
def one_worker_at_a_time(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s install lock: under pytest-xdist two workers would otherwise run
    ``npm ci`` into the same node_modules at once. Check what is installed inside it."""
    with open(folder / ".install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
