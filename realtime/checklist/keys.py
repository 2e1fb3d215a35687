"""Position keys that never need renumbering.

A key is a string of base-62 digits read as a fraction (``"V"`` is about 0.5). Between any
two keys there is always another, so an item moves or is inserted by giving it a key between
its neighbours; no other item's key changes. Keys never end in the lowest digit, which keeps
room below every key.

Inserting again and again at one place lengthens keys (about a digit per five inserts), so
the checklist rebalances past ``MAX_KEY`` characters: ``spread`` gives every item a fresh
short key in the same order (docs/protocol.md, "Checklist events").
"""

from __future__ import annotations

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
_INDEX = {d: i for i, d in enumerate(DIGITS)}
BASE = len(DIGITS)
MAX_KEY = 32  # a longer key makes the list rebalance


def key_between(low: str | None, high: str | None) -> str:
    """A key strictly between ``low`` and ``high`` (None: the start or the end of the list)."""
    lo = low or ""
    if high is not None and not lo < high:
        raise ValueError(f"keys out of order: {low!r} !< {high!r}")
    if high is None:
        return _after(lo)
    if not lo:
        return _before(high)
    return _between(lo, high)


def _after(lo: str) -> str:
    # The end of the list: the next first digit when there is one ("Vx" -> "W"), so appends
    # grow keys by a digit per ~35 items, not per ~6.
    if not lo:
        return DIGITS[BASE // 2]
    d = _INDEX[lo[0]]
    if d + 1 < BASE:
        return DIGITS[d + 1]
    return lo[0] + _after(lo[1:])


def _before(hi: str) -> str:
    # The start of the list: the previous first digit, never the lowest (no key ends in it).
    d = _INDEX[hi[0]]
    if d >= 2:
        return DIGITS[d - 1]
    if d == 1 and len(hi) > 1:
        return hi[0]  # "1x" -> "1": a prefix sorts first
    return DIGITS[0] + (_before(hi[1:]) if len(hi) > 1 else DIGITS[BASE // 2])


def _between(lo: str, hi: str) -> str:
    # Walk the digits both keys share; the answer starts with them.
    prefix = []
    i = 0
    while True:
        d_lo = _INDEX[lo[i]] if i < len(lo) else 0
        d_hi = _INDEX[hi[i]] if i < len(hi) else BASE
        if d_lo == d_hi:
            prefix.append(DIGITS[d_lo])
            i += 1
            continue
        if d_hi - d_lo > 1:
            # A digit strictly between them exists: it ends the key (never digit 0: d > d_lo).
            return "".join(prefix) + DIGITS[(d_lo + d_hi) // 2]
        # Adjacent digits: take lo's digit and continue after lo's tail.
        prefix.append(DIGITS[d_lo])
        return "".join(prefix) + _after(lo[i + 1 :])


def keys_after(low: str | None, count: int) -> list[str]:
    """``count`` increasing keys after ``low`` (for appending many items at once)."""
    keys: list[str] = []
    for _ in range(count):
        low = key_between(low, None)
        keys.append(low)
    return keys


def spread(count: int) -> list[str]:
    """``count`` increasing keys, evenly spaced and as short as they can be (a rebalance)."""
    width = 1
    while BASE**width < 4 * (count + 1):  # room for a few inserts between any two
        width += 1
    step = BASE**width // (count + 1)
    keys = []
    for n in range(1, count + 1):
        value, digits = n * step, []
        for _ in range(width):
            value, d = divmod(value, BASE)
            digits.append(DIGITS[d])
        keys.append("".join(reversed(digits)).rstrip(DIGITS[0]))
    return keys
