"""Settings from the environment (12-factor): one object, built once and passed down."""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

log = logging.getLogger("menteo.config")

PREFIX = "MENTEO_"
MIN_SECRET_BYTES = 32
LOG_FORMATS = ("text", "json")
MAX_HANDOFF = 60.0  # seconds: a drain waits this long at most for a client to move
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the server. Each field maps to ``MENTEO_<FIELD NAME>``."""

    database_url: str = "sqlite+aiosqlite:///./menteo.db"
    redis_url: str = ""  # empty: the in-process broker (one process only)
    secret: str = ""  # empty: a random dev secret, with a loud warning
    allowed_origins: tuple[str, ...] = ()  # empty: same host as the request only; "*" any
    auto_migrate: bool | None = None  # None: on for SQLite, off for PostgreSQL
    # When set, every token must carry this ``aud`` / ``iss`` (the ``token`` command sets them).
    token_audience: str = ""
    token_issuer: str = ""
    # Revocations held at once (user and single-token ones together, until they lapse).
    max_revocations: int = 100_000
    # Seconds a token may live (``exp - iat``; no ``iat``: refused); 0: no cap. With a cap, a
    # user's revocation lapses once every token it covers has expired.
    token_max_lifetime: float = 0.0

    # Limits, per connection unless named otherwise.
    max_connections_per_ip: int = 500  # open sockets from one address (checked before auth)
    max_frame_bytes: int = 64 * 1024
    # HTTP request line and headers together (REST, event streams, WebSocket handshakes).
    max_request_head_bytes: int = 32 * 1024
    rate_per_second: float = 20.0
    rate_burst: int = 50
    rate_strikes: int = 20
    user_rate_per_second: float = 40.0  # all of one user's room sockets in a process together
    user_rate_burst: int = 100  # frames refused in a row for rate before close 1008
    backlog_bytes: int = 1024 * 1024  # outbound bytes queued for a slow socket before 1013
    # A send (catch-up or live) that cannot reach the peer within this is aborted and released.
    send_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    history_limit: int = 50  # chat messages in the welcome frame
    edit_window: float = 86_400.0  # seconds after sending that its author may edit; 0: always
    search_rate_per_second: float = 2.0  # chat searches per user per process; 0: no limit
    search_burst: int = 20  # searches in a row (typing a query) before that rate applies
    replay_page: int = 500  # events per database read when resuming

    # Group commit: the writer takes up to this many appends per transaction.
    commit_batch: int = 512
    # A hole in a stream's seqs waits this long for the broker before reading the database.
    gap_fill_delay: float = 0.05
    # Every so often each process compares its streams with the database (lost tail events).
    sweep_interval: float = 5.0

    # Shared notes (Yjs).
    notes_max_update_bytes: int = 256 * 1024  # one message; larger closes 1009
    notes_max_doc_bytes: int = 4 * 1024 * 1024  # the document; past it the socket closes 4413
    notes_compact_every: int = 500  # updates between snapshots
    notes_retention: float = 3600.0  # seconds compacted updates are kept for lagging processes
    notes_rate_per_second: float = 60.0
    notes_rate_burst: int = 200
    notes_awareness_ids_per_socket: int = 4  # Yjs client ids one socket may publish for
    notes_awareness_state_bytes: int = 4096  # one client's awareness state (JSON)
    notes_awareness_max_states: int = 32  # awareness states per document (per process)
    notes_awareness_timeout: float = 30.0  # a state not renewed for this long is removed
    notes_compact_bytes: int = 1024 * 1024  # update bytes between snapshots (as well)
    notes_bytes_per_second: float = 4096.0  # update bytes per user per document
    notes_bytes_burst: int = 1024 * 1024  # the byte bucket; over it the socket closes 1008
    notes_sync_per_minute: float = 12.0  # sync requests (step 1) per user per document
    notes_sync_burst: int = 8  # the sync request bucket; over it the socket closes 1008
    notes_refusal_cooldown: float = 1.0  # after an invalid update, doubling up to 64x
    notes_awareness_states_per_user: int = 8  # awareness states one user holds per document
    notes_awareness_per_second: float = 10.0  # awareness messages relayed per socket

    # The community feed.
    feed_heartbeat: float = 15.0  # seconds between comments on an idle event stream; 0: none
    feed_reaction_window: float = 0.5  # a post's reactions within this become one event
    feed_post_rate_per_second: float = 0.1  # per user (posts, threads, milestone shares)
    feed_post_burst: int = 5
    feed_comment_rate_per_second: float = 0.5  # per user
    feed_comment_burst: int = 10
    feed_reaction_rate_per_second: float = 5.0  # per user (PUT and DELETE alike)
    feed_reaction_burst: int = 30
    max_follows: int = 1000  # communities, threads and users one user follows, together

    # Roadmap copies (and new roadmaps), charged by the steps they queue (per process).
    roadmap_copy_user_rate: float = 20.0  # steps per second per user; 0: no limit
    roadmap_copy_user_burst: int = 1000
    roadmap_copy_room_rate: float = 5.0  # steps per second copied into one room
    roadmap_copy_room_burst: int = 500  # a whole roadmap at once

    # Read state.
    read_flush_interval: float = 0.05  # read markers are written at most once per this
    digest_max_events: int = 10_000  # events one digest reads at most (then "truncated")

    # Webhook notifications (realtime/notify/, docs/webhooks.md). No URL: none are sent.
    webhook_url: str = ""
    webhook_secret: str = ""  # signs every request; at least 32 bytes when the URL is set
    notify_delay: float = 60.0  # seconds a member must stay away and unread before a webhook
    notify_interval: float = 600.0  # at most one per user and room (or post) in this time
    webhook_timeout: float = 5.0  # one delivery attempt, connect to answer
    webhook_max_attempts: int = 10  # then the notification is marked failed

    presence_grace: float = 10.0  # seconds a dropped (unclean) socket keeps its user present
    presence_ttl: float = 30.0  # a dead process's users expire from presence after this
    typing_interval: float = 1.0  # at most one presence.typing per user per this many seconds
    # ``auth.expiring`` goes this many seconds before a socket's token expires (room, feed).
    auth_expiring_before: float = 60.0
    shutdown_timeout: float = 5.0
    # On SIGTERM, WebSockets close with 1012 this many a second (drain.py), and all of them
    # within ``drain_seconds`` (the rate rises to fit); a rate of 0 closes them all at once.
    drain_rate: float = 200.0
    drain_seconds: float = 10.0
    # A room socket whose client takes a hand-off (``handoff=1``) is sent ``reconnect`` at
    # its turn instead, and closed 1012 this many seconds later unless its client closed it
    # first (it opened its next socket meanwhile); 0: no hand-off.
    drain_handoff: float = 3.0
    log_format: str = "text"  # "json": one JSON object per line, for a log pipeline

    dev_secret: bool = field(default=False, compare=False)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_automatically(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``MENTEO_*`` variables; ``overrides`` win (used by tests and the CLI)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or f.name == "dev_secret":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update(overrides)
        if values.get("log_format", "text") not in LOG_FORMATS:
            raise ValueError(f"{PREFIX}LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        if float(values.get("auth_expiring_before", 0.0)) < 0:  # type: ignore[arg-type]
            raise ValueError(f"{PREFIX}AUTH_EXPIRING_BEFORE must be 0 or more seconds")
        for name in ("drain_rate", "drain_seconds"):
            if not 0 <= float(values.get(name, 0.0)) < math.inf:  # type: ignore[arg-type]
                raise ValueError(f"{PREFIX}{name.upper()} must be a finite number, 0 or more")
        if not 0 <= float(values.get("drain_handoff", 0.0)) <= MAX_HANDOFF:  # type: ignore[arg-type]
            raise ValueError(f"{PREFIX}DRAIN_HANDOFF must be 0 to {MAX_HANDOFF:.0f} seconds")
        _check_webhook(values)
        if not values.get("secret"):
            if str(values.get("database_url", cls.database_url)).startswith("sqlite"):
                # app.kept_secret: the first start stores it, later ones read it back.
                log.warning(
                    "MENTEO_SECRET is not set: using a random dev secret kept in the SQLite "
                    "database, so tokens survive a restart of this server, and anyone who "
                    "can read the database file can sign tokens. Set MENTEO_SECRET in "
                    "production."
                )
            else:
                log.warning(
                    "MENTEO_SECRET is not set: using a random secret for this process only. "
                    "Tokens will not survive a restart and processes will not accept each "
                    "other's tokens. Set MENTEO_SECRET in production."
                )
            values["secret"] = secrets.token_urlsafe(32)
            values["dev_secret"] = True
        elif len(str(values["secret"]).encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"{PREFIX}SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256)")
        return cls(**values)  # type: ignore[arg-type]


def _check_webhook(values: Mapping[str, object]) -> None:
    """A webhook URL needs a real secret (the receiver trusts the signature) and sane
    timings; ``serve`` and ``check`` both build Settings here, so both refuse."""
    for name in ("notify_delay", "notify_interval"):
        if float(values.get(name, 0.0)) < 0:  # type: ignore[arg-type]
            raise ValueError(f"{PREFIX}{name.upper()} must be 0 or more seconds")
    if float(values.get("webhook_timeout", 1.0)) <= 0:  # type: ignore[arg-type]
        raise ValueError(f"{PREFIX}WEBHOOK_TIMEOUT must be more than 0 seconds")
    if int(values.get("webhook_max_attempts", 1)) < 1:  # type: ignore[call-overload]
        raise ValueError(f"{PREFIX}WEBHOOK_MAX_ATTEMPTS must be at least 1")
    url = str(values.get("webhook_url", ""))
    if not url:
        return
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{PREFIX}WEBHOOK_URL must be an http:// or https:// URL")
    if len(str(values.get("webhook_secret", "")).encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{PREFIX}WEBHOOK_SECRET must be set, at least {MIN_SECRET_BYTES} bytes, "
            f"when {PREFIX}WEBHOOK_URL is"
        )


def _parse(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name.startswith("bool"):
            word = raw.strip().lower()
            if word == "" and "None" in type_name:
                return None
            if word not in TRUE + FALSE:
                # A misspelt "true" must not quietly read as false.
                raise ValueError(f"not a boolean ({'/'.join(TRUE)} or {'/'.join(FALSE)})")
            return word in TRUE
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{PREFIX}{name.upper()}={raw!r}: {exc}") from None
    return raw
