"""docs/deploy.md as an operator reads it: its sample output is what the commands print, and
``pip install .`` (a wheel) serves the browser client from the installed package."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from menteo_testkit.ports import free_port
from realtime.check import run as run_check
from tests.backends import make_backend
from tests.browser.roompage import require_notes_bundle
from tests.servers import SECRET, wait_ready

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy.md"


def fenced_after(text: str, marker: str, lang: str = "") -> str:
    """The first fenced block (```lang) after the line containing ``marker``."""
    start = text.index(marker)
    match = re.compile(rf"^```{lang}\n(.*?)^```$", re.M | re.S).search(text, start)
    assert match, f"no ```{lang} block after {marker!r} in {DEPLOY}"
    return match.group(1)


def shape(line: str) -> tuple[str, str, str]:
    """(status, check, detail) with what differs between machines made generic: URLs,
    versions, sizes, the bundle's path."""
    status, rest = line.split(None, 1)
    name, detail = rest.split(": ", 1)
    detail = re.sub(r"\S*dist/notes\.bundle\.js", "BUNDLE", detail)
    detail = re.sub(r"\w[\w+]*://\S+", "URL", detail)
    detail = re.sub(r"\d+(\.\d+)*", "N", detail)
    return status, name, detail


async def test_the_check_sample_is_what_check_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy.md's `check` sample: the same lines, in order, naming the latest migration."""
    sample = fenced_after(DEPLOY.read_text(), "prints one line per")
    backend = await make_backend("postgres+redis", tmp_path)
    env = {
        "MENTEO_DATABASE_URL": backend.database_url,
        "MENTEO_REDIS_URL": backend.redis_url,
        "MENTEO_SECRET": SECRET,
        "MENTEO_LOG_FORMAT": "json",
    }
    migrate = [sys.executable, "-m", "realtime.cli", "migrate"]
    await asyncio.to_thread(subprocess.run, migrate, env={**os.environ, **env}, check=True)
    unbuilt = tmp_path / "web"  # as in the sample: the notes editor not built
    unbuilt.mkdir()
    capsys.readouterr()
    code = await asyncio.to_thread(run_check, 5.0, env, unbuilt)
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, printed
    documented = sample.splitlines()
    assert documented[-1] == printed[-1] == "all checks passed"
    assert [shape(line) for line in documented[:-1]] == [shape(line) for line in printed[:-1]]
    [database] = [line for line in printed if " database: " in line]
    latest = re.search(r"schema at (\w+) \(latest\)", database)
    assert latest, database
    assert f"schema at {latest.group(1)} (latest)" in sample, (
        f"deploy.md's check sample must name the latest migration, {latest.group(1)}"
    )


def _copy_source(target: Path) -> Path:
    """The checkout as ``pip install .`` sees it, without what a build must not read."""
    skip = shutil.ignore_patterns(
        ".git",
        ".venv",
        "node_modules",
        "build",
        "*.egg-info",
        "__pycache__",
        ".*_cache",
        ".hypothesis",
        "*.db*",
        "bench",
        "tests",
    )
    return Path(shutil.copytree(ROOT, target, ignore=skip))


@pytest.mark.slow
async def test_a_wheel_serves_the_web_client_and_the_notes_editor(tmp_path: Path) -> None:
    require_notes_bundle()  # `make web`, as deploy.md says to run before `pip install .`
    source = _copy_source(tmp_path / "src")
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), "."]
    done = await asyncio.to_thread(
        subprocess.run, build, cwd=source, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = wheels.glob("*.whl")
    installed = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(installed)
    for shipped in ("index.html", "feed.html", "js/main.js", "css/app.css", "dist/notes.bundle.js"):
        assert f"realtime/web/{shipped}" in names, f"the wheel lacks realtime/web/{shipped}"
    assert not any(name.startswith("realtime/web/vendor-src") for name in names)

    # The installed package, run from elsewhere, serves its own copy.
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")},
        "PYTHONPATH": str(installed),
        "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}",
        "MENTEO_SECRET": SECRET,
    }
    where = [sys.executable, "-c", "from realtime.app import WEB; print(WEB)"]
    found = await asyncio.to_thread(
        subprocess.run, where, env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert found.stdout.strip() == str(installed / "realtime" / "web"), found
    command = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port)]
    proc = await asyncio.to_thread(  # fork and exec off the event loop
        subprocess.Popen,
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, timeout=30)
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            for path in ("/feed.html", "/js/main.js", "/dist/notes.bundle.js"):
                assert (await http.get(path)).status_code == 200, path
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
