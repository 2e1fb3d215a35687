"""Counters, gauges and histograms for operators, served as Prometheus text at ``/metrics``.

The values live in ``prometheus_client``. Each ``Metrics`` has its own registry (tests run
several servers in one process); under ``serve --workers N`` every worker writes its values
to files in ``PROMETHEUS_MULTIPROC_DIR`` (set up and removed by ``serve``) and whichever
worker is scraped answers with the totals of all of them (``multiprocess`` mode). Every
limit the server enforces has a counter here, so an operator sees who hits what.

Hot paths keep a bound child (``counter()``, ``histogram()``) and call ``inc``/``observe``
on it: no label lookup per event. ``inc(name, label)`` looks the child up in one dict.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("menteo.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHARED = "PROMETHEUS_MULTIPROC_DIR"

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
    "menteo_commit_seconds": "one group-commit transaction, from its start to its commit",
    "menteo_fanout_seconds": "from commit to the frames written to every local socket, by "
    "source: local (this process's commit) or broker (another process's, timed from the "
    "event's timestamp)",
    "menteo_welcome_seconds": "from a socket's acceptance to its welcome frame sent, by kind",
    "menteo_build_info": "the running release (value 1), by version",
    "menteo_webhook_deliveries_total": "webhook delivery attempts, by result: ok (2xx), "
    "retry (to be tried again) or failed (given up)",
    "menteo_webhook_pending": "webhook notifications in the outbox not yet delivered, failed "
    "or cancelled (all processes: read from the database)",
}
# Values a part keeps itself, read from it at scrape time (``Metrics.gauges``): no metric
# object of their own, so not in HELP (a HELP name is created as a real metric).
OBSERVED_HELP = {
    "menteo_revocations_held": "token revocations this process holds (users and token ids)",
    "menteo_read_marker_writes_total": "transactions that stored read markers (coalesced)",
    "menteo_read_markers_stored_total": "read markers a write moved forward",
    "menteo_inbox_updates_total": "inbox.room frames sent to inbox sockets",
}
# Each labelled metric's one label. A metric not named here has none: ``inc`` with a label
# on it is an error, never a guess.
LABELS = {
    "menteo_sockets_opened_total": "kind",
    "menteo_sockets_refused_total": "reason",
    "menteo_limit_hits_total": "limit",
    "menteo_faults_survived_total": "part",
    "menteo_sockets_open": "kind",
    "menteo_fanout_seconds": "source",
    "menteo_welcome_seconds": "kind",
    "menteo_access_closed_total": "reason",
    "menteo_build_info": "version",
    "menteo_webhook_deliveries_total": "result",
}
# Seconds; the rest of HELP are counters (``_total``) or the two gauges below.
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "menteo_commit_seconds": (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
    "menteo_fanout_seconds": (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
    "menteo_welcome_seconds": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
}
# Gauges and how workers' values add up: sockets of live workers only; build info is 1.
# The outbox's count is the database's: every worker reads the same number.
GAUGES = {
    "menteo_sockets_open": "livesum",
    "menteo_build_info": "max",
    "menteo_webhook_pending": "mostrecent",
}

# A counter's ``_created`` sample per label set doubles the text for no use here.
cast(Any, prometheus_client).disable_created_metrics()  # untyped in the package


def version() -> str:
    try:
        return metadata.version("menteo-realtime")
    except metadata.PackageNotFoundError:
        return "unknown"


def multiprocess_dir() -> Path | None:
    """Where workers keep their values when ``prometheus_client`` is in multiprocess mode
    (``PROMETHEUS_MULTIPROC_DIR`` was set before it was imported)."""
    if values.ValueClass is values.MutexValue:
        return None
    path = os.environ.get(SHARED)
    return Path(path) if path else None


@contextmanager
def shared_values(workers: int) -> Iterator[None]:
    """``serve``'s side of multiprocess mode, around the server's whole run.

    With more than one worker it points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
    before the workers start (they import ``prometheus_client`` with it set) and removes
    the directory when they are gone. An operator's own directory is used instead, emptied
    of a previous run's files at start and at the end (as ``prometheus_client`` requires).
    """
    given = os.environ.get(SHARED)
    if workers <= 1 and not given:
        yield
        return
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="menteo-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    _empty(path)
    os.environ[SHARED] = str(path)
    try:
        yield
    finally:
        if given:
            _empty(path)
        else:
            os.environ.pop(SHARED, None)
            shutil.rmtree(path, ignore_errors=True)


def _empty(path: Path) -> None:
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)


class Metrics:
    """This process's metrics. ``inc(name, label)`` is the call every part uses."""

    def __init__(self) -> None:
        self.shared = multiprocess_dir()
        # Single process: the metrics' own registry is scraped. Multiprocess: they write
        # to files; the scrape reads every worker's.
        own = None if self.shared is not None else CollectorRegistry()
        self.registry = own if own is not None else CollectorRegistry()
        self._metrics: dict[str, Any] = {}
        for name in HELP:
            self._metrics[name] = _create(name, own)
        self._children: dict[tuple[str, str], Any] = {}
        self.counters = _Values(self)
        self.open = _Open(self)
        # Values read from a part when scraped (this process only; prefer counters).
        self.gauges: dict[str, Callable[[], float]] = {}
        self.registry.register(_Observed(self.gauges))
        self.gauge("menteo_build_info", version()).set(1)
        if self.shared is None:
            ProcessCollector(registry=self.registry)
        else:
            _forget_dead(self.shared)
            cast(Any, multiprocess).MultiProcessCollector(self.registry, path=str(self.shared))
            self.registry.register(_WorkerProcesses(self.shared))

    def _child(self, name: str, label: str) -> Any:
        child = self._children.get((name, label))
        if child is None:
            metric = self._metrics.get(name)
            if metric is None:
                raise KeyError(f"{name} is not declared in realtime/metrics.py HELP")
            if (name in LABELS) != bool(label):
                wanted = f"its {LABELS[name]!r} label" if name in LABELS else "no label"
                raise ValueError(f"{name} takes {wanted}, not {label!r}")
            child = metric.labels(label) if label else metric
            self._children[(name, label)] = child
        return child

    def inc(self, name: str, label: str = "", value: float = 1) -> None:
        child = self._children.get((name, label))
        if child is None:
            child = self._child(name, label)
        child.inc(value)

    def counter(self, name: str, label: str = "") -> Any:
        """The bound counter: ``.inc(n)`` on a hot path."""
        return self._child(name, label)

    def histogram(self, name: str, label: str = "") -> Any:
        """The bound histogram: ``.observe(seconds)``."""
        return self._child(name, label)

    def gauge(self, name: str, label: str = "") -> Any:
        return self._child(name, label)

    def value(self, name: str, label: str = "") -> float:
        """This process's value of a counter or gauge (0 when never touched)."""
        child = self._children.get((name, label))
        return 0.0 if child is None else float(child._value.get())

    def render(self) -> str:
        """Prometheus text (0.0.4); whole numbers without ``.0``, as Go's client writes."""
        text = generate_latest(self.registry).decode()
        return _WHOLE.sub(r"\1", text)

    def close(self) -> None:
        """A worker that stops cleanly takes its live gauges (open sockets) out of the sum."""
        if self.shared is not None:
            _mark_dead(os.getpid(), self.shared)


