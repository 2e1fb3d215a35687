"""The ASGI application: routes and the lifespan that opens and closes every part."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from . import logs
from .access.members import RoomReducer
from .access.revocations import RevocationReducer
from .access.service import Access
from .api import chat as chat_api
from .api import checklist as checklist_api
from .api import client as client_api
from .api import feed as feed_api
from .api import notes as notes_api
from .api import openapi as openapi_api
from .api import rooms as rooms_api
from .api import tokens as tokens_api
from .api import webhooks as webhooks_api
from .api.common import (
    ApiError,
    database_unavailable,
    error_response,
    json_response,
    nul_refusal,
    state_of,
)
from .auth import Tokens
from .broker import create_broker
from .checklist.store import ChecklistReducer
from .config import Settings
from .drain import StopSignals, drain_sockets
from .faults import Faults
from .feed.parts import FeedParts
from .feed.reducer import FeedReducer
from .feed.service import FeedService
from .feed.socket import FeedSocket
from .feed.sse import FeedStream
from .inbox.parts import InboxParts
from .inbox.service import InboxService
from .inbox.socket import InboxSocket, inbox_rules
from .metrics import CONTENT_TYPE, Metrics
from .notes.document import NotesDocuments
from .notes.socket import NotesParts, NotesSocket
from .notify import Notifier, create_notifier
from .persistence.chat import ChatReducer
from .persistence.database import Database
from .persistence.events import Reducer, StoredEvent
from .presence import MemoryPresence, Presence
from .protocol import SUBPROTOCOL_NOTES
from .reads.markers import MarkerStore
from .rooms.parts import RoomParts
from .rooms.socket import RoomSocket
from .rooms.welcomes import WelcomeReads
from .sockets.admission import AddressSlots, Door, Rules
from .sockets.membership import Membership
from .sockets.shared_rate import RedisClient, SharedRate, redis_client
from .sockets.shared_slots import SharedSlots
from .sockets.wire import CORK
from .state import State
from .streams.hub import Hub
from .streams.writer import Writer
from .watchdog import EXIT_FAILED, Watchdog

log = logging.getLogger("menteo")

# The browser client: inside the package when installed from a wheel (setup.py copies web/
# there, and the SDK's modules as realtime/sdk), else the checkout's web/ (a source tree, or
# an editable install).
_PACKAGED_WEB = Path(__file__).resolve().parent / "web"
WEB = _PACKAGED_WEB if _PACKAGED_WEB.is_dir() else Path(__file__).resolve().parent.parent / "web"
# The JavaScript SDK's modules (clients/js/src), served at /sdk/: the pages import it from
# there, so the one copy of the client code is the SDK's (no build step).
_PACKAGED_SDK = Path(__file__).resolve().parent / "sdk"
_CHECKOUT_SDK = Path(__file__).resolve().parent.parent / "clients" / "js" / "src"
SDK = _PACKAGED_SDK if _PACKAGED_SDK.is_dir() else _CHECKOUT_SDK


def create_presence(settings: Settings, hub: Hub, faults: Faults, metrics: Metrics) -> Presence:
    if not settings.redis_url:
        return MemoryPresence(hub.signal, grace=settings.presence_grace)
    from .presence.redis import RedisPresence

    presence = RedisPresence(
        settings.redis_url,
        hub.signal,
        lambda: hub.streams.keys(),
        grace=settings.presence_grace,
        ttl=settings.presence_ttl,
        announce_local=hub.signal_local,
    )
    presence.faults = faults
    presence.metrics = metrics
    hub.on_signal = presence.observe
    hub.on_resync.append(presence.resynced)
    return presence


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[State]:
    """Open database, broker, hub and writer; close them in the reverse order."""
    db = Database(settings.database_url)
    await db.prepare(auto_migrate=settings.migrate_automatically)
    settings = await kept_secret(settings, db)
    metrics = Metrics()
    faults = Faults(metrics)  # what the writer, hub and broker survived, in /metrics
    broker = create_broker(settings.redis_url)
    broker.faults = faults
    broker.metrics = metrics
    hub = Hub(
        db,
        broker,
        gap_fill_delay=settings.gap_fill_delay,
        sweep_interval=settings.sweep_interval,
        page=settings.replay_page,
        faults=faults,
        batch=CORK,
        metrics=metrics,
    )
    await hub.start()
    inbox = InboxService(db, hub, settings, faults)
    await inbox.start()
    notifier: Notifier | None = None  # opened below, once presence is

    def committed(events: list[StoredEvent]) -> None:
        hub.committed(events)  # the rooms' sockets first: the inbox is a view of them
        inbox.committed(events)
        if notifier is not None:
            notifier.committed(events)  # appends to a list; its own tasks do the rest

    writer = _writer(settings, db, committed, faults, metrics)
    writer.start()
    access = Access(db, hub, metrics)  # follows revocations from here on
    await access.start()
    tokens = Tokens(
        settings.secret,
        settings.token_audience,
        settings.token_issuer,
        access.revoked,
        settings.token_max_lifetime,
    )
    markers = _markers(settings, db, hub, inbox, faults)
    feed = FeedService(db, hub, writer, settings, metrics)
    await feed.start()
    presence = create_presence(settings, hub, faults, metrics)
    await presence.start()
    notifier = create_notifier(settings, db, presence, metrics, faults)
    if notifier is not None:
        access.connections.observers.append(notifier.attendance.changed)
        await notifier.start()
    notes = NotesDocuments(db, hub, settings)
    rates_client, user_rates = _shared_rates(settings, db, feed)
    shared_slots = None
    if rates_client is not None:  # the per-address cap over every process
        prefix = f"menteo:{db.epoch}:slots:"
        limit = settings.max_connections_per_ip
        shared_slots = SharedSlots(rates_client, prefix, limit, settings.presence_ttl)
        shared_slots.start()
    state = State(
        settings,
        db,
        broker,
        hub,
        writer,
        presence,
        notes,
        feed,
        access,
        tokens,
        markers,
        inbox,
        metrics=metrics,
        notifier=notifier,
        user_rates=user_rates,
        shared_slots=shared_slots,
    )
    notes.metrics = state.metrics
    revocations = access.revocations
    gauges = metrics.gauges  # read at scrape time
    gauges["menteo_revocations_held"] = lambda: len(revocations)
    gauges["menteo_read_marker_writes_total"] = lambda: markers.writes
    gauges["menteo_read_markers_stored_total"] = lambda: markers.stored
    gauges["menteo_inbox_updates_total"] = lambda: inbox.updates
    await db.warm()  # before /readyz can pass: a rolling restart's sockets come at once
    signals = StopSignals(
        lambda: _stopping(state),
        drain=lambda: drain_sockets(
            settings.drain_rate, settings.drain_seconds, settings.drain_handoff
        ),
    )
    signals.install()
    watchdog = _watchdog(state, signals)
    try:
        yield state
    finally:
        watchdog.disarm()
        signals.uninstall()
        _stopping(state)
        # Sockets are closed by the server (1012) before this runs. Then: commit what is
        # queued (nothing acked is ever lost; this stores the unacked too), stop
        # presence, stop delivery, and close the broker and the database last.
        steps: list[tuple[str, Callable[[], Awaitable[object]] | None]] = [
            ("read markers", markers.close),  # pending markers are stored (and announced)
            ("feed flush", feed.flush),  # pending reaction counts go to the writer first
            ("writer", writer.close),
            # After the writer: what it committed last is recorded.
            ("notifier", notifier.close if notifier is not None else None),
            ("presence", presence.close),
            ("inbox", inbox.close),
            ("feed", feed.close),
            ("access", access.close),
            ("hub", hub.close),
            ("broker", broker.close),
            # This process's per-address slots free at once.
            ("shared slots", shared_slots.close if shared_slots is not None else None),
            ("rates client", rates_client.aclose if rates_client is not None else None),
            ("database", db.close),
        ]
        await _shut_down(steps)
        metrics.close()  # a worker's open sockets leave the sum of all workers


SLOW_STEP = 1.0  # seconds; a shutdown step slower than this is logged by name


async def _shut_down(steps: Sequence[tuple[str, Callable[[], Awaitable[object]] | None]]) -> None:
    """Each step in order; one that takes long is named in the log, so a slow stop (a
    deploy waiting on it) says where it waited."""
    for name, step in steps:
        if step is None:
            continue
        started = time.monotonic()
        await step()
        took = time.monotonic() - started
        if took > SLOW_STEP:
            log.warning("shutdown: %s took %.1f s", name, took)


def _shared_rates(
    settings: Settings, db: Database, feed: FeedService
) -> tuple[RedisClient | None, SharedRate | None]:
    """With Redis, ``MENTEO_USER_RATE_*`` and the feed's write rates hold for every process
    together: a token bucket per user in Redis, taken in leases (sockets/shared_rate.py);
    named by the database's epoch, so deployments (and test runs) sharing one Redis never
    share budgets. Returns the client (closed at shutdown) and the room sockets' budget."""
    if not settings.redis_url:
        return None, None
    client = redis_client(settings.redis_url)
    prefix = f"menteo:{db.epoch}:rate:"
    feed_limits = {
        "post": feed.post_limits,
        "comment": feed.comment_limits,
        "reaction": feed.reaction_limits,
        "follow": feed.follow_limits,
    }
    for name, limits in feed_limits.items():
        limits.shared = SharedRate(client, f"{prefix}{name}:", limits.rate, limits.burst)
    user = settings.user_rate_per_second, settings.user_rate_burst
    return client, SharedRate(client, f"{prefix}user:", *user)


