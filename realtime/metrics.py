"""Counters and gauges for operators, served as Prometheus text at ``/metrics``.

Plain integers bumped on the event loop: no locks, no per-frame allocation. Every limit the
server enforces has a counter here, so an operator sees who hits what.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

HELP = {
    "menteo_sockets_opened_total": "sockets accepted, by kind (room, notes, feed)",
    "menteo_sockets_refused_total": "sockets refused, by reason",
    "menteo_limit_hits_total": "frames or sockets stopped by a limit, by limit",
    "menteo_events_appended_total": "durable events committed",
    "menteo_commits_total": "group-commit transactions",
    "menteo_gap_fills_total": "events read from the database to fill a broker hole",
    "menteo_broker_reconnects_total": "times the broker connection came back",
    "menteo_broker_dropped_total": "broker messages dropped while it was away (the DB has them)",
    "menteo_sockets_open": "sockets open now, by kind",
    "menteo_feed_events_total": "feed events fanned out to this process's followers",
    "menteo_feed_deliveries_total": "feed events handed to follower connections",
    "menteo_feed_fanout_seconds_total": "time spent in the feed's fan-out loops",
    "menteo_feed_reaction_events_total": "aggregated feed.reaction events this process asked for",
    "menteo_presence_syncs_total": "presence.sync snapshots sent after presence views diverged",
    "menteo_faults_survived_total": "errors one event caused that a long-lived part caught and "
    "survived, by part (writer, hub, broker, presence); each also logged once with its traceback",
    "menteo_notes_apply_failures_total": "notes updates that did not apply to a room's document",
    "menteo_notes_quarantined_total": "stored notes updates that do not load, marked quarantined",
    "menteo_notes_awareness_expired_total": "awareness states removed after the notes timeout",
    "menteo_access_closed_total": "sockets and event streams closed because their access "
    "ended, by reason (removed from the room, revoked)",
    "menteo_revocations_held": "token revocations this process holds (users and token ids)",
}
# The label of a counter whose label is not a kind, a reason or a limit.
LABELS = {"menteo_faults_survived_total": "part", "menteo_access_closed_total": "reason"}


class Metrics:
    def __init__(self) -> None:
        self.counters: Counter[tuple[str, str]] = Counter()
        self.open: Counter[str] = Counter()
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, label: str = "", value: int = 1) -> None:
        self.counters[(name, label)] += value

    def render(self) -> str:
        lines: list[str] = []
        names = sorted(
            {name for name, _ in self.counters} | set(self.gauges) | {"menteo_sockets_open"}
        )
        for name in names:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {kind}")
            if name == "menteo_sockets_open":
                for label, count in sorted(self.open.items()):
                    lines.append(f'{name}{{kind="{label}"}} {count}')
                continue
            if name in self.gauges:
                lines.append(f"{name} {self.gauges[name]()}")
                continue
            for (counter, label), value in sorted(self.counters.items()):
                if counter == name:
                    key = LABELS.get(name) or (
                        "kind" if "opened" in name else "reason" if "refused" in name else "limit"
                    )
                    lines.append(
                        f'{name}{{{key}="{label}"}} {value}' if label else f"{name} {value}"
                    )
        return "\n".join(lines) + "\n"
