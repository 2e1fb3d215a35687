"""What ``bench/feed_fanout.py`` reports: the JSON result built from what was measured, and
its Markdown table row."""

from __future__ import annotations

import argparse
import resource
import statistics
from dataclasses import dataclass
from typing import Any


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> float:
    return round(value * 1000, 2)


def rusage_cpu(r: resource.struct_rusage) -> float:
    return r.ru_utime + r.ru_stime


@dataclass
class Sample:
    """CPU so far and the servers' fan-out counters, at the start or the end of the posts."""

    counters: dict[str, float]
    server_cpu: list[float]
    machine_busy: float
    client: resource.struct_rusage
    wall: float


@dataclass
class Measured:
    sse_count: int
    connect_seconds: float
    rounds: list[dict[str, Any]]
    lost: int
    before: Sample
    after: Sample


def cpu_figures(m: Measured) -> dict[str, Any]:
    b, a = m.before, m.after
    wall = a.wall - b.wall
    servers = [y - x for x, y in zip(b.server_cpu, a.server_cpu, strict=True)]
    client = rusage_cpu(a.client) - rusage_cpu(b.client)
    return {
        "server_cpu_seconds": [round(s, 3) for s in servers],
        "client_cpu_seconds": round(client, 3),
        "wall_seconds": round(wall, 2),
        # Cores busy with anything but these servers and this client (other people's work on
        # the machine): near 0 for a clean figure.
        "other_cpu_cores": round(
            ((a.machine_busy - b.machine_busy) - sum(servers) - client) / wall, 2
        ),
    }


def fanout_figures(m: Measured) -> dict[str, Any]:
    """Measured inside the server: the fan-out loop alone (hand each follower the
    already-encoded bytes), per event and per delivery."""
    delta = {
        k: m.after.counters.get(k, 0.0) - m.before.counters.get(k, 0.0) for k in m.after.counters
    }
    fanned = delta.get("menteo_feed_deliveries_total", 0.0)
    loop_seconds = delta.get("menteo_feed_fanout_seconds_total", 0.0)
    events = delta.get("menteo_feed_events_total", 0.0)
    return {
        "server_fanout_ms_per_post": ms(loop_seconds / events) if events else None,
        "server_fanout_us_per_delivery": round(loop_seconds / fanned * 1e6, 2) if fanned else None,
    }


def summarise(opts: argparse.Namespace, pinned: bool, m: Measured) -> dict[str, Any]:
    rounds = m.rounds
    deliveries = [t for r in rounds for t in r.pop("all")]
    lasts = [r["last_ms"] / 1000 for r in rounds if r["last_ms"] is not None]
    spreads = [r["spread_ms"] / 1000 for r in rounds if r["spread_ms"] is not None]
    return {
        "followers": opts.followers,
        "kinds": {"sse": m.sse_count, "ws": opts.followers - m.sse_count},
        "processes": opts.processes,
        "database": "postgresql"
        if opts.database_url and "postgresql" in opts.database_url
        else "sqlite",
        "redis": bool(opts.redis_url),
        "posts": opts.posts,
        "pinned": pinned,
        "connect_seconds": round(m.connect_seconds, 2),
        "complete": all(r["received"] == opts.followers for r in rounds),
        "lost_connections": m.lost,
        "ack_p50_ms": ms(statistics.median([r["ack_ms"] / 1000 for r in rounds])),
        "time_to_last_p50_ms": ms(pct(lasts, 0.50)),
        "time_to_last_p99_ms": ms(pct(lasts, 0.99)),
        "time_to_last_max_ms": ms(max(lasts)) if lasts else None,
        "spread_p50_ms": ms(pct(spreads, 0.50)),
        "spread_p99_ms": ms(pct(spreads, 0.99)),
        "delivery_p50_ms": ms(pct(deliveries, 0.50)),
        "delivery_p99_ms": ms(pct(deliveries, 0.99)),
        **fanout_figures(m),
        **cpu_figures(m),
        "rounds": rounds,
    }


TABLE_HEADER = (
    "| setup | followers (SSE + WS) | posts | complete | time to last follower p50 / "
    "p99 / max ms | first→last follower p50 / p99 ms | per-delivery p50 / p99 ms | "
    "POST→201 p50 ms | server fan-out loop per post ms (µs per delivery) | "
    "server CPU s | client CPU s | other CPU (cores) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(result: dict[str, Any]) -> str:
    setup = f"{result['processes']} process(es) + {result['database']}" + (
        " + Redis" if result["redis"] else ""
    )
    return (
        f"| {setup} | {result['followers']} ({result['kinds']['sse']} + {result['kinds']['ws']}) "
        f"| {result['posts']} | {'yes' if result['complete'] else 'NO'} "
        f"| {result['time_to_last_p50_ms']} / {result['time_to_last_p99_ms']} / "
        f"{result['time_to_last_max_ms']} "
        f"| {result['spread_p50_ms']} / {result['spread_p99_ms']} "
        f"| {result['delivery_p50_ms']} / {result['delivery_p99_ms']} | {result['ack_p50_ms']} "
        f"| {result['server_fanout_ms_per_post']} ({result['server_fanout_us_per_delivery']}) "
        f"| {' + '.join(map(str, result['server_cpu_seconds']))} "
        f"| {result['client_cpu_seconds']} | {result['other_cpu_cores']} |"
    )
