"""What validating a notes update costs, per update, on documents of several sizes.

    python bench/notes_validate.py [--updates 2000]

Typing-sized updates (a few characters) are applied to a room document of N characters:
``before``: the old check (decode on an empty document) then the hub's apply; ``now``: the
guarded apply to the room's document that both validates and applies (the hub finds it in
``pending``); ``copy``: validating on a copy of the document first (the alternative not
taken); ``rebuild``: what one refused update costs (the document rebuilt from its last good
state and the updates since).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Doc, Text

from realtime.notes.updates import rebuild, try_apply


def typing(doc: Doc[Any], count: int) -> list[bytes]:
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    text = doc.get("notes", type=Text)
    for i in range(count):
        text.insert(len(text) if i % 7 else 0, f"w{i % 10} ")
    doc.unobserve(sub)
    return updates


def per_update_us(size: int, count: int) -> dict[str, float]:
    author: Doc[Any] = Doc()
    author.get("notes", type=Text).insert(0, "x" * size)
    base = author.get_update()
    updates = typing(author, count)
    results: dict[str, float] = {}

    room: Doc[Any] = Doc()
    room.apply_update(base)
    started = time.process_time()
    for u in updates:
        Doc().apply_update(u)
        room.apply_update(u)
    results["before"] = (time.process_time() - started) / count * 1e6

    room = Doc()
    room.apply_update(base)
    pending: Counter[bytes] = Counter()
    log: list[bytes] = []
    started = time.process_time()
    for u in updates:
        if try_apply(room, u) is None:
            log.append(u)
            pending[u] += 1
        pending.pop(u)  # the hub's delivery finds it: applied once
    results["now"] = (time.process_time() - started) / count * 1e6

    room = Doc()
    room.apply_update(base)
    sample = updates[: max(1, count // 20)]
    started = time.process_time()
    for u in sample:
        copy: Doc[Any] = Doc()
        copy.apply_update(room.get_update())
        copy.apply_update(u)
        room.apply_update(u)
    results["copy"] = (time.process_time() - started) / len(sample) * 1e6

    started = time.process_time()
    rebuild(base, updates)
    results["rebuild_ms"] = (time.process_time() - started) * 1e3
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=2000)
    args = parser.parse_args()
    print("| document | before (µs/update) | now | copy first | one rebuild |")
    print("|---|---|---|---|---|")
    for size in (1_000, 100_000, 1_000_000):
        r = per_update_us(size, args.updates)
        print(
            f"| {size:,} chars | {r['before']:.1f} | {r['now']:.1f} | {r['copy']:.0f} | "
            f"{r['rebuild_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
