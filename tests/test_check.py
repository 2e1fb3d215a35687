"""``menteo-realtime check`` as an operator runs it: the real command in its own process."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from realtime.check import check_web, run
from realtime.persistence.database import alembic_config
from tests.backends import make_backend
from tests.servers import SECRET

STATUS = ("ok   ", "warn ", "FAIL ")


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run ``menteo-realtime ARGS`` with only the given MENTEO_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "realtime.cli",
        *args,
        env=clean | env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines() + err.decode().splitlines()


async def check(env: dict[str, str], cwd: Path, *extra: str) -> tuple[int, dict[str, str]]:
    """The exit status and each check's line by name (``database`` → ``FAIL  database: …``)."""
    code, lines = await cli("check", "--timeout", "5", *extra, env=env, cwd=cwd)
    by_name = {}
    for line in lines:
        if line.startswith(STATUS):
            by_name[line[6:].split(":", 1)[0]] = line
    summary = lines[-1] if lines else ""
    assert summary == ("all checks passed" if code == 0 else "FAIL: see above"), lines
    return code, by_name


def sqlite_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MENTEO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'menteo.db'}",
        "MENTEO_SECRET": SECRET,
        **extra,
    }


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else gets it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_a_fresh_migrated_sqlite_file_passes(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    code, lines = await check(env, tmp_path)
    assert code == 0, lines
    assert lines["settings"].startswith("ok ") and "SQLite, in-process broker" in lines["settings"]
    assert lines["secret"].startswith("ok ")
    assert lines["database"].startswith("ok ") and "(latest)" in lines["database"]
    assert lines["redis"].startswith("ok ") and "not configured" in lines["redis"]
    assert lines["web"].startswith(("ok ", "warn "))  # built or not, never a failure


async def test_a_missing_database_says_migrate_and_is_not_created(tmp_path: Path) -> None:
    code, lines = await check(sqlite_env(tmp_path), tmp_path)
    assert code == 1
    assert lines["database"].startswith("FAIL ")
    assert "run `menteo-realtime migrate`" in lines["database"]
    assert not (tmp_path / "menteo.db").exists()


async def test_an_unmigrated_database_says_migrate(tmp_path: Path) -> None:
    path = tmp_path / "menteo.db"
    sqlite3.connect(path).close()  # a database file with no schema at all
    code, lines = await check(sqlite_env(tmp_path), tmp_path)
    assert code == 1 and "has no schema: run `menteo-realtime migrate`" in lines["database"]

    # An older release's schema: really migrated, to an earlier revision.
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    engine.dispose()
    code, lines = await check(sqlite_env(tmp_path), tmp_path)
    assert code == 1
    assert "schema at 0002, the code needs" in lines["database"]
    assert "run `menteo-realtime migrate`" in lines["database"]

    assert (await cli("migrate", env=sqlite_env(tmp_path), cwd=tmp_path))[0] == 0
    assert (await check(sqlite_env(tmp_path), tmp_path))[0] == 0


async def test_bad_secrets_fail(tmp_path: Path) -> None:
    code, lines = await check(sqlite_env(tmp_path, MENTEO_SECRET="short"), tmp_path)
    assert code == 1
    assert lines["settings"] == "FAIL  settings: MENTEO_SECRET must be at least 32 bytes (HS256)"

    code, lines = await check(sqlite_env(tmp_path, MENTEO_SECRET="x" * 40), tmp_path)
    assert code == 1 and "placeholder" in lines["secret"]


async def test_the_dev_secret_is_a_warning_alone_and_a_failure_with_redis(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    del env["MENTEO_SECRET"]
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    code, lines = await check(env, tmp_path)
    assert code == 0 and lines["secret"].startswith("warn ")

    with closed_port() as port:
        env["MENTEO_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        code, lines = await check(env, tmp_path)
    assert code == 1
    assert lines["secret"].startswith("FAIL ") and "MENTEO_SECRET is unset" in lines["secret"]


async def test_an_unreachable_redis_fails(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    with closed_port() as port:
        env["MENTEO_REDIS_URL"] = f"redis://:hunter2@127.0.0.1:{port}/0"
        code, lines = await check(env, tmp_path)
    assert code == 1
    assert lines["redis"].startswith("FAIL  redis: cannot connect"), lines
    assert lines["database"].startswith("ok ")  # the other checks still ran
    assert "hunter2" not in "\n".join(lines.values())


async def test_a_cluster_url_that_does_not_parse_or_answer_fails(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    env["MENTEO_REDIS_URL"] = "redis+cluster://127.0.0.1"
    code, lines = await check(env, tmp_path)
    assert code == 1 and "'127.0.0.1' is not host:port" in lines["redis"], lines
    with closed_port() as one, closed_port() as two:
        env["MENTEO_REDIS_URL"] = f"redis+cluster://menteo:hunter2@127.0.0.1:{one},[::1]:{two}"
        code, lines = await check(env, tmp_path)
    assert code == 1
    assert lines["redis"].startswith("FAIL  redis: cannot connect"), lines
    assert "hunter2" not in "\n".join(lines.values())


async def test_an_unreachable_database_fails(tmp_path: Path) -> None:
    with closed_port() as port:
        url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/menteo"
        code, lines = await check(sqlite_env(tmp_path, MENTEO_DATABASE_URL=url), tmp_path)
    assert code == 1
    assert lines["database"].startswith("FAIL  database: cannot connect"), lines
    assert "hunter2" not in "\n".join(lines.values())


async def test_bad_limits_and_settings_fail(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    code, lines = await check(env | {"MENTEO_RATE_PER_SECOND": "0"}, tmp_path)
    assert code == 1 and "MENTEO_RATE_PER_SECOND=0" in lines["limits"]
    code, lines = await check(env | {"MENTEO_LOG_FORMAT": "xml"}, tmp_path)
    assert code == 1 and "MENTEO_LOG_FORMAT must be one of text, json" in lines["settings"]


def test_a_missing_web_bundle_warns_without_failing(tmp_path: Path) -> None:
    assert check_web(tmp_path / "nowhere").status == "warn"
    (tmp_path / "web").mkdir()
    result = check_web(tmp_path / "web")
    assert result.status == "warn" and "make web" in result.detail
    # The whole run with that web directory still passes.
    db = tmp_path / "menteo.db"
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()
    assert run(env=sqlite_env(tmp_path), web=tmp_path / "web") == 0


async def test_postgres_and_redis(tmp_path: Path) -> None:
    backend = await make_backend("postgres+redis", tmp_path)  # skips without them (not on CI)
    env = {
        "MENTEO_DATABASE_URL": backend.database_url,
        "MENTEO_REDIS_URL": backend.redis_url,
        "MENTEO_SECRET": SECRET,
    }
    code, lines = await check(env, tmp_path)  # the schema was just dropped
    assert code == 1 and "has no schema" in lines["database"]
    assert lines["redis"].startswith("ok ") and "reachable (Redis" in lines["redis"]

    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    code, lines = await check(env, tmp_path)
    assert code == 0, lines
    assert "PostgreSQL, Redis" in lines["settings"]
    assert lines["database"].startswith("ok ") and "(latest)" in lines["database"]


async def test_serve_refuses_what_check_fails_and_names_the_variable(tmp_path: Path) -> None:
    """``serve`` applies ``check``'s rules before it starts anything (exit status 2); a
    misspelt boolean is an error, not a quiet false. Run as ``python -m realtime``."""
    env = sqlite_env(tmp_path)
    code, lines = await check(env | {"MENTEO_AUTO_MIGRATE": "ture"}, tmp_path)
    assert code == 1 and "MENTEO_AUTO_MIGRATE='ture': not a boolean" in lines["settings"]
    bad = (
        {"MENTEO_AUTO_MIGRATE": "ture"},
        {"MENTEO_RATE_PER_SECOND": "0"},
        {"MENTEO_SECRET": "x" * 40},  # a placeholder
    )
    for wrong in bad:
        code, out = await module("realtime", "serve", "--port", "0", env=env | wrong, cwd=tmp_path)
        assert code == 2, (wrong, out)
        assert any(line.startswith("FAIL ") and next(iter(wrong)) in line for line in out), out
        assert not any("running on" in line for line in out), out
    assert not (tmp_path / "menteo.db").exists()  # nothing was started


async def module(name: str, *args: str, env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """``python -m NAME ARGS`` with only the given MENTEO_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MENTEO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        name,
        *args,
        env=clean | env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines() + err.decode().splitlines()


async def test_a_webhook_url_needs_a_long_secret_and_check_pings_it(tmp_path: Path) -> None:
    """``serve`` and ``check`` refuse ``MENTEO_WEBHOOK_URL`` without a ``MENTEO_WEBHOOK_SECRET``
    of 32 bytes or more; with one, ``check`` POSTs a signed ``ping`` and wants a 2xx."""
    from menteo_testkit.webhook_receiver import Receiver, run_receiver
    from realtime.notify.signing import verify

    env = sqlite_env(tmp_path)
    async with run_receiver(Receiver()) as hook:
        for secret in ({}, {"MENTEO_WEBHOOK_SECRET": "s" * 31}):
            wrong = {"MENTEO_WEBHOOK_URL": hook.url, **secret}
            code, lines = await check(env | wrong, tmp_path)
            assert code == 1 and "MENTEO_WEBHOOK_SECRET" in lines["settings"], lines
            code, out = await module(
                "realtime", "serve", "--port", "0", env=env | wrong, cwd=tmp_path
            )
            assert code == 2 and any("MENTEO_WEBHOOK_SECRET" in line for line in out), out
            assert not any("running on" in line for line in out), out
        assert hook.requests == []
        assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
        good = env | {"MENTEO_WEBHOOK_URL": hook.url, "MENTEO_WEBHOOK_SECRET": "s" * 32}
        code, lines = await check(good, tmp_path)
        assert code == 0 and lines["webhook"].startswith("ok "), lines
        (ping,) = hook.requests
        assert ping.json["type"] == "ping" and ping.headers["menteo-event-id"] == ping.json["id"]
        assert verify("s" * 32, ping.body, ping.headers["menteo-signature"])
        hook.status = 404
        code, lines = await check(good, tmp_path)
        assert code == 1 and "404" in lines["webhook"], lines
    code, lines = await check(good, tmp_path)  # nobody listening now
    assert code == 1 and lines["webhook"].startswith("FAIL "), lines
