"""Shared notes against the Yjs ecosystem's servers: the same editors, the same run.

    python bench/notes_compare.py                                  # 50 rooms x 4, at 5 and 20/s
    python bench/notes_compare.py --servers ours,hocuspocus --rates 20 --duration 300
    python bench/notes_compare.py --smoke                          # a few rooms, 1.5 s each

For each server and each typing rate in turn, a fresh server is started pinned with
``taskset`` to --server-cpus (this process, the load generator, to --client-cpu), then
``--rooms`` rooms of ``--editors`` editors each connect, sync, and type on a fixed timetable
(open loop): every editor inserts 1-3 characters at the top of the room's ``Y.Text``
``notes``, ``rate`` times a second (where it keeps typing: see ``Editor.type``). Figures
over the measured interval:

- server CPU per update: the server processes' CPU time ÷ updates sent;
- update latency p50/p99: from writing an update to each other editor of the room
  receiving it (one clock: every editor lives in this process);
- convergence: after the drain, every editor of a room and a fresh reader that syncs from
  the server hold the same text;
- the server's CPU share in every ``--slice`` seconds of the interval (flat or rising).

The servers (``--servers``):
  ours        ``menteo-realtime serve`` on SQLite: every update stored before it is relayed
  yws         ``@y/websocket-server`` 0.1.1 on yjs 13 (bench/reference/yws_server.mjs), in memory
  hocuspocus  ``@hocuspocus/server`` 3 (bench/reference/hocuspocus_server.mjs), in memory
  pycrdt      pycrdt-websocket under Uvicorn (bench/reference/pycrdt_ws_server.py), in memory

The editors are protocol-level clients (bench/wsclient.py, one ``pycrdt.Doc`` each) speaking
the y-websocket sync protocol, with Hocuspocus's framing (the document's name before every
message, an auth message first) for Hocuspocus: no provider library, and the garbage
collector frozen after setup and off while measuring, so the load generator's own loop
stays well under a millisecond late (``loop_lag_p99_ms`` says). The Node servers' packages
come from bench/reference/package.json (``npm ci``, as for bench/suite.py's socket.io).
Figures only: nothing is asserted but that every run converged (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pycrdt import Doc, Text
from suite import (
    BENCH,
    DEFAULT_PG,
    DEFAULT_REDIS,
    SERVERS,
    MenteoTarget,
    Meter,
    ServerSet,
    ServerSpec,
    log,
    machine_info,
    node_reference,
    pct,
    raise_fd_limit,
    until,
    uv_run,
    wait_quiet,
)
from wsclient import WSClient, connect

from menteo_testkit.ports import HOST
from menteo_testkit.tokens import token

REFERENCE = BENCH / "reference"
NOTES_SERVERS: dict[str, ServerSpec] = {
    "ours": SERVERS["ours"],
    "yws": ServerSpec("yws", "yws", "@y/websocket-server 0.1.1, yjs 13 (in memory)"),
    "hocuspocus": ServerSpec("hocuspocus", "hocuspocus", "@hocuspocus/server 3 (in memory)"),
    "pycrdt": ServerSpec("pycrdt", "pycrdt", "pycrdt-websocket (in memory)"),
}
NODE_SERVERS = {"yws", "hocuspocus"}

SYNC, AWARENESS, HP_AUTH, HP_SYNC_REPLY = 0, 1, 2, 4
STEP1, STEP2, UPDATE = 0, 1, 2
HP_AUTHENTICATED = 2
LETTERS = "abcdefghijklmnopqrstuvwxyz "


class NotesServers(ServerSet):
    """ServerSet, with the notes references' commands."""

    def command(self, port: int) -> list[str]:
        kind = self.spec.kind
        if kind == "yws":
            return [node_reference(), str(REFERENCE / "yws_server.mjs"), "--port", str(port)]
        if kind == "hocuspocus":
            script = REFERENCE / "hocuspocus_server.mjs"
            return [node_reference(), str(script), "--port", str(port)]
        if kind == "pycrdt":
            script = REFERENCE / "pycrdt_ws_server.py"
            return [sys.executable, str(script), "--port", str(port)]
        return super().command(port)