def _markers(
    settings: Settings, db: Database, hub: Hub, inbox: InboxService, faults: Faults
) -> MarkerStore:
    """The read markers' writer: a stored marker goes to every socket of its room on every
    process (``read.marker``, a hub signal) and to the user's inboxes."""

    def moved(room: str, user: str, seq: int) -> None:
        hub.signal(room, {"type": "read.marker", "user_id": user, "seq": seq})
        inbox.marker_moved(room, user, seq)

    markers = MarkerStore(db, interval=settings.read_flush_interval, faults=faults, moved=moved)
    markers.start()
    return markers


DEV_SECRET_KEY = "dev_secret"  # the Meta row that keeps SQLite's generated secret


async def kept_secret(settings: Settings, db: Database) -> Settings:
    """On SQLite without ``MENTEO_SECRET``, the generated dev secret is kept in the database
    (its Meta table), so a restarted ``make run`` still accepts the tokens of every open page.
    On PostgreSQL the random secret stays per process, as before: a shared database never
    holds a signing key, and ``check`` fails such a setup."""
    if not (settings.dev_secret and settings.is_sqlite):
        return settings
    return replace(settings, secret=await db.keep(DEV_SECRET_KEY, settings.secret))


def _writer(
    settings: Settings,
    db: Database,
    committed: Callable[[list[StoredEvent]], None],
    faults: Faults,
    metrics: Metrics,
) -> Writer:
    """The group-commit writer, with the reducers that keep state beside their events."""
    reducers: list[Reducer] = [
        ChecklistReducer(),
        FeedReducer(),
        RoomReducer(),  # members, title, archive flag
        RevocationReducer(settings.max_revocations),
    ]
    return Writer(
        db,
        committed,
        batch=settings.commit_batch,
        reducers=reducers,
        faults=faults,
        metrics=metrics,
        chat=ChatReducer(settings.edit_window),
    )


