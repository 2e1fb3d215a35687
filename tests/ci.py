"""Skip without a service or binary on a developer's machine; fail on CI, where all must run."""

from __future__ import annotations

import os
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
