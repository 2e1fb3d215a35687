"""``menteo-realtime check``: is this configuration ready to serve?

One line per check, ``ok``, ``warn`` or ``FAIL``; the exit status is 1 when any check
failed. Warnings (a dev setup, the notes bundle not built) never fail the run. What counts
as production: a Redis URL or a database other than SQLite. There the random per-process
secret is a failure, because processes would refuse each other's tokens and every restart
would log everyone out.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from .config import MIN_SECRET_BYTES, PREFIX, Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .broker.slots import ClusterURL

Status = Literal["ok", "warn", "FAIL"]

# Limits where 0 or less would break serving (the rest allow 0 as "off").
POSITIVE = (
    "max_connections_per_ip",
    "max_revocations",
    "max_frame_bytes",
    "max_request_head_bytes",
    "rate_per_second",
    "rate_burst",
    "rate_strikes",
    "user_rate_per_second",
    "user_rate_burst",
    "backlog_bytes",
    "replay_page",
    "commit_batch",
    "notes_max_update_bytes",
    "notes_max_doc_bytes",
    "notes_compact_every",
    "notes_rate_per_second",
    "notes_rate_burst",
    "notes_awareness_ids_per_socket",
    "notes_awareness_state_bytes",
    "notes_awareness_max_states",
    "notes_awareness_timeout",
    "notes_compact_bytes",
    "notes_bytes_per_second",
    "notes_bytes_burst",
    "notes_sync_per_minute",
    "notes_sync_burst",
    "notes_awareness_states_per_user",
    "notes_awareness_per_second",
    "presence_ttl",
)


@dataclass(frozen=True)
class Result:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.detail}"


def run(timeout: float = 5.0, env: Mapping[str, str] | None = None, web: Path | None = None) -> int:
    """Print each check's line; 0 when none failed."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines would bury ours
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request (the ping)
    failed = False
    for result in asyncio.run(_collect(env if env is not None else os.environ, timeout, web)):
        print(result.line(), flush=True)
        failed |= result.status == "FAIL"
    print("FAIL: see above" if failed else "all checks passed")
    return 1 if failed else 0


async def _collect(env: Mapping[str, str], timeout: float, web: Path | None) -> list[Result]:
    settings, results = load_settings(env)
    if settings is None:
        return [*results, Result("FAIL", "database", "not checked: the settings do not parse")]
    results += sanity(settings)
    results.append(await _bounded("database", check_database(settings.database_url), timeout))
    if uses_redis(settings):
        results.append(await _bounded("redis", check_redis(settings.redis_url, timeout), timeout))
    else:
        results.append(Result("ok", "redis", "not configured: in-process broker (one process)"))
    if settings.webhook_url:
        webhook = check_webhook(settings.webhook_url, settings.webhook_secret, timeout)
        results.append(await _bounded("webhook", webhook, timeout))
    if web is None:
        from .app import WEB  # the same directory the server serves

        web = WEB
    results.append(check_web(web))
    return results


def load_settings(env: Mapping[str, str]) -> tuple[Settings | None, list[Result]]:
    """Settings as ``serve`` reads them, and the secret's verdict."""
    # Settings.from_env warns loudly about a missing secret; here the secret line says it.
    config_log = logging.getLogger("menteo.config")
    config_log.disabled = True
    try:
        settings = Settings.from_env(env)
    except ValueError as exc:
        return None, [Result("FAIL", "settings", str(exc))]
    finally:
        config_log.disabled = False
    production = production_like(settings)
    results = [Result("ok", "settings", f"{PREFIX}* parsed ({describe(settings)})")]
    secret = settings.secret.encode()
    if settings.dev_secret:
        if production:
            detail = (
                f"{PREFIX}SECRET is unset while Redis or PostgreSQL is configured: each "
                "process would sign with its own random secret"
            )
            results.append(Result("FAIL", "secret", detail))
        else:
            detail = (
                f"{PREFIX}SECRET is unset: a random dev secret, kept in the SQLite database "
                "(fine on a laptop)"
            )
            results.append(Result("warn", "secret", detail))
    elif len(set(secret)) < 8:
        detail = f"{PREFIX}SECRET has fewer than 8 distinct characters: a placeholder?"
        results.append(Result("FAIL", "secret", detail))
    else:
        results.append(Result("ok", "secret", f"{len(secret)} bytes (>= {MIN_SECRET_BYTES})"))
    return settings, results


def uses_redis(settings: Settings) -> bool:
    return bool(settings.redis_url) and not settings.redis_url.startswith("memory://")


def production_like(settings: Settings) -> bool:
    return uses_redis(settings) or not settings.is_sqlite


def describe(settings: Settings) -> str:
    database = "PostgreSQL" if not settings.is_sqlite else "SQLite"
    broker = "Redis" if uses_redis(settings) else "in-process broker"
    if settings.redis_url.startswith("redis+cluster://"):
        broker = "Redis Cluster"
    return f"{database}, {broker}, logs as {settings.log_format}"


def sanity(settings: Settings) -> list[Result]:
    bad = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value < 0 or (value == 0 and f.name in POSITIVE):
            bad.append(f"{PREFIX}{f.name.upper()}={value}")
    results = []
    if bad:
        results.append(Result("FAIL", "limits", "must be positive: " + ", ".join(bad)))
    else:
        results.append(Result("ok", "limits", "all positive"))
    if settings.notes_max_update_bytes > settings.notes_max_doc_bytes:
        detail = f"{PREFIX}NOTES_MAX_UPDATE_BYTES is larger than {PREFIX}NOTES_MAX_DOC_BYTES"
        results.append(Result("FAIL", "notes limits", detail))
    if settings.notes_bytes_burst < settings.notes_max_update_bytes:
        # one largest update (a paste) must fit the byte bucket
        detail = f"{PREFIX}NOTES_BYTES_BURST is smaller than {PREFIX}NOTES_MAX_UPDATE_BYTES"
        results.append(Result("FAIL", "notes limits", detail))
    if production_like(settings) and "*" in settings.allowed_origins:
        detail = f"{PREFIX}ALLOWED_ORIGINS=*: any web site may open sockets with a user's token"
        results.append(Result("warn", "origins", detail))
    return results


