"""`/metrics` under `serve --workers 2` (docs/deploy.md, "Metrics"): whichever worker a
scrape reaches, it shows the totals of both, so counters never go backwards between
scrapes. Traffic goes through both workers (the test keeps opening sockets until each
worker's own values file counts some), then every scrape, each on a new connection, must
show exactly what was sent; each worker's `process_*` appear under its `pid`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict

from realtime.auth import issue_token
from tests.backends import make_backend
from tests.client import RoomClient, create_room
from tests.servers import SECRET, ServerProcess, process_env

MOST_SOCKETS = 200  # the kernel spreads accepts over the workers; this many is plenty


def token(user_id: str, **kw: str) -> str:
    return issue_token(SECRET, user_id, user_id.title(), **kw)  # type: ignore[arg-type]


def opened_by_worker(shared: Path) -> dict[int, float]:
    """Each worker's own ``menteo_sockets_opened_total{kind="room"}``, from its file."""
    counts: dict[int, float] = {}
    for file in shared.glob("counter_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(file)):
            _, sample, labels, _ = json.loads(key)
            if sample == "menteo_sockets_opened_total" and labels == {"kind": "room"}:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


async def scrape(url: str) -> str:
    """One scrape on a connection of its own (it may reach either worker)."""
    async with httpx.AsyncClient() as http:
        resp = await http.get(url + "/metrics")
    assert resp.status_code == 200
    return resp.text


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Scrape every 50 ms until ``check`` holds (a scrape has no event to await)."""
    try:
        async with asyncio.timeout(15):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within 15 s: {what}") from None


def value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in /metrics")


async def test_one_scrape_shows_the_totals_of_every_worker(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)  # --workers needs Redis
    shared = tmp_path / "metrics"
    env = process_env(backend, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(shared))
    env["MENTEO_AUTO_MIGRATE"] = "0"  # two workers would race to create the schema
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime.cli", "migrate", env={**os.environ, **env}
    )
    assert await migrate.wait() == 0
    server = ServerProcess(env)
    await server.start()
    try:
        service = {"authorization": "Bearer " + token("backend", role="service")}
        room = await create_room(server.url, service, [("ana", "Ana", "mentor")])
        clients: list[RoomClient] = []
        async with asyncio.timeout(60):  # until both workers have served sockets
            while len([n for n in opened_by_worker(shared).values() if n > 0]) < 2:
                assert len(clients) < MOST_SOCKETS, f"one worker took every socket: {clients}"
                client = await RoomClient.connect(server.ws, room["id"], token("ana"))
                clients.append(client)
                await client.chat(f"c{len(clients)}", "hello")
        sent = len(clients)
        by_worker = opened_by_worker(shared)
        assert sum(by_worker.values()) == sent and len(by_worker) == 2, by_worker
        for _ in range(6):
            text = await scrape(server.url)
            assert value(text, 'menteo_sockets_opened_total{kind="room"}') == sent
            assert value(text, 'menteo_sockets_open{kind="room"}') == sent
            assert value(text, "menteo_events_appended_total") == sent
            assert value(text, 'menteo_welcome_seconds_count{kind="room"}') == sent
            commits = value(text, "menteo_commits_total")
            assert commits >= 1 and value(text, "menteo_commit_seconds_count") == commits
            pids = set(re.findall(r'^process_cpu_seconds_total\{pid="(\d+)"\}', text, re.M))
            assert pids == {str(pid) for pid in by_worker}
            assert re.search(r'^menteo_build_info\{version="[^"]+"\} 1$', text, re.M)
        for client in clients:
            await client.ws.close()

        async def none_open() -> bool:  # each worker notices its own closes
            return value(await scrape(server.url), 'menteo_sockets_open{kind="room"}') == 0

        await eventually(none_open, "every worker's open sockets back to 0")
        assert value(await scrape(server.url), "menteo_events_appended_total") == sent
    finally:
        await server.stop()
    assert not list(shared.glob("*.db")), "serve leaves no values behind"
