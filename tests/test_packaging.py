"""The conventions a user of the package expects: typed (``py.typed`` shipped), licensed
(Apache-2.0, the file and the field), a changelog, and dependency bounds whose lower ends
``make lowest`` can install (``.ci/lowest.py`` reads them from pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())  # type: ignore[no-any-return]


def test_typed_licensed_and_changelogged() -> None:
    config = project()
    assert (ROOT / "realtime" / "py.typed").is_file()
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["realtime"]  # type: ignore[index]
    assert config["project"]["license"] == "Apache-2.0"  # type: ignore[index]
    assert (ROOT / "LICENSE").read_text().split()[:3] == ["Apache", "License", "Version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog and "\n## [Unreleased]\n" in changelog


def test_the_lowest_pins_are_the_lower_bounds_of_the_wire_dependencies() -> None:
    out = subprocess.run(
        [sys.executable, ".ci/lowest.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    pins = dict(line.split(";")[0].split("==") for line in out.splitlines())
    deps = " ".join(project()["project"]["dependencies"])  # type: ignore[index]
    assert set(pins) == {"uvicorn", "websockets", "uvloop", "httptools", "prometheus-client"}
    for name, version in pins.items():
        assert f"{name}>={version}" in deps, name
    assert "uvicorn[standard]" not in deps  # no reloader, .env or YAML support


def test_python_m_realtime_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "realtime", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and "serve" in out.stdout and "check" in out.stdout
