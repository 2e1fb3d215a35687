"""Summarise a py-spy ``--format raw`` profile: where the samples are, by function.

    py-spy record -p PID -f raw -o prof.txt --duration 15
    python bench/profile_summary.py prof.txt [--top 30] [--focus realtime/]

Prints each function's *self* share (samples where it is the innermost frame) and
*inclusive* share (samples with it anywhere on the stack), as % of all samples; idle
samples (py-spy drops them unless ``--idle``) are not counted. Frames are named
``function (file)`` with line numbers dropped, so all lines of a function add up.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3.", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return f"{m.group('func')} ({path})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--focus", default=None, help="also list functions whose file contains this")
    a = p.parse_args()
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in Path(a.profile).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [
            name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    print(f"{total} samples")
    print(f"\n## self (innermost frame), top {a.top}")
    for f, n in self_c.most_common(a.top):
        print(f"{100 * n / total:6.1f}%  {f}")
    print(f"\n## inclusive, top {a.top}")
    for f, n in incl.most_common(a.top):
        print(f"{100 * n / total:6.1f}%  {f}")
    if a.focus:
        print(f"\n## inclusive, files containing {a.focus!r}")
        for f, n in incl.most_common():
            if a.focus in f and 100 * n / total >= 0.5:
                print(f"{100 * n / total:6.1f}%  {f}")


if __name__ == "__main__":
    main()
