"""What ``bench/compare.py`` writes: bench/compare.md from one comparison run (the machine,
what runs, the results table, PostgreSQL activity, anything odd, the kept analysis, the
commands and the raw JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ANALYSIS_BEGIN = "<!-- analysis:begin (hand-written; bench/compare.py keeps this block) -->"
ANALYSIS_END = "<!-- analysis:end -->"
PERTURBED_ABOVE = 0.15  # "other" cores during a run above this: say the row was disturbed


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}"


def notes_for(entry: dict[str, Any]) -> list[str]:
    """Anything a reader should not miss about one run."""
    r = entry["result"]
    name = r["setup"] + (
        f", open loop {r['offered_per_s']:g}/s" if r["mode"] == "open" else ", closed loop"
    )
    notes = []
    if entry["exit_code"] != 0:
        notes.append(
            f"{name}: chat_load exited {entry['exit_code']} (errors, disorder or "
            "server log problems; see below)"
        )
    if r["errors"] or r["disconnects"]:
        notes.append(
            f"{name}: error frames {r['errors']}, sockets closed by the server {r['disconnects']}"
        )
    for problem in r["order_problems"]:
        notes.append(f"{name}: order problem: {problem}")
    for line in r["server_problems"]:
        notes.append(f"{name}: server log: `{line}`")
    if r.get("server_warning_count"):
        notes.append(
            f"{name}: {r['server_warning_count']} WARNING line(s) in the server logs, "
            "first: " + "; ".join(f"`{w}`" for w in r["server_warnings"][:3])
        )
    if r["acked_total"] != r["sent_total"]:
        notes.append(f"{name}: sent {r['sent_total']}, acked {r['acked_total']}")
    if r["mode"] == "open" and not r["sustained"]:
        notes.append(
            f"{name}: the rate was not sustained (acked {r['acked_per_s']:g}/s of "
            f"{r['offered_per_s']:g}/s offered): latency is that of a growing queue"
        )
    if r.get("other_cpu") is not None and r["other_cpu"] > PERTURBED_ABOVE:
        notes.append(
            f"{name}: {r['other_cpu']:g} cores went to other processes on the "
            "machine during the measured interval: the row is disturbed"
        )
    for a in entry.get("discarded", []):
        notes.append(
            f"{name}: attempt {a.get('attempt')} was discarded ({a.get('other_cpu')} "
            f"cores went to other processes; it acked {a.get('acked_per_s')} msg/s); "
            f"attempt {entry['attempt']} is shown"
        )
    if r.get("client_cpu") is not None and r["client_cpu"] > 0.85:
        notes.append(
            f"{name}: the load generator used {r['client_cpu']:g} of its core: it may be the limit"
        )
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
        backend = (
            " + ".join(fmt(r["backend_cpu"].get(g)) for g in ("postgres", "redis-server"))
            if r["database"] == "postgresql" or r["redis"]
            else "-"
        )
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
        per_commit = (
            round(r["acked_per_s"] / pg["commits_per_s"], 1) if pg["commits_per_s"] else None
        )
        load = "saturation" if r["mode"] == "closed" else f"{r['offered_per_s']:g} msg/s"
        rows.append(
            f"| {r['setup']} | {load} | {pg['commits_per_s']:g} | {fmt(per_commit)} "
            f"| {pg['rollbacks_per_s']:g} | {locks:.2f} | {idle_tx:.2f} |"
        )
    return "\n".join(rows) if len(rows) > 2 else ""


def old_analysis(doc: Path) -> str | None:
    if not doc.exists():
        return None
    text = doc.read_text()
    start, end = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return None
    return text[start + len(ANALYSIS_BEGIN) : end].strip("\n")


def intro(report: dict[str, Any], command: str) -> list[str]:
    """The title, the command and the code it measured."""
    m = report["machine"]
    rendered = (
        [
            f"This page was rendered later from that run's saved results "
            f"(`python bench/compare.py --render {report['rendered_from']}`); the "
            "figures are that run's.",
            "",
        ]
        if report.get("rendered_from")
        else []
    )
    return [
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
        + (
            f", with {len(m['realtime_uncommitted'])} uncommitted change(s) under `realtime/` "
            "at the time, listed in the JSON"
            if m["realtime_uncommitted"]
            else ""
        )
        + ").",
        "",
        *rendered,
    ]


def machine_section(m: dict[str, Any]) -> list[str]:
    pg, redis = m.get("postgresql", {}), m.get("redis", {})
    return [
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
    ]


def what_runs_section(opts: dict[str, Any]) -> list[str]:
    return [
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
    ]


def pinning_section(opts: dict[str, Any], m: dict[str, Any]) -> list[str]:
    return [
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
    ]


def results_section(entries: list[dict[str, Any]]) -> list[str]:
    return [
        "## Results",
        "",
        results_table(entries),
        "",
        "Higher is better for msg/s, lower for latency. *acked msg/s* is durable "
        "throughput (an ack means committed); *delivered/s* counts every member's copy, the "
        "author's included.",
        "",
    ]


def postgres_section(entries: list[dict[str, Any]]) -> list[str]:
    pg_table = postgres_table(entries)
    if not pg_table:
        return []
    return [
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


def odd_notes(entries: list[dict[str, Any]]) -> list[str]:
    notes = [n for e in entries if e["result"] is not None for n in notes_for(e)]
    notes += [
        f"{e['name']}: no result (exit code {e['exit_code']}):\n\n```\n"
        f"{e.get('stdout_tail', '')}\n```"
        for e in entries
        if e["result"] is None
    ]
    return notes


def closing_sections(report: dict[str, Any], doc: Path) -> list[str]:
    """Anything odd, the kept analysis, the commands and the raw results."""
    entries = report["runs"]
    notes = odd_notes(entries)
    analysis = old_analysis(doc) or "_(none yet)_"
    return [
        "### Anything odd (generated)",
        "",
        *(
            [f"- {n}" for n in notes]
            or [
                "- nothing: every run acked everything it sent, "
                "in order, without errors or server log problems."
            ]
        ),
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


def render(report: dict[str, Any], command: str, doc: Path) -> str:
    """The whole page; ``doc``: the page as it is now (for its analysis block)."""
    m, opts, entries = report["machine"], report["options"], report["runs"]
    return "\n".join(
        [
            *intro(report, command),
            *machine_section(m),
            *what_runs_section(opts),
            *pinning_section(opts, m),
            *results_section(entries),
            *postgres_section(entries),
            *closing_sections(report, doc),
        ]
    )