def _watchdog(state: State, signals: StopSignals) -> Watchdog:
    """Watch the tasks the whole process depends on (watchdog.py)."""
    watchdog = Watchdog(lambda reason: _failed(state, signals, reason))
    watchdog.watch("writer", state.writer.task)
    watchdog.watch("hub sweeper", state.hub.sweeper)
    for task in getattr(state.broker, "tasks", ()):
        watchdog.watch(task.get_name().removeprefix("menteo-"), task)
    watchdog.watch("presence upkeep", getattr(state.presence, "task", None))
    watchdog.watch("read markers", state.markers.task)
    watchdog.watch("inbox sweep", state.inbox.sweeper)
    for task in state.feed.tasks:
        watchdog.watch(task.get_name().removeprefix("menteo-"), task)
    if state.notifier is not None:
        for task in state.notifier.tasks:
            watchdog.watch(task.get_name().removeprefix("menteo-"), task)
    return watchdog


def _failed(state: State, signals: StopSignals, reason: str) -> None:
    """A part every room needs is gone: unready at once, then stop the server; ``serve``
    exits with ``EXIT_FAILED`` so a supervisor starts a fresh process."""
    state.failure = reason
    _stopping(state)
    if state.stop_server is not None:
        log.critical("stopping the server (exit status %d)", EXIT_FAILED)
        state.stop_server()
    elif signals.stop():  # e.g. a ``--workers`` process: uvicorn's parent starts another
        log.critical("stopping the server as for SIGTERM")
    else:
        log.critical("nothing can stop this server: it stays unready (%s)", reason)


def _stopping(state: State) -> None:
    state.shutdown.begin()


