"""Position keys that never need renumbering.

A key is a string of base-62 digits read as a fraction (``"V"`` is about 0.5). Between any
two keys there is always another, so an item moves or is inserted by giving it a key between
its neighbours; no other item's key changes. Keys never end in the lowest digit, which keeps
room below every key.
"""

from __future__ import annotations

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
_INDEX = {d: i for i, d in enumerate(DIGITS)}
BASE = len(DIGITS)


def key_between(low: str | None, high: str | None) -> str:
    """A key strictly between ``low`` and ``high`` (None: the start or the end of the list)."""
    lo = low or ""
    if high is not None and not lo < high:
        raise ValueError(f"keys out of order: {low!r} !< {high!r}")
    return _between(lo, high)


def _between(lo: str, hi: str | None) -> str:
    # Walk the digits both keys share; the answer starts with them.
    prefix = []
    i = 0
    while True:
        d_lo = _INDEX[lo[i]] if i < len(lo) else 0
        d_hi = _INDEX[hi[i]] if hi is not None and i < len(hi) else BASE
        if d_lo == d_hi:
            prefix.append(DIGITS[d_lo])
            i += 1
            continue
        if d_hi - d_lo > 1:
            # A digit strictly between them exists: it ends the key (never digit 0: d > d_lo).
            return "".join(prefix) + DIGITS[(d_lo + d_hi) // 2]
        # Adjacent digits: take lo's digit and continue between lo's tail and "the end".
        prefix.append(DIGITS[d_lo])
        return "".join(prefix) + _between(lo[i + 1 :], None)


def keys_after(low: str | None, count: int) -> list[str]:
    """``count`` increasing keys after ``low`` (for appending many items at once)."""
    keys: list[str] = []
    for _ in range(count):
        low = key_between(low, None)
        keys.append(low)
    return keys