class _Nowhere:
    """A bound counter or histogram that counts nothing: a part built without metrics."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


NOWHERE: Any = _Nowhere()

_WHOLE = re.compile(r"(?m)^([^#\n][^\n]* -?[0-9]+)\.0$")


def _create(name: str, registry: CollectorRegistry | None) -> Any:
    labels = [LABELS[name]] if name in LABELS else []
    if name in HISTOGRAMS:
        return Histogram(name, HELP[name], labels, registry=registry, buckets=HISTOGRAMS[name])
    if name in GAUGES:
        mode: Any = GAUGES[name]
        return Gauge(name, HELP[name], labels, registry=registry, multiprocess_mode=mode)
    return Counter(name, HELP[name], labels, registry=registry)


class _Values:
    """``metrics.counters[(name, label)]``: this process's count, 0 when never counted."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __getitem__(self, key: tuple[str, str]) -> int:
        return int(self.metrics.value(*key))


class _Open:
    """``metrics.open[kind] += 1``: the ``menteo_sockets_open`` gauge by kind."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __getitem__(self, kind: str) -> int:
        return int(self.metrics.value("menteo_sockets_open", kind))

    def __setitem__(self, kind: str, count: int) -> None:
        self.metrics.gauge("menteo_sockets_open", kind).set(count)


class _Observed:
    """The ``gauges`` callables, read at scrape time (counters when named ``_total``)."""

    def __init__(self, gauges: dict[str, Callable[[], float]]) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for name, read in sorted(self.gauges.items()):
            kind = "counter" if name.endswith("_total") else "gauge"
            help_text = OBSERVED_HELP.get(name) or HELP.get(name, name)
            family = Metric(name.removesuffix("_total"), help_text, kind)
            family.add_sample(name, {}, float(read()))
            yield family


def _worker_pids(path: Path) -> set[int]:
    """The processes with values in ``path`` (files are named ``<kind>_<pid>.db``)."""
    pids = set()
    for file in path.glob("*.db"):
        tail = file.stem.rsplit("_", 1)[-1]
        if tail.isdigit():
            pids.add(int(tail))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_dead(pid: int, path: Path) -> None:
    """Remove ``pid``'s live gauges from the sum (its counters stay: totals never drop)."""
    cast(Any, multiprocess).mark_process_dead(pid, str(path))


def _forget_dead(path: Path) -> None:
    """A worker that died without closing (killed) leaves its live gauges; the worker
    started in its place takes them out of the sum."""
    for pid in _worker_pids(path):
        if pid != os.getpid() and not _alive(pid):
            _mark_dead(pid, path)


def _process_of(pid: int) -> ProcessCollector:
    return ProcessCollector(pid=lambda: pid, registry=None)


class _WorkerProcesses:
    """``process_*`` of every live worker, labelled by ``pid`` (a worker reads the others'
    ``/proc`` entries: they run on one host as one user)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in sorted(p for p in _worker_pids(self.path) if _alive(p)):
            for family in _process_of(pid).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    labels = {**sample.labels, "pid": str(pid)}
                    merged.add_sample(sample.name, labels, sample.value)
        yield from families.values()