class Endpoints:
    """The socket and stream endpoints, routed at once and given their parts when the
    lifespan has opened them: each only what it uses."""

    def __init__(self) -> None:
        self.rooms = RoomSocket()
        self.notes = NotesSocket()
        self.feed = FeedSocket()
        self.stream = FeedStream()
        self.inbox = InboxSocket()

    def open(self, state: State) -> None:
        settings, metrics = state.settings, state.metrics
        slots = state.slots = AddressSlots(settings.max_connections_per_ip, metrics)
        slots.shared = state.shared_slots
        door = Door(state.tokens, settings.allowed_origins, slots, metrics, state.shutdown)
        membership = Membership(state.access.rooms)
        self.rooms.parts = RoomParts(
            door,
            Rules("room", membership),
            settings,
            state.db,
            state.hub,
            state.writer,
            state.presence,
            metrics,
            state.access,
            state.markers,
            state.windows,
            WelcomeReads(state.db, settings.history_limit),
            user_rates=state.user_rates,
        )
        notes_rules = Rules(
            "notes", membership, subprotocols=False, own_subprotocol=SUBPROTOCOL_NOTES
        )
        self.notes.parts = NotesParts(
            door, notes_rules, settings, state.notes, state.writer, metrics, state.access
        )
        self.inbox.parts = InboxParts(
            door, inbox_rules(), settings, state.inbox, metrics, state.access
        )
        feed = FeedParts(door, settings, metrics, state.feed, state.access)
        self.feed.open(feed)
        self.stream.parts = feed


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = state_of(request)
    checks: dict[str, str] = {}
    for name, probe in (("database", state.db.ping), ("broker", state.broker.ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    if state.failure is not None:
        checks["process"] = f"error: {state.failure}"
    ok = all(v == "ok" for v in checks.values()) and not state.shutdown.draining
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )


async def metrics(request: Request) -> Response:
    """Prometheus text: counters of every limit hit, sockets, commits, broker health,
    latency histograms and ``process_*``; under ``--workers`` the totals of all workers."""
    state = state_of(request)
    return Response(state.metrics.render(), headers={"content-type": CONTENT_TYPE})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


class RealtimeApp:
    """The ASGI entry point: WebSocket routes straight to their endpoints, the rest through
    Starlette. Starlette's exception middleware wraps every ``send`` in another coroutine;
    the fan-out calls ``send`` once per socket per event, so the sockets bypass it (their
    endpoints handle their own errors). The routes stay listed in the Starlette app."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        # How the runner stops its server when a part the process needs has died
        # (watchdog.py); without one, the lifespan stops it as SIGTERM would.
        self.stop_server: Callable[[], None] | None = None
        self.sockets = [r for r in app.routes if isinstance(r, WebSocketRoute)]
        # The feed's event stream fans out like a socket: it bypasses the wrappers too.
        self.streams = [
            r for r in app.routes if isinstance(r, Route) and isinstance(r.endpoint, FeedStream)
        ]

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def failure(self) -> str | None:
        """Why the process stopped itself, once it has (the runner's exit status follows)."""
        state = getattr(self.app.state, "menteo", None)
        return state.failure if isinstance(state, State) else None

    @property
    def routes(self) -> list[BaseRoute]:
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("websocket", "http"):
            logs.bind(scope)  # an id on every line logged for this request, once per connection
            refused = nul_refusal(scope) if scope["type"] == "http" else None
            if refused is not None:
                await refused(scope, receive, send)
                return
            for route in self.sockets if scope["type"] == "websocket" else self.streams:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["app"] = self.app
                    started = time.monotonic()
                    try:
                        await route.app(scope, receive, send)
                    finally:
                        logs.ended(scope, started)
                    return
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, extra_routes: Sequence[BaseRoute] = ()) -> RealtimeApp:
    """The application; ``extra_routes`` are served before the web pages (``serve --demo``
    adds its token endpoint there, api/demo.py)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_state(settings) as state:
            state.stop_server = realtime.stop_server
            endpoints.open(state)
            app.state.menteo = state
            yield

    endpoints = Endpoints()
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *rooms_api.routes,
        *chat_api.routes,
        *checklist_api.routes,
        *notes_api.routes,
        *feed_api.routes,
        *client_api.routes,
        *tokens_api.routes,
        *webhooks_api.routes,
        *openapi_api.routes,
        *extra_routes,
        WebSocketRoute("/rooms/{room_id}/ws", endpoints.rooms),
        WebSocketRoute("/rooms/{room_id}/notes", endpoints.notes),
        WebSocketRoute("/feed/ws", endpoints.feed),
        WebSocketRoute("/inbox/ws", endpoints.inbox),
        Route("/feed/stream", endpoints.stream, methods=["GET"]),
    ]
    if SDK.is_dir():
        routes.append(Mount("/sdk", StaticFiles(directory=SDK), name="sdk"))
    if WEB.is_dir():
        routes.append(Mount("/", StaticFiles(directory=WEB, html=True), name="web"))
    # A database that cannot serve a route is 503 ``unavailable`` (the errors that
    # ``persistence.database.unavailable`` names), never a 500.
    handlers = {
        ApiError: api_error,
        SQLAlchemyError: database_unavailable,
        OSError: database_unavailable,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    realtime = RealtimeApp(app)
    return realtime


def app_from_env() -> RealtimeApp:
    """The factory ``serve --workers N`` hands to each worker process."""
    return create_app(Settings.from_env())
