"""``menteo-realtime``: serve, token, migrate, backup, new-epoch, check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from .auth import Tokens
from .config import Settings
from .logs import configure, log_config
from .watchdog import EXIT_FAILED

log = logging.getLogger("menteo")
EXIT_SETTINGS = 2  # the settings are invalid: nothing was started


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """Server options that carry our limits (shared by ``serve`` and the tests)."""
    return {
        # Uvicorn's websockets-sansio protocol with a direct write path for ready frames and
        # less state per idle socket (realtime/sockets/wsproto.py).
        "ws": "realtime.sockets.wsproto:MenteoWebSocketProtocol",
        # Uvicorn's HTTP protocol with a way to drop a stalled event stream
        # (realtime/sockets/httpproto.py).
        "http": "realtime.sockets.httpproto:MenteoHTTPProtocol",
        # The request head cap, which realtime/sockets/httpproto.py enforces (h11 would too).
        "h11_max_incomplete_event_size": settings.max_request_head_bytes,
        # The largest frame any socket takes; each socket enforces its own limit below it.
        "ws_max_size": max(settings.max_frame_bytes, settings.notes_max_update_bytes),
        "ws_ping_interval": settings.ping_interval,
        "ws_ping_timeout": settings.ping_timeout,
        "ws_per_message_deflate": False,  # CPU and memory per socket; frames are small
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "lifespan": "on",
        "log_config": log_config(settings.log_format),
    }


@contextlib.contextmanager
def exit_like_sigterm() -> Iterator[None]:
    """Around uvicorn's supervisor (``--workers N``): when SIGTERM stopped it, die of SIGTERM
    once it is done, as a single process does (uvicorn re-raises the signal there), so the
    exit status is 143 in a shell. The wakeup fd sees every signal a Python handler caught,
    whoever installed the handler."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        yield
        with contextlib.suppress(BlockingIOError):
            received = reader.recv(4096)
            if signal.SIGTERM in received:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGTERM)
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def raise_open_files_limit() -> int:
    """Every socket is a file descriptor, and a login shell's soft limit (often 1,024) would
    refuse sockets long before memory runs out: raise the soft ``RLIMIT_NOFILE`` to the hard
    limit (no privilege needed; the hard limit and the kernel's are the operator's,
    docs/deploy.md). Workers inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if hard == resource.RLIM_INFINITY:  # the kernel refuses an infinite soft limit here
        try:
            want = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            want = soft
    if want != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft >= want):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (OSError, ValueError) as exc:
        print(f"could not raise the open-files limit from {soft} to {want}: {exc}", file=sys.stderr)
        return soft
    return want


def serve(args: argparse.Namespace) -> int:
    from .metrics import shared_values

    raise_open_files_limit()
    workers = 1 if args.demo else args.workers
    # SIGTERM's status outermost, so the metrics directory is removed before the process
    # dies; the metrics of every worker are shown in one scrape (metrics.py).
    sigterm = exit_like_sigterm() if workers > 1 else contextlib.nullcontext()
    with sigterm, shared_values(workers):
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    settings = valid_settings()
    if settings is None:
        return EXIT_SETTINGS
    options = uvicorn_options(settings)
    if args.demo:  # one process that seeds a demo and prints links once it listens
        from .demo import serve_demo

        if args.workers > 1:
            print("--demo runs one process: --workers is ignored", file=sys.stderr)

        return serve_demo(settings, args.host, args.port, args.log_level, options)
    if args.workers > 1:
        if settings.dev_secret or not settings.redis_url:
            print("--workers > 1 needs MENTEO_SECRET and MENTEO_REDIS_URL", file=sys.stderr)
            return EXIT_SETTINGS
        uvicorn.run(
            "realtime.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            **options,  # type: ignore[arg-type]
        )
        return 0
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        **options,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    # A part the process depends on died (watchdog.py): stop, then exit non-zero.
    app.stop_server = lambda: setattr(server, "should_exit", True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if app.failure is not None:
        return EXIT_FAILED
    if not server.started:
        return 3  # as uvicorn.run: it could not start
    return 0


def valid_settings() -> Settings | None:
    """The settings, checked by ``check``'s rules (parse, secret, limits) without its
    connection checks: a failure is printed, naming the variable, and nothing starts."""
    from .check import load_settings, sanity

    settings, results = load_settings(os.environ)
    if settings is not None:
        results += sanity(settings)
    failed = [result for result in results if result.status == "FAIL"]
    for result in results:
        if result.status == "warn":
            log.warning("%s: %s", result.name, result.detail)
    for result in failed:
        print(result.line(), file=sys.stderr)
    if failed:
        print("not starting: fix the settings above (`menteo-realtime check`)", file=sys.stderr)
        return None
    return settings


def token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.dev_secret:
        print(
            "warning: MENTEO_SECRET is unset; this token only works for no server", file=sys.stderr
        )
    # ``iat``, a random ``jti`` and, when the server requires them, ``aud`` and ``iss``.
    tokens = Tokens(settings.secret, settings.token_audience, settings.token_issuer)
    print(tokens.issue(args.user_id, args.name, role=args.role, ttl=args.ttl))
    return 0


def migrate(args: argparse.Namespace) -> int:
    from .persistence.database import Database

    async def run() -> None:
        db = Database(Settings.from_env(secret="x" * 32).database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(run())
    print("schema is up to date")
    return 0


def backup(args: argparse.Namespace) -> int:
    """An online copy of the SQLite database (persistence/backup.py)."""
    from pathlib import Path

    from sqlalchemy import make_url

    from .persistence.backup import BackupError, backup_sqlite

    url = Settings.from_env(secret="x" * 32).database_url
    path = make_url(url).database if url.startswith("sqlite") else None
    if not path or path == ":memory:":
        print(
            "backup copies a SQLite database file; for PostgreSQL use pg_dump "
            "(docs/deploy.md, Backup and restore)",
            file=sys.stderr,
        )
        return EXIT_SETTINGS
    try:
        made = backup_sqlite(Path(path), Path(args.path))
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup of epoch {made.epoch} written to {made.path} ({made.size} bytes)")
    return 0


def new_epoch(args: argparse.Namespace) -> int:
    """Give the database a new epoch, with every process stopped, after a restore the server
    cannot tell by itself (persistence/epoch.py)."""
    from .persistence.database import Database

    async def run() -> tuple[str | None, str]:
        db = Database(Settings.from_env(secret="x" * 32).database_url)
        try:
            return await db.new_epoch()
        finally:
            await db.close()

    old, new = asyncio.run(run())
    print(f"epoch {old or '(none)'} -> {new}: resume points from before resume nothing")
    return 0


def check(args: argparse.Namespace) -> int:
    from .check import run

    return run(timeout=args.timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="menteo-realtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    p.add_argument("--log-level", default="info")
    p.add_argument("--demo", action="store_true", help="seed a demo room and feed; print links")
    p.set_defaults(func=serve)

    p = sub.add_parser("token", help="print a signed token (alone on its last line)")
    p.add_argument("user_id")
    p.add_argument("--name", required=True)
    p.add_argument("--role", choices=["service"], default=None)
    p.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    p.set_defaults(func=token)

    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(func=migrate)

    p = sub.add_parser("backup", help="copy the SQLite database while it serves")
    p.add_argument("path", help="the backup file to write (must not exist)")
    p.set_defaults(func=backup)

    p = sub.add_parser("new-epoch", help="give a restored database a new epoch")
    p.set_defaults(func=new_epoch)

    p = sub.add_parser("check", help="check settings, database, Redis and the web bundle")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per connection check")
    p.set_defaults(func=check)

    args = parser.parse_args(argv)
    # Read before Settings: parsing them may log, and that line has a format too.
    configure(os.environ.get("MENTEO_LOG_FORMAT", "text"))
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
