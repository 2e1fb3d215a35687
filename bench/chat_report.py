"""What ``bench/chat_load.py`` reports: the result of a run (``Result``), built from what
was measured (``summarise``), its order check, and its Markdown table row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from menteo_testkit.procstat import CPU_GROUPS

if TYPE_CHECKING:
    from chat_load import LoadOutcome, Member, Options

MAX_PROBLEMS = 20  # order problems and server log lines kept in the results


def order_problems(members: list[Member]) -> list[str]:
    """Each room: every member saw the same gap-free seqs, covering every acked seq."""
    problems: list[str] = []
    by_room: dict[int, list[Member]] = {}
    for m in members:
        by_room.setdefault(m.room, []).append(m)
    for room, group in sorted(by_room.items()):
        ref = group[0]
        acked = sorted(s for m in group for s in m.acked)
        for m in group:
            expected = list(range(m.first_seq + 1, m.first_seq + 1 + len(m.seqs)))
            if m.closed is not None:
                problems.append(f"room {room} {m.user_id}: {m.closed}")
            elif m.seqs != expected:
                problems.append(f"room {room} {m.user_id}: seqs not gap-free and ordered")
            elif (m.first_seq, m.seqs) != (ref.first_seq, ref.seqs):
                problems.append(f"room {room} {m.user_id}: differs from {ref.user_id}")
        if len(set(acked)) != len(acked):
            problems.append(f"room {room}: one seq acked twice")
        elif acked and not set(acked) <= set(ref.seqs):
            problems.append(f"room {room}: an acked seq was never delivered")
    return problems[:MAX_PROBLEMS]


def percentile_ms(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


def cpu_share(before: float | None, after: float | None, seconds: float) -> float | None:
    """Fraction of one core used over the interval."""
    if before is None or after is None:
        return None
    return round((after - before) / seconds, 3)


@dataclass
class Result:
    setup: str
    mode: str  # "closed" (window of unacked messages per member) or "open" (--rate)
    offered_per_s: float | None  # open loop: --rate
    rooms: int
    members: int
    window: int | None  # closed loop only
    duration_s: float
    warmup_s: float
    acked_per_s: float
    delivered_per_s: float
    e2e_p50_ms: float | None
    e2e_p90_ms: float | None
    e2e_p99_ms: float | None
    e2e_samples: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    # Open loop: sends due in the interval ÷ its length, how late they left, and whether the
    # server kept up: everything drained, acked ≥ 97 % of what was due, and at the end of the
    # interval at most half a second's worth of messages (rate / 2) still unacked.
    due_per_s: float | None
    send_lag_p50_ms: float | None
    send_lag_p99_ms: float | None
    sustained: bool | None
    backlog_start: int
    backlog_end: int
    sent_total: int
    acked_total: int
    errors: dict[str, int]
    disconnects: int
    drained: bool
    ordered: bool
    order_problems: list[str]
    server_cpu: list[float | None]
    client_cpu: float | None
    # Cores busy during the interval: the whole machine, PostgreSQL + Redis processes, and
    # "other" = machine - servers - client - PostgreSQL - Redis (anything else running).
    machine_cpu: float | None
    core_cpu: list[float | None]  # busy share of each core: is the servers' core full?
    backend_cpu: dict[str, float | None]
    other_cpu: float | None
    steal_cpu: float | None
    postgres_activity: dict[str, Any] | None
    server_exit_codes: list[int]
    server_problems: list[str]
    server_warning_count: int
    server_warnings: list[str]
    pinned: bool
    processes: int
    database: str
    redis: bool


def setup_label(opts: Options) -> str:
    if opts.label:
        return opts.label
    db = "PostgreSQL" if (opts.database_url or "").startswith("postgres") else "SQLite"
    parts = [f"{opts.processes} process{'es' if opts.processes > 1 else ''}", db]
    if opts.redis_url:
        parts.insert(1, "Redis")
    return " + ".join(parts)


def summarise(
    out: LoadOutcome,
    opts: Options,
    pinned: bool,
    codes: list[int],
    problems: list[str],
    warnings: tuple[int, list[str]] = (0, []),
) -> Result:
    win, members = out.win, out.members
    seconds = win.end - win.start
    first, last = out.cpu
    order = order_problems(members)
    if not out.drained:
        order.insert(0, "not drained: some acks or deliveries never arrived")
    acked_per_s = round(win.acks / seconds, 1)
    server_cpu = [
        cpu_share(a, b, seconds) for a, b in zip(first.servers, last.servers, strict=True)
    ]
    client_cpu = cpu_share(first.client, last.client, seconds)
    machine = cpu_share(first.machine.get("busy"), last.machine.get("busy"), seconds)
    cores = [
        cpu_share(first.machine.get(f"cpu{i}"), last.machine.get(f"cpu{i}"), seconds)
        for i in range(len([k for k in first.machine if k.startswith("cpu")]))
    ]
    backend = {g: cpu_share(first.groups.get(g), last.groups.get(g), seconds) for g in CPU_GROUPS}
    known = [*server_cpu, client_cpu, *backend.values()]
    other = (
        round(machine - sum(known), 3)  # type: ignore[arg-type]
        if machine is not None and None not in known
        else None
    )
    return Result(
        setup=setup_label(opts),
        mode="open" if opts.open_loop else "closed",
        offered_per_s=opts.rate,
        rooms=opts.rooms,
        members=opts.members,
        window=None if opts.open_loop else opts.window,
        duration_s=opts.duration,
        warmup_s=opts.warmup,
        acked_per_s=acked_per_s,
        delivered_per_s=round(win.deliveries / seconds, 1),
        e2e_p50_ms=percentile_ms(win.e2e, 50),
        e2e_p90_ms=percentile_ms(win.e2e, 90),
        e2e_p99_ms=percentile_ms(win.e2e, 99),
        e2e_samples=len(win.e2e),
        ack_p50_ms=percentile_ms(win.ack_latency, 50),
        ack_p99_ms=percentile_ms(win.ack_latency, 99),
        due_per_s=round(win.due / seconds, 1) if opts.open_loop else None,
        send_lag_p50_ms=percentile_ms(win.send_lag, 50) if opts.open_loop else None,
        send_lag_p99_ms=percentile_ms(win.send_lag, 99) if opts.open_loop else None,
        sustained=(out.drained and win.acks >= 0.97 * win.due and win.backlog[-1] <= opts.rate / 2)
        if opts.rate is not None
        else None,
        backlog_start=win.backlog[0],
        backlog_end=win.backlog[-1],
        sent_total=sum(m.sent for m in members),
        acked_total=sum(len(m.acked) for m in members),
        errors=dict(win.errors),
        disconnects=sum(m.closed is not None for m in members),
        drained=out.drained,
        ordered=not order,
        order_problems=order,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        machine_cpu=machine,
        core_cpu=cores,
        backend_cpu=backend,
        other_cpu=other,
        steal_cpu=cpu_share(first.machine.get("steal"), last.machine.get("steal"), seconds),
        postgres_activity=out.postgres,
        server_exit_codes=codes,
        server_problems=problems,
        server_warning_count=warnings[0],
        server_warnings=warnings[1],
        pinned=pinned,
        processes=opts.processes,
        database="postgresql" if (opts.database_url or "").startswith("postgres") else "sqlite",
        redis=bool(opts.redis_url),
    )


TABLE_HEADER = (
    "| setup | rooms x members | load | acked msg/s | delivered/s | send→recv p50 / p90 / p99 ms "
    "| send→ack p50 / p99 ms | server CPU | PG + Redis CPU | other CPU | client CPU "
    "| errors | ordered |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def load_label(r: Result) -> str:
    if r.mode == "closed":
        return f"closed loop, window {r.window}"
    label = f"open loop, {r.offered_per_s:g}/s"
    if not r.sustained:
        label += " (**not sustained**)"
    return label


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def table_row(r: Result) -> str:
    cpu = " + ".join(fmt(c) for c in r.server_cpu)
    backend = " + ".join(fmt(r.backend_cpu.get(g)) for g in ("postgres", "redis-server"))
    errors = sum(r.errors.values()) + r.disconnects
    return (
        f"| {r.setup} | {r.rooms} x {r.members} | {load_label(r)} | {r.acked_per_s:.0f} "
        f"| {r.delivered_per_s:.0f} | {fmt(r.e2e_p50_ms)} / {fmt(r.e2e_p90_ms)} / "
        f"{fmt(r.e2e_p99_ms)} | {fmt(r.ack_p50_ms)} / {fmt(r.ack_p99_ms)} | {cpu} "
        f"| {backend} | {fmt(r.other_cpu)} | {fmt(r.client_cpu)} | {errors} "
        f"| {'yes' if r.ordered else 'no'} |"
    )
