"""Webhook notifications under load (issue 18): what they cost the live path, and how soon a
due notification reaches the receiver.

    python bench/webhook_load.py                 # both parts, SQLite
    python bench/webhook_load.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/menteo_bench
    python bench/webhook_load.py --smoke         # seconds: the code paths only

(a) **Fan-out, webhook on vs off**: ``bench/suite.py fanout --server ours`` (20 rooms x 10
sockets, 2 senders per room, closed loop), run alternately without ``MENTEO_WEBHOOK_URL``
and with it pointing at a receiver that answers 200 (``--rounds`` of each). Every member is
connected, so each message still makes outbox rows (one per member and room, folded); with
``--fanout-delay 2`` they also come due during the run and are judged and cancelled every
2 s (the default delay, 60 s, judges them once a minute).
(b) **Delivery latency**: ``--notifications`` (1,000) due notifications: rooms of ten
members who are all away (a mentor, nine mentees), one system message per room from the
platform over REST, so each member gets one; the latency of
each is the receiver's arrival time minus its due time (the message's commit ``ts`` plus
``MENTEO_NOTIFY_DELAY``), p50/p99/max, and whether each arrived exactly once.

Prints JSON. Figures only: nothing is asserted (a run exits 1 only if a notification is
missing or a fan-out run failed; one sent twice, with its one id, is reported as
``exactly_once: false``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import suite

from menteo_testkit.database import reset_schema
from menteo_testkit.ports import free_port
from menteo_testkit.server import Server, child_env
from menteo_testkit.webhook_receiver import Receiver, run_receiver
from realtime.auth import issue_token

HOOK_SECRET = "bench-webhook-secret-" + "x" * 24
MEMBERS = 10  # members per room in part (b), all away


def log(msg: str) -> None:
    print(f"[webhook_load] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000, 1)


def iso(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# (a) -----------------------------------------------------------------------------------
async def fanout_round(
    smoke: bool, hook: str | None, duration: float, delay: float
) -> dict[str, Any]:
    suite.EXTRA_ENV.clear()
    if hook is not None:
        suite.EXTRA_ENV.update(
            {
                "MENTEO_WEBHOOK_URL": hook,
                "MENTEO_WEBHOOK_SECRET": HOOK_SECRET,
                "MENTEO_NOTIFY_DELAY": str(delay),
            }
        )
    prm = suite.Params(smoke, 0.5 if smoke else 1.5, duration)
    # suite.run runs its own event loop: off this one (the receiver's) on a thread.
    result: dict[str, Any] = await asyncio.to_thread(
        suite.run,
        "fanout",
        "ours",
        prm,
        server_cpus="0",
        client_cpu=1,
        no_pin=False,
        pg_url="",
        redis_url="",
        tmpdir=None,
    )
    suite.EXTRA_ENV.clear()
    return result


async def part_a(smoke: bool, rounds: int, duration: float, delay: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    async with run_receiver(Receiver()) as hook:
        for n in range(rounds):
            for mode in ("off", "on"):
                url = hook.url if mode == "on" else None
                out = await fanout_round(smoke, url, duration, delay)
                runs[mode].append(out)
                log(
                    f"fanout round {n + 1} webhook {mode}: "
                    f"{out.get('delivered_per_s')} delivered/s, "
                    f"{out.get('cpu_us_per_delivery')} µs CPU/delivery, ok={out.get('ok')}"
                )
        received = len(hook.requests)

    def summary(mode: str) -> dict[str, Any]:
        rates = [r["delivered_per_s"] for r in runs[mode] if r.get("ok")]
        cpu = [r["cpu_us_per_delivery"] for r in runs[mode] if r.get("ok")]
        return {
            "delivered_per_s": rates,
            "median_delivered_per_s": statistics.median(rates) if rates else None,
            "cpu_us_per_delivery": cpu,
            "median_cpu_us_per_delivery": statistics.median(cpu) if cpu else None,
        }

    off, on = summary("off"), summary("on")
    ratio = None
    if off["median_delivered_per_s"] and on["median_delivered_per_s"]:
        ratio = round(on["median_delivered_per_s"] / off["median_delivered_per_s"], 3)
    return {
        "notify_delay_s": delay,
        "off": off,
        "on": on,
        "on_over_off": ratio,
        "notifications_received": received,  # members were all present: expected 0
        "ok": all(r.get("ok") for rs in runs.values() for r in rs),
    }


# (b) -----------------------------------------------------------------------------------
async def part_b(notifications: int, database_url: str, delay: float) -> dict[str, Any]:
    rooms = max(1, notifications // MEMBERS)
    secret = "bench-secret-" + "y" * 32
    service = {"authorization": "Bearer " + issue_token(secret, "svc", "Svc", role="service")}
    with tempfile.TemporaryDirectory(prefix="menteo-webhook-") as tmp:
        if database_url.startswith("postgresql"):
            admin = database_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres"
            await reset_schema(database_url.replace("+asyncpg", ""), admin, timeout=10)
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        async with run_receiver(Receiver()) as hook:
            env = child_env(
                {
                    "MENTEO_SECRET": secret,
                    "MENTEO_DATABASE_URL": url,
                    "MENTEO_AUTO_MIGRATE": "1",
                    "MENTEO_WEBHOOK_URL": hook.url,
                    "MENTEO_WEBHOOK_SECRET": HOOK_SECRET,
                    "MENTEO_NOTIFY_DELAY": str(delay),
                    **suite.unlimited_env(),
                }
            )
            server = Server(free_port(), None, Path(tmp) / "server.log", env=env)
            server.spawn()
            try:
                await asyncio.to_thread(server.wait_ready, 30)
                due: dict[str, float] = {}  # room -> due time
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    ids = []
                    for r in range(rooms):
                        # Every member is away: each gets one notification (the message
                        # comes from the platform, not from a member).
                        members = [
                            {
                                "user_id": f"u{r}-{m}",
                                "name": "U",
                                "role": "mentee" if m else "mentor",
                            }
                            for m in range(MEMBERS)
                        ]
                        made = await http.post(
                            "/api/rooms",
                            json={"title": f"r{r}", "members": members},
                            headers=service,
                        )
                        made.raise_for_status()
                        ids.append(made.json()["id"])
                    started = time.time()
                    for room in ids:
                        sent = await http.post(
                            f"/api/rooms/{room}/messages",
                            json={"id": "m1", "body": "are you there?"},
                            headers=service,
                        )
                        sent.raise_for_status()
                        due[room] = iso(sent.json()["ts"]) + delay
                    log(f"{rooms} messages sent in {time.time() - started:.2f} s")
                expected = rooms * MEMBERS
                await hook.until(
                    lambda got: len(hook.answered(200)) >= expected,
                    f"{expected} notifications answered 200",
                    300,
                )
                # Answered 2xx once each; an attempt that timed out before its answer is
                # sent again under the same id (at least once): counted, not a latency.
                # The server's own count of attempts it retried says why a duplicate came.
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    scraped = (await http.get("/metrics")).text
                retried = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in scraped.splitlines()
                    if line.startswith('menteo_webhook_deliveries_total{result="retry"}')
                )
                seen: dict[tuple[str, str], int] = {}
                ids: dict[tuple[str, str], set[str]] = {}
                latencies = []
                for request in hook.answered(200):
                    body = request.json
                    key = (body["user_id"], body["room"]["id"])
                    seen[key] = seen.get(key, 0) + 1
                    ids.setdefault(key, set()).add(body["id"])
                    latencies.append(request.at - due[body["room"]["id"]])
                return {
                    "backend": "postgresql" if url.startswith("postgresql") else "sqlite",
                    "notifications": expected,
                    "requests": len(hook.requests),
                    "answered_2xx": len(hook.answered(200)),
                    "all_arrived": len(seen) == expected,
                    "one_id_per_notification": all(len(v) == 1 for v in ids.values()),
                    "exactly_once": len(seen) == expected and set(seen.values()) == {1},
                    "server_retries": int(retried),  # a timeout answered late is sent again
                    "delay_s": delay,
                    "latency_p50_ms": pct(latencies, 50),
                    "latency_p99_ms": pct(latencies, 99),
                    "latency_max_ms": pct(latencies, 100),
                    "spread_of_due_s": round(max(due.values()) - min(due.values()), 3),
                }
            finally:
                server.terminate()


async def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="small and short: the code paths only")
    p.add_argument(
        "--rounds", type=int, default=None, help="fan-out runs of each (default 3; smoke 1)"
    )
    p.add_argument("--duration", type=float, default=None, help="fan-out seconds (default 4)")
    p.add_argument("--notifications", type=int, default=None, help="default 1000; smoke 50")
    p.add_argument("--delay", type=float, default=1.0, help="MENTEO_NOTIFY_DELAY in part (b)")
    p.add_argument(
        "--fanout-delay",
        type=float,
        default=60.0,
        help="MENTEO_NOTIFY_DELAY in part (a): the default 60 (rows written, judged after the "
        "run), or small (e.g. 2) to judge and cancel every member's row during the run",
    )
    p.add_argument("--database-url", default="", help="part (b); default a fresh SQLite file")
    p.add_argument("--only", choices=("a", "b"), default=None)
    a = p.parse_args()
    rounds = a.rounds if a.rounds is not None else (1 if a.smoke else 3)
    duration = a.duration if a.duration is not None else (1.5 if a.smoke else 4.0)
    count = a.notifications if a.notifications is not None else (50 if a.smoke else 1000)
    out: dict[str, Any] = {"smoke": a.smoke}
    if a.only != "b":
        delay = 2.0 if a.smoke else a.fanout_delay
        out["fanout"] = await part_a(a.smoke, rounds, duration, delay)
    if a.only != "a":
        out["delivery"] = await part_b(count, a.database_url, a.delay)
    print(json.dumps(out, indent=1))
    # A duplicate (same id) is within at-least-once and reported as exactly_once: false; a
    # missing notification or a failed fan-out run is what fails the run.
    delivery = out.get("delivery", {})
    arrived = delivery.get("all_arrived", True) and delivery.get("one_id_per_notification", True)
    ok = out.get("fanout", {}).get("ok", True) and arrived
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
