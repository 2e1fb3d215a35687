"""Reading the suite's runs: one run's figures by (group, scenario, server), ratios to the raw
reference, the rate at one full core, and how a figure is written on the page."""

# ruff: noqa: RUF001  (the rendered page uses typographic signs on purpose)
from __future__ import annotations

from typing import Any

# Runs saved before the groups had names used letters (bench/last_run.json and earlier).
LEGACY_KEYS = {
    "a": "fanout",
    "b": "latency",
    "c": "bigroom",
    "d": "idle",
    "e": "durable",
    "f": "joinstorm",
    "g": "scaleout",
    "h": "feed",
}

SERVER_NAMES = {
    "raw": "raw `websockets.broadcast`",
    "python-socketio": "python-socketio",
    "socketio": "Node socket.io 4",
    "ours": "**ours**",
    "granian": "ours under Granian",
    "ours-pg": "**ours** (PostgreSQL)",
    "ours-redis": "**ours**, 2 processes + Redis + PostgreSQL",
    "python-socketio-redis": "python-socketio, 2 processes + Redis",
}


# Before Node's socket.io joined the references (issue 23), ``socketio`` was python-socketio.
LEGACY_SERVERS = {"socketio": "python-socketio", "socketio-redis": "python-socketio-redis"}


def rename_legacy(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in runs:
        r["key"] = LEGACY_KEYS.get(r.get("key", ""), r.get("key"))
        if str(r.get("label", "")).startswith("python-socketio") or (
            r.get("server") == "socketio-redis"
        ):
            r["server"] = LEGACY_SERVERS.get(r.get("server", ""), r.get("server"))
            old = f"--server {r.get('server', '').removeprefix('python-')}"
            r["command"] = str(r.get("command", "")).replace(old, f"--server {r['server']}")
    return runs


def find(runs: list[dict[str, Any]], key: str, scenario: str, server: str) -> dict[str, Any]:
    """The run of ``scenario`` on ``server`` in group ``key`` ({} if it failed or is absent)."""
    for r in runs:
        if r.get("key") == key and r.get("scenario") == scenario and r.get("server") == server:
            return r if r.get("ok") else {}
    return {}


def ratio(a: Any, b: Any) -> float | None:
    if a is None or b in (None, 0):
        return None
    return round(float(a) / float(b), 2)


def per_core(r: dict[str, Any], field: str) -> float | None:
    """``field`` (a rate) divided by the server's CPU share: the rate at one full core.

    On a shared machine a server often gets less than its core; CPU time per unit of work
    is much steadier than the rate, so this is the figure to compare when runs were
    disturbed (it assumes the cost per message stays the same up to a full core)."""
    value, cpu = r.get(field), r.get("server_cpu")
    if value is None or not cpu or cpu < 0.05:
        return None
    return round(float(value) / float(cpu), 1)


def storm_rate(r: dict[str, Any]) -> float | None:
    """Joins per server CPU-second in the join storm."""
    cpu, n = r.get("server_cpu_s"), r.get("clients")
    return n / cpu if cpu and n else None


def storm_cpu_ms(r: dict[str, Any]) -> float | None:
    """Server CPU milliseconds per join in the join storm."""
    cpu, n = r.get("server_cpu_s"), r.get("clients")
    return round(1000 * cpu / n, 2) if cpu and n else None


def f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        if digits == 0 and abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{max(digits, 2) if abs(value) < 10 else 1}f}"
    return str(value)


def fr(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def plain_name(server: str) -> str:
    """A server's name without Markdown (for plots)."""
    return SERVER_NAMES[server].replace("**", "").replace("`", "")
