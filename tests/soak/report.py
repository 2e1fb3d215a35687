"""Memory curves: flatness per process lifetime, and the plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import Sample

MIB = 1024 * 1024


@dataclass
class Lifetime:
    server: str
    pid: int
    start: float  # seconds since the load started
    end: float
    points: list[tuple[float, float, int]]  # (t, RSS MiB, our sockets on this server)


@dataclass
class Flatness:
    lifetime: Lifetime
    warmup: float
    first_rss: float  # MiB, median of the first third after warm-up
    last_rss: float  # MiB, median of the last third
    first_conns: float
    last_conns: float
    peak_rss: float

    @property
    def growth(self) -> float:
        return self.last_rss / self.first_rss - 1

    @property
    def comparable(self) -> bool:
        """The process held about as many of our sockets in the last third as in the first:
        at most 10 % more (more sockets would explain growth), at most 20 % fewer (fewer
        could hide some, though a Python process seldom gives memory back)."""
        first = max(self.first_conns, 1)
        return 0.8 * first <= self.last_conns <= 1.1 * first

    @property
    def flat(self) -> bool | None:
        """At most 10 % (or 8 MiB, for small processes) more in the last third than in the
        first, after warm-up; None when the socket counts differ too much to compare."""
        if not self.comparable:
            return None
        return self.last_rss <= max(self.first_rss * 1.10, self.first_rss + 8)


def lifetimes(samples: list[Sample], server: str) -> list[Lifetime]:
    out: list[Lifetime] = []
    current: Lifetime | None = None
    for s in samples:
        pid, rss = s.pid.get(server), s.rss.get(server)
        if pid is None or rss is None:
            current = None
            continue
        if current is None or current.pid != pid:
            current = Lifetime(server, pid, s.t, s.t, [])
            out.append(current)
        current.end = s.t
        current.points.append((s.t, rss / MIB, s.conns.get(server, 0)))
    return out


def flatness(life: Lifetime, warmup: float, until: float, min_span: float = 60) -> Flatness | None:
    """Compare the last third of a lifetime with its first third, from ``warmup`` s after
    its start to ``until`` (the end of the load)."""
    points = [p for p in life.points if life.start + warmup <= p[0] <= until]
    if len(points) < 6 or points[-1][0] - points[0][0] < min_span:
        return None
    third = len(points) // 3
    first, last = points[:third], points[-third:]
    return Flatness(
        life,
        warmup,
        statistics.median(p[1] for p in first),
        statistics.median(p[1] for p in last),
        statistics.median(p[2] for p in first),
        statistics.median(p[2] for p in last),
        max(p[1] for p in life.points),
    )


def before(life: Lifetime, times: list[float], span: float = 20) -> list[tuple[float, float]]:
    """The RSS (median MiB) in the ``span`` seconds before each of ``times`` in the lifetime:
    before each kill of the other process, that is, before this one takes every socket. A
    leak grows between those peaks; what a peak leaves (the allocator's arenas, caches
    bounded by what they hold) shows as a step at each one, which stops growing once the
    peaks have been seen and the caches are full."""
    out = []
    for t in times:
        points = [p[1] for p in life.points if t - span <= p[0] < t]
        if life.start < t < life.end and points:
            out.append((t, statistics.median(points)))
    return out


def plot(
    samples: list[Sample],
    servers: list[str],
    chaos: list[dict[str, Any]],
    phases: dict[str, float],
    path: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        name: c for name, c in zip(servers, ("tab:blue", "tab:orange", "tab:green"), strict=False)
    }
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    for name in servers:
        for i, life in enumerate(lifetimes(samples, name)):
            t = [p[0] for p in life.points]
            top.plot(
                t,
                [p[1] for p in life.points],
                color=colors[name],
                lw=1.4,
                label=f"server {name} RSS" if i == 0 else None,
            )
    gen = top.twinx()  # the load generator keeps every client's view: it grows, on its own axis
    gen.plot(
        [s.t for s in samples],
        [s.generator_rss / MIB for s in samples],
        color="grey",
        lw=1,
        ls="--",
        label="load generator RSS (right axis)",
    )
    gen.set_ylabel("load generator RSS (MiB)", color="grey")
    gen.tick_params(axis="y", colors="grey")
    gen.set_ylim(bottom=0)
    for name in servers:
        bottom.plot(
            [s.t for s in samples],
            [s.conns.get(name, 0) for s in samples],
            color=colors[name],
            lw=1.2,
            label=f"sockets on {name}",
        )
    marks = {
        "kill": ("red", "kill -9"),
        "redis": ("purple", "Redis restart"),
        "drop": ("green", "drop 10 %"),
        "pg": ("brown", "PostgreSQL restart"),
        "latency": ("olive", "store latency"),
        "reset": ("cyan", "store links reset"),
        "blackhole": ("black", "store blackhole"),
        "rolling": ("magenta", "rolling restart"),
        "diskfull": ("darkorange", "disk full"),
    }
    seen: set[str] = set()
    for event in chaos:
        t, kind = event["t"], event["kind"]
        color, label = marks[kind]
        for ax in (top, bottom):
            ax.axvline(
                t,
                color=color,
                lw=0.9,
                alpha=0.6,
                label=label if ax is top and kind not in seen else None,
            )
        seen.add(kind)
    if "load_end" in phases:
        for ax in (top, bottom):
            ax.axvspan(phases["load_end"], max(s.t for s in samples), color="grey", alpha=0.12)
        top.text(
            phases["load_end"],
            top.get_ylim()[1] * 0.98,
            " drain + verify",
            va="top",
            fontsize=8,
            color="dimgrey",
        )
    top.set_ylabel("server RSS (MiB)")
    top.set_ylim(bottom=0, top=max((s.rss[n] or 0) / MIB for s in samples for n in servers) * 1.25)
    handles, labels = top.get_legend_handles_labels()
    more_handles, more_labels = gen.get_legend_handles_labels()
    top.legend(handles + more_handles, labels + more_labels, loc="lower right", fontsize=8, ncol=2)
    top.set_title(title, fontsize=10)
    top.grid(alpha=0.3)
    bottom.set_ylabel("open sockets")
    bottom.set_xlabel("seconds since the load started")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="lower right", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
