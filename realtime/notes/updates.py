"""Applying Yjs updates that may be hostile: Yrs panics on some crafted updates.

pyo3 turns a Rust panic into ``PanicException``, which derives from ``BaseException``, so
``except Exception`` lets it through. A panic may also leave the document half-changed, so a
document that failed an update is thrown away and rebuilt from its last good state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pycrdt import Doc, get_state, get_update, merge_updates

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


EMPTY = b"\x00\x00"  # an update with no structs and no deletions
NO_STRUCTS = b"\x00"  # how an update without structs begins


def snapshot(doc: Doc[Any], updates: list[bytes]) -> bytes:
    """``doc``'s state for storing, losing nothing of ``updates`` (all applied to it).

    ``Doc.get_update`` leaves out what Yrs holds pending (structs, and deletions of items,
    whose dependencies have not arrived): a snapshot of it alone would drop updates that
    were stored and accepted. What is pending is merged in, if the merged state decodes to
    the same document (merging does not when authors shared a Yjs client id with
    diverging histories; then the state alone is kept).
    """
    state = doc.get_update()
    if not updates:
        return state
    try:
        known = get_state(state)
        rests = [rest for rest in (get_update(u, known) for u in updates) if rest != EMPTY]
        extra = [rest for rest in rests if rest[:1] != NO_STRUCTS]
        deletions = [rest for rest in rests if rest[:1] == NO_STRUCTS]
        if deletions:
            have = get_update(state, known)  # no structs: the document's deletions
            wanted = merge_updates(have, *deletions)
            if wanted != have:
                extra.append(wanted)  # deletions of items that have not arrived
        if not extra:
            return state
        merged = merge_updates(state, *extra)
        check: Doc[Any] = Doc()
        check.apply_update(merged)
        return merged if check.get_update() == state else state
    except FATAL:
        raise
    except BaseException:  # each applied alone; if together they do not, keep the state
        return state


def describe(exc: BaseException) -> str:
    """One line for a log: the exception's type and its first line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
