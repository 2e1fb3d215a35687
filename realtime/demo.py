"""``menteo-realtime serve --demo``: a server seeded with a small community, and links to it.

Once the server listens, the demo plays the platform's backend and its two members over the
real REST API and room socket: a community; a mentor (Ana) and a mentee (Ben) in a room with
a roadmap checklist, a few chat messages, and a first step Ben ticked and Ana verified; Ben's
growth thread with posts, that step shared as a milestone, a comment and reactions. Then it
prints a link to each member's room view and to the community feed. Everything is looked up
before it is made, or sent with a client id or ``Idempotency-Key``, so a second run on the
same database reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import uvicorn
from websockets.exceptions import WebSocketException

from .api import demo as demo_api
from .auth import issue_token
from .config import Settings
from .watchdog import EXIT_FAILED

if TYPE_CHECKING:
    from .app import RealtimeApp

log = logging.getLogger("menteo.demo")

COMMUNITY = "Learning in public"
ROOM_TITLE = "Demo: Ana mentors Ben"
ROADMAP_TITLE = "Into data engineering: the first three months"
ROADMAP_STEPS = [
    {"title": "Set up Python, Git and an editor"},
    {"title": "SQL: joins, aggregates, window functions"},
    {"title": "Build a small ETL pipeline", "description": "CSV in, Parquet out, tested"},
    {"title": "Ship a portfolio project"},
]
THREAD_TITLE = "From support desk to data engineering"
BEN_POSTS = [
    "Day 1: I am switching careers from IT support to data engineering. Ana is my mentor. "
    "Posting here to keep myself honest.",
    "Week 2: finally get window functions. ROW_NUMBER() over a partition was the click.",
    "Week 3: my first pipeline runs end to end: CSV in, Parquet out, with tests. Slow, but "
    "it is mine.",
]
ANA_COMMENT = "Great progress, Ben. Next: make it idempotent, so a rerun never doubles a row."
MILESTONE = "My dev setup is done, and Ana checked it."
CHAT = [
    ("ana", "Welcome, Ben! Start with the first step of the roadmap; tick it when it is done."),
    ("ben", "Done: Python, Git and VS Code are set up. Could you verify it?"),
    ("ana", "Verified. Share it in your growth thread if you like!"),
]

NOTES = """Session 1 (agenda)
- Ben's background: five years of IT support, a little Python
- Goal: a junior data engineering role within a year
- This month: SQL every day, one small pipeline
Next session: review the pipeline's tests together
"""
NOTES_TEXT = "notes"  # the Y.Text the web client edits and GET …/notes reads

MENTOR = ("ana", "Ana", "mentor")
MENTEE = ("ben", "Ben", "mentee")


@dataclass(frozen=True, slots=True)
class Demo:
    """What the demo seeded: enough to print the links."""

    room_id: str
    community_id: str


class DemoError(Exception):
    """A REST call of the seeding was refused."""


class _Api:
    """Blocking JSON calls as one user; run in a thread while the server serves them."""

    # No proxy from the environment: the server is ours, on this machine.
    _opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with self._opener.open(request, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise DemoError(f"{method} {path}: {exc.code} {detail}") from None


def seed(base_url: str, secret: str) -> Demo:
    """Make (or find) the demo's community and room with its checklist, then its activity."""

    def as_user(user_id: str, name: str, role: str | None = None) -> _Api:
        return _Api(base_url, issue_token(secret, user_id, name, role=role, ttl=600))

    backend = as_user("menteo-demo", "Menteo demo", "service")
    ana = as_user(MENTOR[0], MENTOR[1])
    ben = as_user(MENTEE[0], MENTEE[1])

    community = _find(backend.call("GET", "/api/communities")["communities"], "name", COMMUNITY)
    if community is None:
        community = backend.call("POST", "/api/communities", {"name": COMMUNITY})
    roadmap = _find(backend.call("GET", "/api/roadmaps")["roadmaps"], "title", ROADMAP_TITLE)
    if roadmap is None:
        roadmap = backend.call(
            "POST", "/api/roadmaps", {"title": ROADMAP_TITLE, "steps": ROADMAP_STEPS}
        )
    room = _find(backend.call("GET", "/api/rooms")["rooms"], "title", ROOM_TITLE)
    if room is None:
        members = [{"user_id": u, "name": n, "role": r} for u, n, r in (MENTOR, MENTEE)]
        room = backend.call("POST", "/api/rooms", {"title": ROOM_TITLE, "members": members})
    # Copying the same roadmap into the room again adds nothing.
    backend.call("POST", f"/api/rooms/{room['id']}/checklist", {"roadmap_id": roadmap["id"]})

    demo = Demo(room_id=room["id"], community_id=community["id"])
    try:
        _activity(demo, backend, ana, ben, base_url)
    except (DemoError, OSError, WebSocketException) as exc:
        # Someone played with an earlier demo (unticked the step, deleted a post): the
        # room and the feed still open, with what is there.
        log.warning("part of the demo's activity could not be made: %s", exc)
    return demo


