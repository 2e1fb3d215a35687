"""The suite's plots for docs/benchmarks.md (matplotlib, from the ``bench`` extra)."""

# ruff: noqa: RUF001  (the plots use typographic signs on purpose)
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from figures import find, per_core, plain_name, ratio, storm_rate

Runs = list[dict[str, Any]]

# (label, group, scenario, field, group of the raw reference): the throughput bars.
THROUGHPUT_ROWS = [
    ("fanout delivered/s", "fanout", "fanout", "delivered_per_s", "fanout"),
    ("bigroom delivered/s", "bigroom", "bigroom", "delivered_per_s", "bigroom"),
    ("durable acked/s", "durable", "durable", "acked_per_s", "durable"),
    ("joinstorm connects/s", "joinstorm", "joinstorm", "connects_per_s", "joinstorm"),
    ("scaleout (2 procs + Redis) delivered/s", "scaleout", "fanout", "delivered_per_s", "fanout"),
]
# (legend, server, colour, per core): the bars of each row.
THROUGHPUT_SERIES = [
    ("ours, as measured", "ours", "#1f77b4", False),
    ("ours, per core (CPU-normalised)", "ours", "#aec7e8", True),
    ("python-socketio, as measured", "python-socketio", "#ff7f0e", False),
    ("Node socket.io 4, as measured", "socketio", "#2ca02c", False),
]


def log(msg: str) -> None:
    print(f"[run_all] {msg}", file=sys.stderr, flush=True)


def plots(runs: Runs, out: Path) -> list[str]:
    """Writes the plots into ``out``; the names of those written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for draw in (throughput_plot, latency_plot, memory_plot):
        fig, name = draw(plt, runs)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def throughput_ratios(runs: Runs, server: str, normalised: bool) -> list[float]:
    """One series of the throughput plot: ours (or python-socketio) ÷ raw, per row."""
    values = []
    for _, key, scenario, field, ref in THROUGHPUT_ROWS:
        srv = {"scaleout": {"ours": "ours-redis", "python-socketio": "python-socketio-redis"}}.get(
            key, {}
        ).get(server, server)
        mine, raw = find(runs, key, scenario, srv), find(runs, ref, scenario, "raw")
        if not normalised:
            values.append(ratio(mine.get(field), raw.get(field)) or 0)
        elif scenario == "joinstorm":
            values.append(ratio(storm_rate(mine), storm_rate(raw)) or 0)
        else:
            values.append(ratio(per_core(mine, field), per_core(raw, field)) or 0)
    return values


def throughput_plot(plt: Any, runs: Runs) -> tuple[Any, str]:
    fig, ax = plt.subplots(figsize=(8.5, 5))
    width = 0.27
    for i, (name, server, color, normalised) in enumerate(THROUGHPUT_SERIES):
        values = throughput_ratios(runs, server, normalised)
        ys = [y + (i - 1) * width for y in range(len(THROUGHPUT_ROWS))]
        ax.barh(
            ys,
            values,
            height=width,
            label=name,
            color=color,
            hatch="//" if normalised else None,
            edgecolor="#1f77b4" if normalised else None,
        )
        for y, v in zip(ys, values, strict=True):
            ax.text(v + 0.01, y, f"{v:.2f}×", va="center", fontsize=8)
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(0.70, color="green", lw=1, ls="--", label="target fanout ≥ 0.70×")
    ax.axvline(0.45, color="purple", lw=1, ls=":", label="target scaleout ≥ 0.45×")
    ax.set_yticks(range(len(THROUGHPUT_ROWS)), [r[0] for r in THROUGHPUT_ROWS])
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the raw websockets reference, same run (higher is better)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Throughput as a ratio to the raw Python reference")
    return fig, "bench-throughput.png"


def latency_plot(plt: Any, runs: Runs) -> tuple[Any, str]:
    """Latency at 20k deliveries/s."""
    fig, ax = plt.subplots(figsize=(8, 4))
    servers = [
        ("raw", "latency"),
        ("python-socketio", "latency"),
        ("socketio", "latency"),
        ("ours", "latency"),
        ("ours-redis", "scaleout"),
        ("python-socketio-redis", "scaleout"),
    ]
    names: list[str] = []
    series: list[list[float]] = [[], [], [], []]
    for server, key in servers:
        r = find(runs, key, "latency", server)
        if not r:
            continue
        names.append(
            plain_name(server).replace(" + PostgreSQL", "").replace(", 2 processes", "\n2 procs")
        )
        for values, field in zip(
            series, ("e2e_p50_ms", "e2e_p99_ms", "e2e_p999_ms", "typing_p99_ms"), strict=True
        ):
            values.append(r.get(field) or 0)
    xs = range(len(names))
    for i, (vals, label) in enumerate(
        zip(series, ("send→recv p50", "p99", "p99.9", "typing p99"), strict=True)
    ):
        ax.bar([x + (i - 1.5) * 0.2 for x in xs], vals, width=0.2, label=label)
    ax.axhline(10, color="red", lw=1, ls="--", label="target p99 ≤ 10 ms")
    ax.axhline(2, color="purple", lw=1, ls=":", label="target typing p99 ≤ 2 ms")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("ms (log scale)")
    ax.set_title("Latency at 20,000 deliveries/s (open loop)")
    ax.legend(fontsize=7)
    return fig, "bench-latency.png"


def memory_plot(plt: Any, runs: Runs) -> tuple[Any, str]:
    """Memory per idle socket."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names, k1, k10 = [], [], []
    for server in ("raw", "python-socketio", "socketio", "ours"):
        r = find(runs, "idle", "idle", server)
        if r:
            names.append(plain_name(server))
            k1.append(r.get("kib_per_socket_1000") or 0)
            k10.append(r.get("kib_per_socket_10000") or 0)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], k1, width=0.4, label="1,000 sockets")
    ax.bar([x + 0.2 for x in xs], k10, width=0.4, label="10,000 sockets")
    ax.axhline(24, color="red", lw=1, ls="--", label="target ≤ 24 KiB")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("server RSS KiB per idle socket")
    ax.legend(fontsize=8)
    return fig, "bench-memory.png"
