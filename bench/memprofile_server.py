"""Our server under ``tracemalloc``: each SIGUSR1 from the second on writes what was allocated
since the first one (and is still alive).

    python bench/memprofile_server.py serve --host 127.0.0.1 --port 8000   # as realtime.cli

Used by ``python bench/suite.py idle --server ours-tracemalloc``: a snapshot at the baseline
and one with every idle socket open; the difference, grouped by source line (and by the
first frame of ours or of a library), goes to ``$MENTEO_BENCH_TRACEMALLOC_OUT`` (default
``tracemalloc.txt``). tracemalloc slows the server and adds its own memory: use it to see
*where* per-socket memory goes, not how much RSS there is (that is the ``idle`` scenario).
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

OUT = Path(os.environ.get("MENTEO_BENCH_TRACEMALLOC_OUT", "tracemalloc.txt"))
FRAMES = int(os.environ.get("MENTEO_BENCH_TRACEMALLOC_FRAMES", "1"))  # kept per allocation
snapshots: list[tracemalloc.Snapshot] = []
traced: list[int] = []  # the traced total at each kept snapshot, bytes


def dump(signum: int, frame: FrameType | None) -> None:
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    now = tracemalloc.get_traced_memory()[0]
    if len(snapshots) < 2:
        snapshots.append(snap)
        traced.append(now)
    else:
        snapshots[1], traced[1] = snap, now  # the first and the latest: what lives now, not then
    if len(snapshots) < 2:
        return
    lines = ["# tracemalloc: allocations alive now minus at the first snapshot"]
    diff = snap.compare_to(snapshots[0], "lineno")
    total = sum(d.size_diff for d in diff)
    lines.append(f"total growth: {total / 1024:.0f} KiB")
    # Set beside the process's RSS: what RSS gained beyond these is the allocators' (arenas
    # kept after a peak, fragmentation) or tracemalloc's own, not live objects.
    lines.append(
        f"traced: {traced[0] / 2**20:.1f} MiB at the first snapshot, {now / 2**20:.1f} MiB now; "
        f"tracemalloc's own: {tracemalloc.get_tracemalloc_memory() / 2**20:.1f} MiB"
    )
    lines.append("\n## by line")
    for d in diff[:40]:
        lines.append(f"{d.size_diff / 1024:10.1f} KiB {d.count_diff:+8d} blocks  {d.traceback}")
    lines.append("\n## by file")
    for d in snap.compare_to(snapshots[0], "filename")[:25]:
        lines.append(f"{d.size_diff / 1024:10.1f} KiB {d.count_diff:+8d} blocks  {d.traceback}")
    if FRAMES > 1:  # who made the biggest growths: the callers, innermost last
        lines.append(f"\n## by traceback ({FRAMES} frames)")
        for d in snap.compare_to(snapshots[0], "traceback")[:15]:
            lines.append(f"{d.size_diff / 1024:10.1f} KiB {d.count_diff:+8d} blocks")
            lines.extend(f"      {line}" for line in d.traceback.format())
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, dump)
    from realtime.cli import main

    sys.exit(main(sys.argv[1:]))