def _activity(demo: Demo, backend: _Api, ana: _Api, ben: _Api, base_url: str) -> None:
    """Chat, a verified step, Ben's growth thread with a milestone, a comment, reactions."""
    room_id, community_id = demo.room_id, demo.community_id
    checklist = backend.call("GET", f"/api/rooms/{room_id}/checklist")
    first_step = _find(checklist["items"], "title", ROADMAP_STEPS[0]["title"])
    if first_step is None:
        raise DemoError("the roadmap's first step is missing from the room")

    page = ben.call("GET", "/api/feed?" + urlencode({"community": community_id, "limit": 100}))
    thread_id = next(
        (
            p["thread_id"]
            for p in page["posts"]
            if p["author"]["user_id"] == MENTEE[0] and p["thread_title"] == THREAD_TITLE
        ),
        None,
    )
    if thread_id is None:
        body = {"title": THREAD_TITLE, "community_id": community_id}
        thread_id = ben.call("POST", "/api/threads", body)["id"]

    def post(n: int) -> dict[str, Any]:
        body = {"body": BEN_POSTS[n]}
        result: dict[str, Any] = ben.call(
            "POST", f"/api/threads/{thread_id}/posts", body, key=f"demo-post-{n + 1}"
        )
        return result

    posts = [post(0)]
    # In the room: a few words, Ben ticks the first step, Ana verifies it (client ids make
    # every frame count once however often the demo runs).
    step = first_step["id"]
    tick = {"type": "checklist.toggle", "id": "demo-tick-1", "item_id": step, "done": True}
    verify = {"type": "checklist.verify", "id": "demo-verify-1", "item_id": step}
    chat = [
        {"type": "chat.send", "id": f"demo-chat-{n}", "body": body}
        for n, (_, body) in enumerate(CHAT, start=1)
    ]
    _in_room(base_url, ana.token, room_id, [chat[0]])
    _in_room(base_url, ben.token, room_id, [tick, chat[1]])
    _in_room(base_url, ana.token, room_id, [verify, chat[2]])
    if not ana.call("GET", f"/api/rooms/{room_id}/notes")["text"].strip():
        _write_notes(base_url, ana.token, room_id, NOTES)
    # Ben shares the verified step in his thread: a milestone post.
    share = {"thread_id": thread_id, "body": MILESTONE}
    path = f"/api/rooms/{room_id}/checklist/{step}/share"
    posts.append(ben.call("POST", path, share, key="demo-milestone"))
    posts += [post(n) for n in range(1, len(BEN_POSTS))]
    latest = posts[-1]["id"]
    ana.call("POST", f"/api/posts/{latest}/comments", {"body": ANA_COMMENT}, key="demo-comment")
    for made in posts[1:]:
        ana.call("PUT", f"/api/posts/{made['id']}/reactions/celebrate")
    ana.call("PUT", f"/api/posts/{posts[0]['id']}/reactions/support")


def _in_room(base_url: str, token: str, room_id: str, frames: list[dict[str, Any]]) -> None:
    """Send frames on the room socket as one member, each after the last one's ack."""
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    query = urlencode({"token": token})
    url = f"ws{base_url.removeprefix('http')}/rooms/{quote(room_id)}/ws?{query}"
    with connect(
        url, subprotocols=[Subprotocol("menteo.v1.json")], open_timeout=10, proxy=None
    ) as ws:
        welcome = json.loads(ws.recv(timeout=10))
        if welcome.get("type") != "welcome":
            raise DemoError(f"the room socket said {welcome!r}")
        for frame in frames:
            ws.send(json.dumps(frame))
            while True:
                reply = json.loads(ws.recv(timeout=10))
                if reply.get("id") == frame["id"] and reply.get("type") in ("ack", "error"):
                    break
            if reply["type"] == "error":
                raise DemoError(f"{frame['type']}: {reply.get('message')}")


