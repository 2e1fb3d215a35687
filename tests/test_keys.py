"""Position keys: always one strictly between two neighbours, never renumbering."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.checklist.keys import key_between, keys_after


# A pure function: more examples than the profile's socket-level count (at least 100).
@settings(max_examples=max(100, 2 * settings.default.max_examples))
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=300))
def test_inserting_anywhere_keeps_strict_order(places: list[int]) -> None:
    keys: list[str] = []
    for place in places:
        i = place % (len(keys) + 1)
        low = keys[i - 1] if i > 0 else None
        high = keys[i] if i < len(keys) else None
        key = key_between(low, high)
        assert (low is None or low < key) and (high is None or key < high)
        assert not key.endswith("0")
        keys.insert(i, key)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_keys_stay_short_for_appends() -> None:
    keys = keys_after(None, 500)
    assert keys == sorted(keys) and max(map(len, keys)) <= 100
