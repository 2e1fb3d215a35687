"""Side-by-side: 1 process + SQLite vs 2 processes + Redis + PostgreSQL, saturated and at a rate.

One invocation runs ``bench/chat_load.py`` once per row (each in a fresh interpreter, one
after another), then writes bench/compare.md (Markdown table, setup, machine, JSON) and
bench/results/compare-<UTC time>.json. Each run's own JSON goes to bench/results/ too.

    python bench/compare.py                 # about 2 minutes

Rows, all with 100 rooms x 2 members:

1. 1 process + SQLite, closed loop (saturation)
2. 1 process + SQLite, open loop at --rate (default 1000 msg/s)
3. 2 processes + Redis + PostgreSQL, closed loop
4. 2 processes + Redis + PostgreSQL, open loop at --rate
5. reference: 1 process + PostgreSQL, closed loop (--no-reference leaves it out); it tells
   what PostgreSQL costs apart from the second process and the broker.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHAT_LOAD = BENCH / "chat_load.py"
RESULTS = BENCH / "results"
DOC = BENCH / "compare.md"  # docs/benchmarks.md is bench/run_all.py's page
ANALYSIS_BEGIN = "<!-- analysis:begin (hand-written; bench/compare.py keeps this block) -->"
ANALYSIS_END = "<!-- analysis:end -->"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/menteo_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
QUIET_BELOW = 0.25  # cores busy on the machine before a run counts as quiet
PERTURBED_ABOVE = 0.15  # "other" cores during a run above this: say the row was disturbed


def log(message: str) -> None:
    print(f"[compare] {message}", file=sys.stderr, flush=True)


# Machine -------------------------------------------------------------------------------------


def busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def machine_busy(seconds: float = 1.0) -> float:
    """Cores busy on the whole machine over the next ``seconds``."""
    before = busy_seconds()
    time.sleep(seconds)
    return round((busy_seconds() - before) / seconds, 3)


def wait_quiet(limit: float) -> float:
    """Wait (up to ``limit`` seconds) for the machine to be idle; return the last reading."""
    deadline = time.monotonic() + limit
    while True:
        busy = machine_busy()
        if busy < QUIET_BELOW or time.monotonic() >= deadline:
            if busy >= QUIET_BELOW:
                log(f"machine still busy ({busy:.2f} cores) after {limit:g}s: running anyway")
            return busy
        log(f"machine busy ({busy:.2f} cores, something else is running): waiting")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def command_output(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


async def postgres_info(url: str) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        info = {"version": await conn.fetchval("SHOW server_version")}
        for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections"):
            info[name] = await conn.fetchval(f"SHOW {name}")
    finally:
        await conn.close()
    return info


async def redis_info(url: str) -> dict[str, str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return {"version": str(info.get("redis_version"))}


def machine_info(pg_url: str, redis_url: str) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    tmp = tempfile.gettempdir()
    info: dict[str, Any] = {
        "nproc": command_output(["nproc"]) or str(os.cpu_count()),
        "cpu_model": cpu_model(),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tmpdir": tmp,
        "tmpdir_filesystem": command_output(["stat", "-f", "-c", "%T", tmp]),
        "git_head": command_output(["git", "rev-parse", "--short", "HEAD"]),
        # Others edit the server while benchmarks run: say whether it differed from HEAD.
        "realtime_uncommitted": command_output(
            ["git", "status", "--porcelain", "--", "realtime"]).splitlines(),
    }
    for key, probe, url in (("postgresql", postgres_info, pg_url),
                            ("redis", redis_info, redis_url)):
        try:
            info[key] = asyncio.run(probe(url))
        except Exception as exc:
            info[key] = {"error": repr(exc)}
    return info


# Runs ----------------------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    common = ["--rooms", "100", "--members", "2", "--duration", f"{args.duration:g}",
              "--warmup", f"{args.warmup:g}", "--server-cpus", args.server_cpus,
              "--client-cpu", str(args.client_cpu)]
    sqlite = ["--label", "1 process + SQLite"]
    scaled = ["--label", "2 processes + Redis + PostgreSQL", "--processes", "2",
              "--redis-url", args.redis_url, "--database-url", args.database_url]
    rate = ["--rate", f"{args.rate:g}"]
    runs = [
        ("sqlite-closed", [*common, *sqlite]),
        ("sqlite-open", [*common, *sqlite, *rate]),
        ("scaled-closed", [*common, *scaled]),
        ("scaled-open", [*common, *scaled, *rate]),
    ]
    if not args.no_reference:
        runs.append(("pg1-closed", [*common, "--label", "(reference) 1 process + PostgreSQL",
                                    "--database-url", args.database_url]))
    return runs


def disturbed(entry: dict[str, Any]) -> bool:
    r = entry["result"]
    return r is not None and r.get("other_cpu") is not None and r["other_cpu"] > PERTURBED_ABOVE


def run_row(
    name: str, argv: list[str], stamp: str, args: argparse.Namespace, deadline: float
) -> dict[str, Any]:
    """Run a row; if other work on the machine disturbed it, run it again while time allows
    and keep the least disturbed attempt (the others are listed in ``discarded``)."""
    attempts = [run_one(name, argv, stamp, args.quiet_wait, 1)]
    while (disturbed(attempts[-1]) and len(attempts) <= args.retries
           and time.monotonic() + attempts[0]["seconds"] + args.quiet_wait < deadline):
        log(f"{name}: {attempts[-1]['result']['other_cpu']:g} cores went to other processes: "
            "running it again")
        attempts.append(run_one(name, argv, stamp, args.quiet_wait, len(attempts) + 1))
    ok = [a for a in attempts if a["result"] is not None]
    best = min(ok, key=lambda a: a["result"].get("other_cpu") or 0.0) if ok else attempts[-1]
    best["attempts"] = len(attempts)
    best["discarded"] = [
        {k: a[k] for k in ("attempt", "json", "exit_code") if k in a}
        | ({"other_cpu": a["result"].get("other_cpu"), "acked_per_s": a["result"]["acked_per_s"]}
           if a["result"] else {})
        for a in attempts if a is not best]
    return best


def run_one(
    name: str, argv: list[str], stamp: str, quiet_wait: float, attempt: int
) -> dict[str, Any]:
    json_path = RESULTS / f"{stamp}-{name}-{attempt}.json"
    cmd = [sys.executable, str(CHAT_LOAD.relative_to(ROOT)), *argv, "--json", str(json_path)]
    busy_before = wait_quiet(quiet_wait)
    shown = "python " + shlex.join(cmd[1:-2])  # as a person would type it, without --json
    log(f"{name}: {shown}")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    entry: dict[str, Any] = {
        "name": name, "attempt": attempt, "command": shown, "exit_code": proc.returncode,
        "machine_busy_before": busy_before, "seconds": round(time.monotonic() - started, 1),
    }
    if json_path.exists() and proc.returncode in (0, 1):
        entry["result"] = json.loads(json_path.read_text())
        entry["json"] = str(json_path.relative_to(ROOT))
    else:
        entry["result"] = None
        entry["stdout_tail"] = proc.stdout[-2000:]
    return entry


# Document ------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}"


def notes_for(entry: dict[str, Any]) -> list[str]:
    """Anything a reader should not miss about one run."""
    r = entry["result"]
    name = r["setup"] + (f", open loop {r['offered_per_s']:g}/s" if r["mode"] == "open"
                         else ", closed loop")
    notes = []
    if entry["exit_code"] != 0:
        notes.append(f"{name}: chat_load exited {entry['exit_code']} (errors, disorder or "
                     "server log problems; see below)")
    if r["errors"] or r["disconnects"]:
        notes.append(f"{name}: error frames {r['errors']}, sockets closed by the server "
                     f"{r['disconnects']}")
    for problem in r["order_problems"]:
        notes.append(f"{name}: order problem: {problem}")
    for line in r["server_problems"]:
        notes.append(f"{name}: server log: `{line}`")
    if r.get("server_warning_count"):
        notes.append(f"{name}: {r['server_warning_count']} WARNING line(s) in the server logs, "
                     "first: " + "; ".join(f"`{w}`" for w in r["server_warnings"][:3]))
    if r["acked_total"] != r["sent_total"]:
        notes.append(f"{name}: sent {r['sent_total']}, acked {r['acked_total']}")
    if r["mode"] == "open" and not r["sustained"]:
        notes.append(f"{name}: the rate was not sustained (acked {r['acked_per_s']:g}/s of "
                     f"{r['offered_per_s']:g}/s offered): latency is that of a growing queue")
    if r.get("other_cpu") is not None and r["other_cpu"] > PERTURBED_ABOVE:
        notes.append(f"{name}: {r['other_cpu']:g} cores went to other processes on the "
                     "machine during the measured interval: the row is disturbed")
    for a in entry.get("discarded", []):
        notes.append(f"{name}: attempt {a.get('attempt')} was discarded ({a.get('other_cpu')} "
                     f"cores went to other processes; it acked {a.get('acked_per_s')} msg/s); "
                     f"attempt {entry['attempt']} is shown")
    if r.get("client_cpu") is not None and r["client_cpu"] > 0.85:
        notes.append(f"{name}: the load generator used {r['client_cpu']:g} of its core: "
                     "it may be the limit")
    return notes


def results_table(entries: list[dict[str, Any]]) -> str:
    header = (
        "| setup | load | acked msg/s | delivered/s | send→recv p50 / p90 / p99 ms "
        "| send→ack p50 / p99 ms | send lag p99 ms | server CPU | PostgreSQL + Redis CPU "
        "| other CPU | client CPU | core 0 / core 1 busy | errors | ordered |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [header]
    for e in entries:
        r = e["result"]
        if r is None:
            rows.append(f"| {e['name']} | failed (exit {e['exit_code']}) |" + " |" * 12)
            continue
        if r["mode"] == "closed":
            load = f"saturation (closed loop, window {r['window']})"
        else:
            load = f"{r['offered_per_s']:g} msg/s offered (open loop)"
            if not r["sustained"]:
                load += " **not sustained**"
        backend = (" + ".join(fmt(r["backend_cpu"].get(g)) for g in ("postgres", "redis-server"))
                   if r["database"] == "postgresql" or r["redis"] else "-")
        errors = sum(r["errors"].values()) + r["disconnects"]
        rows.append(
            f"| {r['setup']} | {load} | **{r['acked_per_s']:.0f}** | {r['delivered_per_s']:.0f} "
            f"| {fmt(r['e2e_p50_ms'])} / {fmt(r['e2e_p90_ms'])} / {fmt(r['e2e_p99_ms'])} "
            f"| {fmt(r['ack_p50_ms'])} / {fmt(r['ack_p99_ms'])} "
            f"| {fmt(r['send_lag_p99_ms']) if r['mode'] == 'open' else '-'} "
            f"| {' + '.join(fmt(c) for c in r['server_cpu'])} | {backend} "
            f"| {fmt(r['other_cpu'])} | {fmt(r['client_cpu'])} "
            f"| {' / '.join(fmt(c) for c in r.get('core_cpu', []))} | {errors} "
            f"| {'yes' if r['ordered'] else '**no**'} |"
        )
    return "\n".join(rows)


def postgres_table(entries: list[dict[str, Any]]) -> str:
    rows = [
        "| setup | load | commits/s | messages per commit | rollbacks/s | connections "
        "waiting on a row lock | connections idle in transaction |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        r = e["result"]
        if r is None or not r.get("postgres_activity") or "error" in r["postgres_activity"]:
            continue
        pg = r["postgres_activity"]
        states = pg["avg_connections"]
        locks = sum(v for k, v in states.items() if "Lock:" in k)
        idle_tx = sum(v for k, v in states.items() if k.startswith("idle in transaction"))
        per_commit = (round(r["acked_per_s"] / pg["commits_per_s"], 1)
                      if pg["commits_per_s"] else None)
        load = "saturation" if r["mode"] == "closed" else f"{r['offered_per_s']:g} msg/s"
        rows.append(f"| {r['setup']} | {load} | {pg['commits_per_s']:g} | {fmt(per_commit)} "
                    f"| {pg['rollbacks_per_s']:g} | {locks:.2f} | {idle_tx:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def old_analysis(doc: Path) -> str | None:
    if not doc.exists():
        return None
    text = doc.read_text()
    start, end = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return None
    return text[start + len(ANALYSIS_BEGIN):end].strip("\n")


def render(report: dict[str, Any], command: str, doc: Path) -> str:
    m = report["machine"]
    entries = report["runs"]
    pg, redis = m.get("postgresql", {}), m.get("redis", {})
    notes = [n for e in entries if e["result"] is not None for n in notes_for(e)]
    notes += [f"{e['name']}: no result (exit code {e['exit_code']}):\n\n```\n"
              f"{e.get('stdout_tail', '')}\n```" for e in entries if e["result"] is None]
    pg_table = postgres_table(entries)
    analysis = old_analysis(doc) or "_(none yet)_"
    opts = report["options"]
    rendered = ([f"This page was rendered later from that run's saved results "
                 f"(`python bench/compare.py --render {report['rendered_from']}`); the "
                 "figures are that run's.", ""] if report.get("rendered_from") else [])
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/compare.py: rerun it rather than editing the figures. "
        "Only the analysis block below is kept across runs. -->",
        "",
        f"Durable chat throughput and latency, measured on {report['date']} with:",
        "",
        "```sh",
        ". .venv/bin/activate",
        command,
        "```",
        "",
        f"(total {report['seconds']:.0f} s; code at `{m['git_head']}`"
        + (f", with {len(m['realtime_uncommitted'])} uncommitted change(s) under `realtime/` "
           "at the time, listed in the JSON" if m["realtime_uncommitted"] else "") + ").",
        "",
        *rendered,
        "## Machine",
        "",
        f"- `nproc`: {m['nproc']}",
        f"- CPU (`/proc/cpuinfo` model name): {m['cpu_model']}",
        f"- memory: {m['memory_gib']} GiB; Linux {m['kernel']}; Python {m['python']}",
        f"- PostgreSQL {pg.get('version', pg)} on the same machine (fsync={pg.get('fsync')}, "
        f"synchronous_commit={pg.get('synchronous_commit')}, "
        f"shared_buffers={pg.get('shared_buffers')})",
        f"- Redis {redis.get('version', redis)} on the same machine",
        f"- SQLite file in `{m['tmpdir']}` ({m['tmpdir_filesystem']}); the server runs SQLite "
        "with `synchronous=FULL`",
        "",
        "## What runs",
        "",
        f"Every row: {opts['rooms']} rooms x {opts['members']} members (200 WebSocket "
        f"members), 64-character bodies, {opts['warmup']:g} s warm-up then "
        f"{opts['duration']:g} s measured, on a fresh database (PostgreSQL: `public` schema "
        "dropped and recreated before each run), by `bench/chat_load.py` (what each figure "
        "means: [bench/README.md](README.md)).",
        "",
        "- **saturation**: closed loop, each member keeps up to 4 messages unacked (800 in "
        "flight): the most acked msg/s the setup gives; latency there is queueing "
        "(≈ 800 ÷ throughput).",
        f"- **{opts['rate']:g} msg/s offered**: open loop, the 200 members together send "
        f"{opts['rate']:g} msg/s on a fixed timetable (member *i* sends its *k*-th message at "
        "*t₀ + (i + 200k) / rate*), acked or not. Latency counts from when a message was due, "
        "so a late send counts too; *send lag* is how late sends left (the load generator's "
        "own delay).",
        "- **2 processes + Redis + PostgreSQL**: two server processes sharing the PostgreSQL "
        "database and the Redis broker. Members are spread round-robin, so the two members "
        "of every room sit in different processes: every delivery crosses Redis and both "
        "processes append to every room's stream.",
        "- **(reference) 1 process + PostgreSQL**: an extra row that separates what "
        "PostgreSQL costs from what the second process and the broker cost.",
        "",
        "### CPU pinning",
        "",
        f"With `taskset`: **every server process on core {opts['server_cpus']}** (both servers "
        f"of the 2-process setup share that one core), **the load generator on core "
        f"{opts['client_cpu']}**. PostgreSQL and Redis are not pinned: the kernel runs them "
        "wherever it likes (so on either core, next to the servers or the load generator).",
        "",
        f"**The 2-process case is not two cores' worth of server.** On this {m['nproc']}-core "
        "machine, the two server processes, PostgreSQL, Redis and the load generator all "
        f"share the same {m['nproc']} cores; SQLite runs inside the one server process. "
        "So the rows compare the same CPU budget for the server code (one core), not a "
        "scaled-out deployment; the 2-process figures say what the broker and a shared "
        "database cost and that the setup works correctly, not how it scales.",
        "",
        "CPU columns are cores used during the measured interval (1 = one core busy): "
        "*server* per server process, *PostgreSQL + Redis* all their processes, *other* = the "
        "whole machine minus all of those and the load generator (other people's work on the "
        f"machine; before each run the script waits up to {opts['quiet_wait']:g} s for the "
        f"machine to be idle, and runs a row again, up to {opts['retries']} time(s), when "
        f"more than {PERTURBED_ABOVE} cores went elsewhere during it, keeping the less disturbed "
        "attempt). *core 0 / core 1 busy* is each core's whole use: core 0 at 1 means the "
        "servers' core was full.",
        "",
        "## Results",
        "",
        results_table(entries),
        "",
        "Higher is better for msg/s, lower for latency. *acked msg/s* is durable "
        "throughput (an ack means committed); *delivered/s* counts every member's copy, the "
        "author's included.",
        "",
    ]
    if pg_table:
        lines += [
            "### What PostgreSQL was doing",
            "",
            "Sampled from `pg_stat_activity` every 0.1 s during the measured interval "
            "(connections = average number of the servers' connections in that state) and "
            "`pg_stat_database` (commits/s, approximate). Rollbacks are not failures: the "
            "servers' pool pre-pings every connection it hands out inside a transaction it "
            "rolls back (so about one rollback per commit), and reads end with ROLLBACK too; "
            "rollbacks/s minus commits/s is roughly twice the reads/s.",
            "",
            pg_table,
            "",
        ]
    lines += [
        "### Anything odd (generated)",
        "",
        *([f"- {n}" for n in notes] or ["- nothing: every run acked everything it sent, "
                                         "in order, without errors or server log problems."]),
        "",
        "## Analysis",
        "",
        ANALYSIS_BEGIN,
        analysis,
        ANALYSIS_END,
        "",
        "## The runs",
        "",
        "`bench/compare.py` ran these one after another (each also writes its JSON with "
        "`--json bench/results/<time>-<row>-<attempt>.json`):",
        "",
        "```sh",
        *[e["command"] for e in entries],
        "```",
        "",
        "## Raw results",
        "",
        "```json",
        json.dumps(report, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


# Main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=1000.0, help="open-loop msg/s (default 1000)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run")
    p.add_argument("--database-url", default=DEFAULT_PG,
                   help="PostgreSQL for those rows (its public schema is DROPPED)")
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for every server")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for the load generator")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="seconds to wait, before each run, for other load to go away")
    p.add_argument("--retries", type=int, default=1,
                   help="runs again a row that other work on the machine disturbed (other "
                   f"CPU > {PERTURBED_ABOVE} cores), this many times at most")
    p.add_argument("--budget", type=float, default=170.0,
                   help="seconds after which no row is run again")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the 1 process + PostgreSQL reference row")
    p.add_argument("--doc", default=str(DOC), help="Markdown file to write")
    p.add_argument("--render", metavar="JSON",
                   help="run nothing: rewrite --doc from an earlier bench/results/compare-*.json "
                   "(e.g. after editing the analysis block)")
    return p.parse_args(argv)


def render_only(path: Path, doc: Path) -> int:
    report = json.loads(path.read_text())
    report["rendered_from"] = str(path.resolve().relative_to(ROOT)
                                  if path.resolve().is_relative_to(ROOT) else path)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(report, report["command"], doc))
    log(f"wrote {doc} from {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_only(Path(args.render), Path(args.doc))
    raw = sys.argv[1:] if argv is None else argv
    command = "python bench/compare.py" + ("" if not raw else " " + shlex.join(raw))
    RESULTS.mkdir(exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    started = time.monotonic()
    machine = machine_info(args.database_url, args.redis_url)
    deadline = started + args.budget
    entries = [run_row(name, argv_, stamp, args, deadline) for name, argv_ in plan(args)]
    report = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        "options": {"rooms": 100, "members": 2, "rate": args.rate, "duration": args.duration,
                    "warmup": args.warmup, "server_cpus": args.server_cpus,
                    "client_cpu": args.client_cpu, "quiet_wait": args.quiet_wait,
                    "retries": args.retries},
        "machine": machine,
        "runs": entries,
    }
    out = RESULTS / f"compare-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    doc = Path(args.doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(report, command, doc))
    print(results_table(entries))
    log(f"wrote {doc} and {out.relative_to(ROOT)} in {report['seconds']:.0f}s")
    ok = all(e["exit_code"] == 0 for e in entries)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