async def _bounded(name: str, check: Awaitable[Result], timeout: float) -> Result:
    """A check that may hang on an unanswering host gets ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await check
    except TimeoutError:
        return Result("FAIL", name, f"unreachable: no answer within {timeout:g}s")
    except Exception as exc:
        return Result("FAIL", name, f"cannot connect ({type(exc).__name__}: {_first_line(exc)})")


async def check_database(url: str) -> Result:
    """Connect, read the schema's revision, compare it with the code's."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from .persistence.database import alembic_config

    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            return Result("warn", "database", f"{shown}: in memory, nothing outlives the process")
        if not await asyncio.to_thread(Path(path).is_file):
            # Connecting would create an empty file; say what to run instead.
            detail = f"no database file at {path}: run `menteo-realtime migrate`"
            return Result("FAIL", "database", detail)
    engine = create_async_engine(url, poolclass=_null_pool())
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_revision)
    finally:
        await engine.dispose()
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if current == head:
        return Result("ok", "database", f"{shown} reachable, schema at {head} (latest)")
    if current is None:
        detail = f"{shown} reachable but has no schema: run `menteo-realtime migrate`"
        return Result("FAIL", "database", detail)
    known = {rev.revision for rev in scripts.walk_revisions()}
    if current not in known:
        detail = f"{shown}: schema at {current}, which this release does not know (newer?)"
        return Result("FAIL", "database", detail)
    detail = f"{shown}: schema at {current}, the code needs {head}: run `menteo-realtime migrate`"
    return Result("FAIL", "database", detail)


def _null_pool() -> type:
    from sqlalchemy.pool import NullPool

    return NullPool  # one connection, closed with the check


def _revision(conn: object) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()  # type: ignore[arg-type]


async def check_redis(url: str, timeout: float) -> Result:
    if url.startswith("redis+cluster://"):
        return await check_cluster(url)
    import redis.asyncio as aioredis

    shown = _hide_password(url)
    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        await client.ping()
        info = await client.info("server")
    finally:
        await client.aclose()
    version = info.get("redis_version", "?")
    return Result("ok", "redis", f"{shown} reachable (Redis {version})")


async def check_cluster(url: str) -> Result:
    """A startup node's slot map, every master in it answering ``PING``, and the cluster's
    own verdict (``cluster_state:ok``); bounded by the caller's timeout."""
    from .broker.slots import ClusterURL, cluster_state, node_client, read_slot_map

    parsed = ClusterURL.parse(url)
    shown = _hide_cluster_password(url, parsed)
    clients: list[aioredis.Redis] = []

    def client(address: tuple[str, int]) -> aioredis.Redis:
        clients.append(node_client(address, parsed, pool=1))
        return clients[-1]

    try:
        failure: Exception = ValueError("no startup node")
        for address in parsed.nodes:
            try:
                first = client(address)
                slots = await read_slot_map(first, address)
                break
            except Exception as exc:
                failure = exc
        else:
            raise failure
        for master in slots.masters.values():
            await client(master).ping()
        state = await cluster_state(first)
        version = (await first.info("server")).get("redis_version", "?")
    finally:
        for each in clients:
            await each.aclose(close_connection_pool=True)
    unserved = slots.owner.count(None)
    if state != "ok" or unserved:
        detail = f"{shown}: cluster_state {state}, {unserved} slots served by no master"
        return Result("FAIL", "redis", detail)
    masters = len(slots.masters)
    return Result(
        "ok", "redis", f"{shown} reachable (Redis {version}, cluster of {masters} masters)"
    )


def _hide_cluster_password(url: str, parsed: ClusterURL) -> str:
    if parsed.password is None:
        return url
    nodes = ",".join(f"{host}:{port}" for host, port in parsed.nodes)
    return f"redis+cluster://{parsed.username or ''}:***@{nodes}"


async def check_webhook(url: str, secret: str, timeout: float) -> Result:
    """POST a signed ``ping`` (docs/webhooks.md): the receiver must answer 2xx, as it will
    for every notification."""
    import time
    import uuid

    import httpx
    import orjson

    from .notify.signing import headers

    event_id = f"ping-{uuid.uuid4().hex}"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = orjson.dumps({"id": event_id, "type": "ping", "created_at": created})
    shown = _hide_password(url)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        answer = await client.post(url, content=body, headers=headers(secret, event_id, body))
    if 200 <= answer.status_code < 300:
        return Result("ok", "webhook", f"{shown} answered a signed ping {answer.status_code}")
    return Result("FAIL", "webhook", f"{shown} answered a signed ping {answer.status_code}")


def check_web(web: Path) -> Result:
    """The notes editor's bundle; without it the page runs and says notes are unavailable."""
    bundle = web / "dist" / "notes.bundle.js"
    if not web.is_dir():
        return Result("warn", "web", f"no {web}: the browser client is not served")
    if not bundle.is_file():
        detail = f"{bundle} not built (`make web`): the notes editor shows as unavailable"
        return Result("warn", "web", detail)
    return Result("ok", "web", f"notes bundle built ({bundle.stat().st_size // 1024} KiB)")


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no detail"
