"""Applying Yjs updates that may be hostile: Yrs panics on some crafted updates.

pyo3 turns a Rust panic into ``PanicException``, which derives from ``BaseException``, so
``except Exception`` lets it through. A panic may also leave the document half-changed, so a
document that failed an update is thrown away and rebuilt from its last good state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pycrdt import Doc

# What must still end the task: cancellation and the interpreter's own exits.
FATAL = (asyncio.CancelledError, KeyboardInterrupt, SystemExit)


def try_apply(doc: Doc[Any], update: bytes) -> BaseException | None:
    """Apply ``update`` to ``doc``; the error instead of raising it (None: applied)."""
    try:
        doc.apply_update(update)
    except FATAL:
        raise
    except BaseException as exc:  # PanicException included: see the module docstring
        return exc
    return None


def rebuild(base: bytes, updates: Iterable[bytes]) -> Doc[Any]:
    """A fresh document from a good state and the updates that applied after it."""
    doc: Doc[Any] = Doc()
    if base:
        try_apply(doc, base)
    for update in updates:
        try_apply(doc, update)  # each applied cleanly once, in this order
    return doc


def describe(exc: BaseException) -> str:
    """One line for a log: the exception's type and its first line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