def _write_notes(base_url: str, token: str, room_id: str, text: str) -> None:
    """Type ``text`` into the room's shared notes as one Yjs update on the notes socket, and
    wait until the server's document holds it (its answer to a sync step 1)."""
    from pycrdt import Doc, Text, create_sync_message, create_update_message, handle_sync_message
    from websockets.sync.client import connect

    ours: Doc[Any] = Doc()
    ours.get(NOTES_TEXT, type=Text).insert(0, text)
    query = urlencode({"token": token})
    url = f"ws{base_url.removeprefix('http')}/rooms/{quote(room_id)}/notes?{query}"
    with connect(url, open_timeout=10, proxy=None) as ws:
        ws.send(create_update_message(ours.get_update()))
        for _ in range(20):  # each round trip waits for an answer; the write lands in a few
            probe: Doc[Any] = Doc()
            ws.send(create_sync_message(probe))
            while True:
                message = ws.recv(timeout=10)
                if isinstance(message, bytes) and message[:2] == b"\x00\x01":  # step 2
                    handle_sync_message(message[1:], probe)
                    break
            if text in str(probe.get(NOTES_TEXT, type=Text)):
                return
    raise DemoError("the shared notes did not take the demo's text")


def _find(items: list[dict[str, Any]], field: str, value: str) -> dict[str, Any] | None:
    return next((item for item in items if item.get(field) == value), None)


def links(base_url: str, secret: str) -> list[tuple[str, str]]:
    """(label, URL) for each member's room view and the community feed: each opens the page
    through the demo's token endpoint (api/demo.py), which renews that member's token."""
    rooms = [(f"{name} ({role}), room", uid, "room") for uid, name, role in (MENTOR, MENTEE)]
    feeds = [(f"{name}, community feed", uid, "feed") for uid, name, _ in (MENTEE, MENTOR)]
    return [(label, demo_api.link(base_url, secret, uid, to)) for label, uid, to in rooms + feeds]


def site() -> demo_api.DemoSite:
    """What the demo's token endpoint may sign in: the demo's two members, nobody else."""
    return demo_api.DemoSite(users={MENTOR[0]: MENTOR[1], MENTEE[0]: MENTEE[1]})


def _base_url(address: Any) -> str:
    """http://host:port for a listening socket's address (a wildcard becomes loopback)."""
    host, port = str(address[0]), int(address[1])
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class DemoServer(uvicorn.Server):
    """Uvicorn's server, which seeds the demo and prints its links once it listens."""

    def __init__(self, config: uvicorn.Config, app: RealtimeApp, site: demo_api.DemoSite) -> None:
        super().__init__(config)
        self.app = app
        self.site = site
        self.demo: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit and self.servers:
            self.demo = asyncio.create_task(self._announce(), name="menteo-demo")

    async def _announce(self) -> None:
        listening = self.servers[0].sockets[0].getsockname()
        base_url = _base_url(listening)
        # The secret the server runs with: on SQLite without MENTEO_SECRET, the one kept in
        # the database (app.kept_secret), which the settings read at start do not hold.
        secret = self.app.state.menteo.settings.secret
        try:
            demo = await asyncio.to_thread(seed, base_url, secret)
        except (DemoError, OSError, WebSocketException) as exc:
            log.error("the demo could not be seeded: %s", exc)
            return
        self.site.room_id, self.site.community_id = demo.room_id, demo.community_id
        hours = demo_api.LINK_TTL // 3600
        lines = [
            f"\nMenteo demo ready at {base_url}. Open each link in its own window (each "
            f"signs this browser in as that member for {hours} hours; the page renews its "
            f"token at {demo_api.PATH}token, which only `serve --demo` serves):"
        ]
        lines += [f"  {label}: {url}" for label, url in links(base_url, secret)]
        print("\n".join(lines) + "\n", flush=True)


def serve_demo(
    settings: Settings, host: str, port: int, log_level: str, options: dict[str, Any]
) -> int:
    """Run one server process with the demo (``serve --demo``); the exit status."""
    from .app import create_app

    demo_site = site()
    app = create_app(settings, extra_routes=demo_api.routes(demo_site))
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **options)
    server = DemoServer(config, app, demo_site)
    app.stop_server = lambda: setattr(server, "should_exit", True)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if app.failure is not None:
        return EXIT_FAILED
    if not server.started:
        print("the server did not start", file=sys.stderr)
        return 3
    return 0
