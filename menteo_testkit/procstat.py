"""CPU and memory of processes and of the machine, read from ``/proc`` (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CPU_GROUPS = ("postgres", "redis-server")  # by /proc/<pid>/comm; every PG backend counts
MAX_TREE = 64  # processes followed below one pid


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (None: gone, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the parenthesised name
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0: gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Granian runs its worker as a child)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(rest[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < MAX_TREE:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core, from ``/proc/stat``."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


def machine_cpu() -> dict[str, float]:
    """CPU seconds so far: busy (user..softirq) and steal of the machine, busy of each core
    ("cpu0", "cpu1", ...); {} without /proc."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in lines:
        if not line.startswith("cpu"):
            break
        name, *fields = line.split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        busy = (user + nice + system + irq + softirq) / CLK_TCK
        if name == "cpu":
            out.update(busy=busy, steal=steal / CLK_TCK)
        else:
            out[name] = busy
    return out


def group_cpu() -> dict[str, float]:
    """CPU seconds so far of PostgreSQL and Redis processes (may need root for others' /proc)."""
    totals = dict.fromkeys(CPU_GROUPS, 0.0)
    for name, seconds in group_cpu_pids().values():
        totals[name] += seconds
    return totals


def group_cpu_pids() -> dict[int, tuple[str, float]]:
    """Per process of PostgreSQL and Redis: (group, CPU seconds so far)."""
    out: dict[int, tuple[str, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name in CPU_GROUPS:
            rest = text.rsplit(")", 1)[1].split()
            out[int(stat.parent.name)] = (name, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def group_cpu_grown(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per group between two ``group_cpu_pids`` readings, process by process:
    one that exited meanwhile (an autovacuum worker, a closed session) is left out rather
    than subtracted, so a figure is never negative; one that started counts whole."""
    grown = dict.fromkeys(CPU_GROUPS, 0.0)
    for pid, (name, seconds) in after.items():
        grown[name] += max(0.0, seconds - before.get(pid, (name, 0.0))[1])
    return grown
