"""realtime/metrics.py: every metric is declared with its help and, if it has one, its
label's name (never guessed from the metric's name); every count in realtime/ names a
declared metric the way it is declared; the text is Prometheus 0.0.4 with whole numbers
written whole, as the tests and dashboards read them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from realtime.metrics import HELP, HISTOGRAMS, LABELS, Metrics

ROOT = Path(__file__).resolve().parent.parent / "realtime"
# metrics.inc("name"), .inc("name", label...), .counter(...), .histogram(...), .gauge(...)
CALL = re.compile(r'\.(inc|counter|histogram|gauge)\(\s*"(menteo_[a-z_]+)"\s*(?:,\s*([^,)]+))?')


def test_a_label_is_declared_not_guessed() -> None:
    metrics = Metrics()
    metrics.inc("menteo_faults_survived_total", "writer")
    metrics.inc("menteo_sockets_refused_total", "handshake")
    metrics.inc("menteo_limit_hits_total", "notes_sync", 2)
    text = metrics.render()
    assert 'menteo_faults_survived_total{part="writer"} 1\n' in text
    assert 'menteo_sockets_refused_total{reason="handshake"} 1\n' in text
    assert 'menteo_limit_hits_total{limit="notes_sync"} 2\n' in text
    with pytest.raises(ValueError, match="'limit' label"):
        metrics.inc("menteo_limit_hits_total")
    with pytest.raises(ValueError, match="no label"):
        metrics.inc("menteo_commits_total", "x")
    with pytest.raises(KeyError, match="not declared"):
        metrics.inc("menteo_made_up_total")


def test_every_count_in_the_code_names_a_declared_metric_as_declared() -> None:
    seen = 0
    for path in ROOT.rglob("*.py"):
        for call, name, label in CALL.findall(path.read_text()):
            seen += 1
            where = f"{path.relative_to(ROOT.parent)}: {call}({name!r}, {label or ''})"
            assert name in HELP, f"{where}: not declared in HELP"
            labelled = bool(label) and label.strip() not in ('""', "''")
            assert labelled == (name in LABELS), f"{where}: LABELS says {LABELS.get(name)}"
    assert seen > 30


def test_each_metrics_counts_its_own_and_writes_whole_numbers_whole() -> None:
    a, b = Metrics(), Metrics()
    a.inc("menteo_commits_total", value=3)
    a.open["room"] += 1
    a.open["room"] += 1
    a.open["room"] -= 1
    a.histogram("menteo_welcome_seconds", "room").observe(0.003)
    assert a.counters[("menteo_commits_total", "")] == 3
    assert b.counters[("menteo_commits_total", "")] == 0
    text = a.render()
    assert "menteo_commits_total 3\n" in text
    assert 'menteo_sockets_open{kind="room"} 1\n' in text
    assert 'menteo_welcome_seconds_bucket{kind="room",le="0.005"} 1\n' in text
    assert 'menteo_welcome_seconds_count{kind="room"} 1\n' in text
    assert 'menteo_welcome_seconds_sum{kind="room"} 0.003\n' in text
    assert re.search(r'^menteo_build_info\{version="[^"]+"\} 1$', text, re.M)
    assert re.search(r"^process_cpu_seconds_total \S+$", text, re.M)
    assert "_created" not in text
    for name in HISTOGRAMS:
        assert f"# TYPE {name} histogram" in text