# The wire ---------------------------------------------------------------------------------


def uint(n: int) -> bytes:
    out = bytearray()
    while n > 127:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def read_uint(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        x = b[i]
        i += 1
        n |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return n, i


def sync_message(step: int, payload: bytes) -> bytes:
    return bytes((SYNC, step)) + uint(len(payload)) + payload


def first_struct(update: bytes) -> tuple[int, int] | None:
    """(client, clock) of an update's first struct group: what identifies a typed insert
    however a server re-encodes it (the same structs, the same ids)."""
    groups, i = read_uint(update, 0)
    if not groups:
        return None
    _, i = read_uint(update, i)
    client, i = read_uint(update, i)
    clock, _ = read_uint(update, i)
    return client, clock


# The editors --------------------------------------------------------------------------------


class Probe:
    """What every editor reports (one event loop: no locks)."""

    def __init__(self) -> None:
        self.measuring = False
        self.sent_at: dict[tuple[int, int], float] = {}
        self.latency: list[float] = []
        self.updates_sent = 0
        self.updates_received = 0
        self.problems: list[str] = []


class Editor:
    """One editor: a Y.Doc, a socket, the y-websocket sync protocol (with Hocuspocus's
    framing when ``doc_name`` is set)."""

    __slots__ = (
        "client",
        "clock",
        "doc",
        "got",
        "hocuspocus",
        "prefix",
        "probe",
        "rng",
        "synced",
        "text",
    )

    def __init__(self, probe: Probe, doc_name: str | None, seed: int) -> None:
        self.probe = probe
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("notes", type=Text)
        self.clock = 0  # this editor's next Yjs clock: one per character it typed
        self.got = 0  # updates from the other editors received
        self.hocuspocus = doc_name is not None
        self.prefix = uint(len(doc_name.encode())) + doc_name.encode() if doc_name else b""
        self.client: WSClient | None = None
        self.synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.rng = random.Random(seed)

    def send(self, message: bytes) -> None:
        assert self.client is not None
        self.client.write_frame(2, self.prefix + message)  # binary

    def start(self) -> None:
        """Once the socket is open: Hocuspocus wants its auth message first."""
        if self.hocuspocus:
            self.send(bytes((HP_AUTH, 0)) + uint(0))  # token "" (no onAuthenticate hook)
        else:
            self.send(sync_message(STEP1, self.doc.get_state()))

    def type(self) -> None:
        """1-3 characters at the top of the note. Each editor keeps typing where it is, so
        the position costs every implementation the same and stays cheap as the note grows;
        random positions in a note that four editors fragment would make every client and
        server walk a growing list of items, and the load generator fall behind."""
        n = self.rng.randint(1, 3)
        chars = "".join(self.rng.choice(LETTERS) for _ in range(n))
        before = self.doc.get_state()
        self.text.insert(0, chars)
        update = self.doc.get_update(before)
        self.probe.sent_at[(self.doc.client_id, self.clock)] = time.perf_counter()
        self.clock += n
        self.probe.updates_sent += self.probe.measuring
        self.send(sync_message(UPDATE, update))

    def on_message(self, client: WSClient, p: bytes) -> None:
        self.client = client  # a server may speak first, before connect() has returned
        i = len(self.prefix)
        if self.hocuspocus:  # the document's name first
            size, i = read_uint(p, 0)
            i += size
        kind, i = read_uint(p, i)
        if kind in (SYNC, HP_SYNC_REPLY):
            step, i = read_uint(p, i)
            size, i = read_uint(p, i)
            payload = p[i : i + size]
            if step == STEP1:
                self.send(sync_message(STEP2, self.doc.get_update(payload)))
            elif step == STEP2:
                self.doc.apply_update(payload)
                if not self.synced.done():
                    self.synced.set_result(None)
            elif step == UPDATE:
                now = time.perf_counter()
                key = first_struct(payload)
                if key is not None and key[0] != self.doc.client_id:
                    self.doc.apply_update(payload)
                    self.got += 1
                    probe = self.probe
                    probe.updates_received += 1
                    sent = probe.sent_at.get(key)
                    if sent is not None and probe.measuring:
                        probe.latency.append(now - sent)
        elif kind == HP_AUTH and self.hocuspocus:
            sub, _ = read_uint(p, i)
            if sub == HP_AUTHENTICATED:
                self.send(sync_message(STEP1, self.doc.get_state()))
            elif len(self.probe.problems) < 5:
                self.probe.problems.append(f"hocuspocus auth refused ({sub})")
        # awareness, Hocuspocus's sync status and the like: nothing to do


class Rooms:
    """How to reach one server's rooms: path, subprotocol, Hocuspocus's document name."""

    def __init__(self, servers: NotesServers) -> None:
        self.servers = servers
        self.kind = servers.spec.kind
        self.ids: list[str] = []

    async def make(self, rooms: int, editors: int) -> None:
        if self.kind == "menteo":
            self.ids = await MenteoTarget(self.servers).make_rooms(rooms, editors)
        else:
            self.ids = [f"notes-{i}" for i in range(rooms)]

    def address(self, room: int, editor: int) -> tuple[str, str | None, str | None]:
        """(path, subprotocol, Hocuspocus document name)."""
        rid = self.ids[room]
        if self.kind == "menteo":
            user = f"u{room}-{editor}" if editor >= 0 else f"u{room}-0"
            bearer = token(self.servers.secret, user, user, ttl=7200)
            return f"/rooms/{rid}/notes?token={bearer}", "menteo.notes.v1", None
        if self.kind == "hocuspocus":
            return "/", None, rid
        return f"/{rid}", None, None


async def open_editor(
    servers: NotesServers, rooms: Rooms, probe: Probe, room: int, editor: int, seed: int
) -> Editor:
    path, sub, doc_name = rooms.address(room, editor)
    e = Editor(probe, doc_name, seed)
    e.client = await connect(
        HOST, servers.procs[0].port, path, e.on_message, subprotocol=sub, timeout=60
    )
    e.start()
    await asyncio.wait_for(e.synced, 60)
    return e


# One run --------------------------------------------------------------------------------------


async def run_rate(
    servers: NotesServers, rate: float, a: argparse.Namespace, smoke: bool
) -> dict[str, Any]:
    rooms_n, editors_n = (4, a.editors) if smoke else (a.rooms, a.editors)
    duration = 1.5 if smoke else a.duration
    warmup = 0.5 if smoke else a.warmup
    probe = Probe()
    rooms = Rooms(servers)
    await rooms.make(rooms_n, editors_n)
    gate = asyncio.Semaphore(32)

    async def one(r: int, j: int) -> Editor:
        async with gate:
            return await open_editor(servers, rooms, probe, r, j, r * 100 + j)

    # Each room's first editor opens it, then the others join: pycrdt-websocket leaves a
    # socket unanswered when it arrives while its room is being created.
    first = await asyncio.gather(*(one(r, 0) for r in range(rooms_n)))
    rest = await asyncio.gather(*(one(r, j) for r in range(rooms_n) for j in range(1, editors_n)))
    editors = [
        e
        for r in range(rooms_n)
        for e in (first[r], *rest[r * (editors_n - 1) : (r + 1) * (editors_n - 1)])
    ]
    log(f"{len(editors)} editors synced in {rooms_n} rooms; {rate:g} updates/s each")
    total = rate * len(editors)
    order = list(range(len(editors)))
    random.Random(7).shuffle(order)  # rooms interleaved on the timetable
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = time.perf_counter() + 0.2
    start, end = t0 + warmup, t0 + warmup + duration
    lag: list[float] = []
    loop_lag: list[float] = []

    async def ticker() -> None:
        behind = 0
        for k in range(int((end - t0) * total) + 1):
            due = t0 + k / total
            if due >= end:
                break
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
                behind = 0
            else:  # late: catch up, but let the replies in now and then
                behind += 1
                if behind % 32 == 0:
                    await asyncio.sleep(0)
            # Updates sent after the interval (a late timetable) are not counted against it.
            probe.measuring = start <= due and time.perf_counter() < end
            if probe.measuring:
                lag.append(time.perf_counter() - due)
            editors[order[k % len(order)]].type()
        probe.measuring = False

    async def lag_probe() -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        for _ in range(int(duration / 0.002) + 1):
            t = time.perf_counter()
            if t >= end:
                return
            await asyncio.sleep(0.002)
            loop_lag.append(time.perf_counter() - t - 0.002)

    async def window() -> tuple[dict[str, Any], list[float]]:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        meter = Meter(servers)
        meter.start()
        slices: list[float] = []
        mark, cpu0 = time.perf_counter(), servers.cpu()
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            await asyncio.sleep(min(a.slice, end - now))
            now, cpu = time.perf_counter(), servers.cpu()
            if now - mark > 0.5:
                slices.append(round((cpu - cpu0) / (now - mark), 3))
            mark, cpu0 = now, cpu
        return meter.stop(), slices

    _, _, (cpu, slices) = await asyncio.gather(ticker(), lag_probe(), window())
    gc.enable()
    # Drain: every editor has every other editor's updates of its room (bounded wait).
    by_client = Counter(client for client, _ in probe.sent_at)
    per_editor = [by_client[e.doc.client_id] for e in editors]
    sent_by_room: dict[int, int] = {}
    for idx, n in enumerate(per_editor):
        sent_by_room[idx // editors_n] = sent_by_room.get(idx // editors_n, 0) + n

    def drained() -> bool:
        return all(
            e.got >= sent_by_room[idx // editors_n] - per_editor[idx]
            for idx, e in enumerate(editors)
        )

    drained_ok = await until(drained, 15)
    # Convergence: the editors of each room and a fresh reader hold the same text.
    diverged = []
    for r in range(rooms_n):
        texts = {str(e.text) for e in editors[r * editors_n : (r + 1) * editors_n]}
        try:
            reader = await open_editor(servers, rooms, Probe(), r, 0, -1)
        except (OSError, RuntimeError, TimeoutError) as exc:
            probe.problems.append(f"room {r}: a fresh reader did not sync ({exc!r})"[:200])
            diverged.append(rooms.ids[r])
            continue
        texts.add(str(reader.text))
        assert reader.client is not None
        reader.client.close()
        if len(texts) != 1:
            diverged.append(rooms.ids[r])
    for e in editors:
        if e.client is not None:
            e.client.close()
    seconds = cpu["seconds"]
    updates = probe.updates_sent
    return {
        "server": servers.spec.name,
        "label": servers.spec.label,
        "rooms": rooms_n,
        "editors": len(editors),
        "rate_per_editor": rate,
        "offered_updates_per_s": total,
        "updates_sent": updates,
        "updates_per_s": round(updates / seconds, 1),
        "cpu_us_per_update": round(cpu["server_cpu"] * seconds / updates * 1e6, 1)
        if updates
        else None,
        "p50_ms": pct(probe.latency, 50),
        "p99_ms": pct(probe.latency, 99),
        "p999_ms": pct(probe.latency, 99.9),
        "max_ms": pct(probe.latency, 100),
        "samples": len(probe.latency),
        "server_cpu_slices": slices,
        "send_lag_p99_ms": pct(lag, 99),
        "loop_lag_p99_ms": pct(loop_lag, 99),
        "drained": drained_ok,
        "converged": drained_ok and not diverged,
        "diverged_rooms": diverged[:5],
        "problems": probe.problems,
        **cpu,
    }


def run_one(name: str, rate: float, a: argparse.Namespace) -> dict[str, Any]:
    spec = NOTES_SERVERS[name]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="menteo-notes-") as tmp:
        servers = NotesServers(spec, Path(tmp), a.cpus, DEFAULT_PG, DEFAULT_REDIS)
        result: dict[str, Any] = {"server": name, "label": spec.label, "rate_per_editor": rate}
        try:
            servers.start()

            async def main() -> dict[str, Any]:
                quiet = await wait_quiet(0 if a.smoke else 5)
                return {**await run_rate(servers, rate, a, a.smoke), "machine_busy_before": quiet}

            result.update(uv_run(main()))
            result["ok"] = bool(result.get("converged"))
        except Exception as exc:
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
            log(f"{name} at {rate:g}/s failed: {result['error']}")
        finally:
            result["server_exit_codes"] = servers.stop()
            result["server_problems"] = servers.problems()
            if not result.get("ok") and servers.procs:
                result["server_log_tail"] = servers.procs[0].log_tail(15)
    result["wall_s"] = round(time.time() - started, 1)
    return result


COLUMNS = (
    ("updates_per_s", "updates/s"),
    ("cpu_us_per_update", "server CPU µs/update"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("server_cpu", "server CPU"),
    ("converged", "converged"),
    ("other_cpu", "other CPU"),
    ("loop_lag_p99_ms", "client loop lag p99 ms"),
)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per (server, rate), each CPU figure also as a ratio to yws's."""
    ref = {r["rate_per_editor"]: r for r in results if r["server"] == "yws" and r.get("ok")}
    lines = [
        "| server | load | " + " | ".join(h for _, h in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for r in results:
        load = f"{r.get('offered_updates_per_s', '?')}/s ({r['rate_per_editor']:g} per editor)"
        if not r.get("ok") and "error" in r:
            lines.append(f"| {r['label']} | {load} | failed: {r['error'][:100]} |")
            continue
        cells = []
        for key, _ in COLUMNS:
            value = r.get(key)
            cell = "-" if value is None else str(value)
            base = ref.get(r["rate_per_editor"], {}).get(key)
            if key == "cpu_us_per_update" and value and base:
                cell += f" ({value / base:.2f}x)"
            cells.append(cell)
        lines.append(f"| {r['label']} | {load} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--servers", default="ours,yws,hocuspocus,pycrdt")
    p.add_argument("--rates", default="5,20", help="updates/s per editor, comma-separated")
    p.add_argument("--rooms", type=int, default=50)
    p.add_argument("--editors", type=int, default=4, help="editors per room")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--slice", type=float, default=5.0, help="seconds per server CPU sample")
    p.add_argument("--smoke", action="store_true", help="4 rooms, 1.5 s: the code path only")
    p.add_argument("--server-cpus", dest="cpus", default="0")
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--json", dest="json_path")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    names = [n.strip() for n in a.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in NOTES_SERVERS]
    if unknown:
        print(f"unknown server(s): {', '.join(unknown)}; one of {', '.join(NOTES_SERVERS)}")
        return 2
    rates = [float(x) for x in a.rates.split(",")]
    if a.smoke and a.rates == "5,20":
        rates = [5.0]
    raise_fd_limit()
    pinned = (
        not a.no_pin and shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) > 1
    )
    if pinned:
        os.sched_setaffinity(0, {a.client_cpu})
    else:
        a.cpus = None
    if os.geteuid() == 0:  # ahead of other work on a shared machine, as bench/suite.py
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -5)
    results = []
    for rate in rates:  # the servers side by side at each rate, one after the other
        for name in names:
            log(f"notes: {name} at {rate:g} updates/s per editor")
            r = run_one(name, rate, a)
            results.append(r)
            log(
                f"  {name}: {r.get('cpu_us_per_update')} µs/update, p50 {r.get('p50_ms')} "
                f"p99 {r.get('p99_ms')} ms, converged {r.get('converged')}, "
                f"other CPU {r.get('other_cpu')}"
            )
    print(table(results))
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/notes_compare.py " + " ".join(argv or sys.argv[1:]),
        "pinned": pinned,
        "machine": machine_info(),
        "results": results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if a.json_path:
        Path(a.json_path).write_text(text + "\n")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
