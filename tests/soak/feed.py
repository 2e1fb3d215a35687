"""The community feed under soak: writers over REST, followers over WebSocket and SSE.

- A few mentees own a growth thread each and post in it; a share of users comment on
  recent posts and toggle reactions. Every write is retried until it gets an answer, posts
  and comments with the same ``Idempotency-Key`` (a retry after a lost answer must create
  nothing new), reactions with the same idempotent ``PUT``/``DELETE``.
- Followers keep the community's feed live, half on ``/feed/ws`` and half on
  ``/feed/stream`` (Server-Sent Events, resuming with ``Last-Event-ID`` as a browser's
  EventSource does). Each checks that seqs follow one another and keeps its whole view.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections import Counter
from typing import Any

import httpx
import orjson
import websockets
from infra import Server
from sim import CONNECT_TIMEOUT, Sim, backoff, canonical, reconnecting
from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

KINDS = ("like", "celebrate", "insightful", "support")


class FeedWorld:
    """What feed writers share: the community, the posts acked so far, the counters."""

    def __init__(self, sim: Sim, community: str) -> None:
        self.sim = sim
        self.community = community
        self.posts: list[str] = []  # acked post ids, oldest first
        self.writes: Counter[str] = Counter()  # kind -> acked writes
        self.retries: Counter[str] = Counter()  # reason -> retried requests
        self.refused: Counter[str] = Counter()  # "kind status" -> answers that are refusals
        # (author, Idempotency-Key) -> (kind, id returned, cursor returned)
        self.acked: dict[tuple[str, str], tuple[str, str, int]] = {}
        self.reactions: dict[tuple[str, str, str], bool] = {}  # (post, user, kind) -> on
        self.followers: list[FeedFollower] = []
        self.writers: list[FeedWriter] = []
        self.http: dict[str, httpx.AsyncClient] = {}

    def client(self, server: Server) -> httpx.AsyncClient:
        if server.name not in self.http:
            self.http[server.name] = httpx.AsyncClient(
                base_url=server.url,
                timeout=httpx.Timeout(15.0),
                # No cap: each event stream holds a connection for minutes, and a capped pool
                # would starve the writers (a client per stream costs an SSL context each).
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            )
        return self.http[server.name]

    async def close(self) -> None:
        for http in self.http.values():
            await http.aclose()


class FeedWriter:
    """A user who posts in their own thread (if they have one), comments and reacts."""

    def __init__(
        self, world: FeedWorld, user_id: str, token: str, thread: str | None, interval: float
    ) -> None:
        self.world = world
        self.user_id = user_id
        self.headers = {"authorization": "Bearer " + token}
        self.thread = thread
        self.interval = interval
        self.rng = random.Random(f"{world.sim.rng.random()}")
        self.n = 0
        self.task: asyncio.Task[None] | None = None

    async def run(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)  # writers arrive spread out, as in life
        sim = self.world.sim
        for _ in range(sim.max_edits):  # bounded in count, and in time by the load
            await sim.pause(self.rng.expovariate(1 / self.interval))
            if not sim.loading:
                return
            self.n += 1
            if self.thread is not None:
                await self._post()
            elif self.world.posts and self.rng.random() < 0.3:
                await self._comment()
            elif self.world.posts:
                await self._react()

    async def _post(self) -> None:
        key = f"{self.user_id}.p{self.n}"
        body = {"body": f"post {self.n} by {self.user_id}"}
        resp = await self._request("POST", f"/api/threads/{self.thread}/posts", body, key)
        if resp is not None and resp.status_code in (200, 201):
            post = resp.json()
            self._acked("post", key, post["id"], post["cursor"])
            if post["id"] not in self.world.posts:
                self.world.posts.append(post["id"])

    async def _comment(self) -> None:
        post_id = self.rng.choice(self.world.posts[-50:])
        key = f"{self.user_id}.c{self.n}"
        body = {"body": f"comment {self.n} by {self.user_id}"}
        resp = await self._request("POST", f"/api/posts/{post_id}/comments", body, key)
        if resp is not None and resp.status_code in (200, 201):
            comment = resp.json()
            self._acked("comment", key, comment["id"], comment["cursor"])

    async def _react(self) -> None:
        post_id = self.rng.choice(self.world.posts[-50:])
        kind = self.rng.choice(KINDS)
        on = not self.world.reactions.get((post_id, self.user_id, kind), False)
        resp = await self._request(
            "PUT" if on else "DELETE", f"/api/posts/{post_id}/reactions/{kind}", None, None
        )
        if resp is not None and resp.status_code == 200:
            self.world.reactions[(post_id, self.user_id, kind)] = on
            self.world.writes["reaction"] += 1

    def _acked(self, kind: str, key: str, obj_id: str, cursor: int) -> None:
        before = self.world.acked.get((self.user_id, key))
        if before is not None and before[1:] != (obj_id, cursor):
            self.world.sim.stats.violation(
                f"feed {kind} {self.user_id}/{key} answered {before[1:]} then {obj_id, cursor}"
            )
        self.world.acked[(self.user_id, key)] = (kind, obj_id, cursor)
        self.world.writes[kind] += 1

    async def _request(
        self, method: str, path: str, body: Any, key: str | None
    ) -> httpx.Response | None:
        """Until an answer that is not a transient failure (or 60 s): a lost connection,
        5xx and 429 are retried, on whichever server the balancer picks."""
        headers = dict(self.headers)
        if key is not None:
            headers["idempotency-key"] = key
        sim = self.world.sim
        deadline = time.monotonic() + 60
        attempt = 0
        while time.monotonic() < deadline:
            server = sim.pick_server()
            try:
                resp = await self.world.client(server).request(
                    method, path, json=body, headers=headers
                )
            except httpx.HTTPError as exc:
                self.world.retries[type(exc).__name__] += 1
                resp = None
            finally:
                sim.release(server)
            if resp is not None and resp.status_code < 500 and resp.status_code != 429:
                if resp.status_code >= 400:
                    self.world.refused[f"{method} {resp.status_code}"] += 1
                    sim.stats.violation(f"feed {method} {path}: {resp.status_code} {resp.text}")
                return resp
            if resp is not None:
                self.world.retries[str(resp.status_code)] += 1
                wait = float(resp.headers.get("retry-after", "0") or 0)
                await asyncio.sleep(max(wait, backoff(attempt, self.rng)))  # Retry-After
            else:
                await asyncio.sleep(backoff(attempt, self.rng))  # a client's retry backoff
            attempt += 1
        sim.stats.violation(f"feed {method} {path}: no answer in 60 s")
        return None


class FeedFollower:
    """Follows the community over the WebSocket or the event stream, resuming after drops."""

    def __init__(self, world: FeedWorld, user_id: str, token: str, sse: bool) -> None:
        self.world = world
        self.sim = world.sim
        self.user_id = user_id
        self.token = token
        self.sse = sse
        self.rng = random.Random(f"{world.sim.rng.random()}")
        self.last_seq = 0
        self.epoch: str | None = None
        self.view: list[tuple[int, str, str | None, str, str, str]] = []
        self.counts: dict[str, dict[str, int]] = {}  # post -> last counts seen
        self.server: Server | None = None
        self.ws: ClientConnection | None = None
        self.stream: httpx.Response | None = None
        self.task: asyncio.Task[None] | None = None

    # What the chaos loop and the balancer need of every connection holder.
    def is_open(self) -> bool:
        if self.sse:
            return self.stream is not None and not self.stream.is_closed
        return self.ws is not None and self.ws.state is State.OPEN

    def abort(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()
        elif self.stream is not None:
            # An abortive close: SO_LINGER 0 makes the close send RST instead of FIN. Through
            # the connection's transport (uvloop's or asyncio's): its socket is a stand-in
            # (uvloop's PseudoSocket, asyncio's TransportSocket), never a socket.socket, and
            # a check for one had made every event-stream drop a no-op.
            network = self.stream.extensions["network_stream"]
            transport = getattr(getattr(network, "_stream", None), "_transport", None)
            if transport is not None:
                with contextlib.suppress(OSError, AttributeError):
                    linger = struct.pack("ii", 1, 0)
                    transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, linger
                    )
                transport.abort()

    async def run(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)  # followers arrive spread out, as in life
        await reconnecting(self.sim, self.rng, self._sse if self.sse else self._ws)

    async def _ws(self, server: Server) -> bool:
        url = (
            f"{server.ws}/feed/ws?token={self.token}&community={self.world.community}"
            f"&since={self.last_seq}" + (f"&epoch={self.epoch}" if self.epoch else "")
        )
        try:
            ws = await websockets.connect(
                url, compression=None, open_timeout=CONNECT_TIMEOUT, max_queue=None
            )
            welcome = orjson.loads(await asyncio.wait_for(ws.recv(), CONNECT_TIMEOUT))
        except Exception as exc:
            self.sim.stats.connect_failures[f"feed ws: {type(exc).__name__}"] += 1
            return False
        self.ws, self.server = ws, server
        self.sim.stats.connects["feed ws"] += 1
        self._welcome(welcome)
        churn = self.sim.churn_later(ws.close, self.is_open)
        try:
            async for data in ws:
                self._frame(orjson.loads(data))
        except websockets.ConnectionClosed:
            pass
        finally:
            if churn is not None:
                churn.cancel()
            rcvd = ws.protocol.close_rcvd
            label = "no close frame" if rcvd is None else f"{rcvd.code} {rcvd.reason}".strip()
            self.sim.stats.closes[f"feed ws {label}"] += 1
            self.ws = self.server = None
        return True

    async def _sse(self, server: Server) -> bool:
        http = self.world.client(server)
        headers = {"authorization": "Bearer " + self.token, "accept": "text/event-stream"}
        query = f"community={self.world.community}"
        if self.last_seq:  # what EventSource sends: the last id, EPOCH:SEQ
            headers["last-event-id"] = f"{self.epoch}:{self.last_seq}"
        else:
            query += "&since=0"
        opened = False
        try:
            async with http.stream(
                "GET",
                f"/feed/stream?{query}",
                headers=headers,
                timeout=httpx.Timeout(CONNECT_TIMEOUT, read=60),
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    self.sim.stats.connect_failures[f"feed sse: HTTP {resp.status_code}"] += 1
                    return False
                opened = True
                self.stream, self.server = resp, server
                self.sim.stats.connects["feed sse"] += 1
                churn = self.sim.churn_later(resp.aclose, self.is_open)
                try:
                    await self._read_sse(resp)
                    self.sim.stats.closes["feed sse ended by the server"] += 1
                finally:
                    if churn is not None:
                        churn.cancel()
        except Exception as exc:  # a dropped or closed stream ends in many ways
            if not opened:
                self.sim.stats.connect_failures[f"feed sse: {type(exc).__name__}"] += 1
                return False
            self.sim.stats.closes[f"feed sse {type(exc).__name__}"] += 1
        finally:
            self.stream = self.server = None
        return True

    async def _read_sse(self, resp: httpx.Response) -> None:
        event_id: str | None = None
        event, data = "message", []
        async for line in resp.aiter_lines():
            if line == "":
                if data:
                    frame = orjson.loads("\n".join(data))
                    if event != frame.get("type"):
                        self.sim.stats.violation(f"{self.user_id} sse: event {event} != {frame}")
                    if (
                        "seq" in frame
                        and event_id != f"{self.epoch or frame.get('epoch')}:{frame['seq']}"
                    ):
                        self.sim.stats.violation(f"{self.user_id} sse: id {event_id} != seq")
                    if frame.get("type") == "welcome":
                        self._welcome(frame)
                    else:
                        self._frame(frame)
                event_id, event, data = None, "message", []
            elif line.startswith(":"):
                continue  # heartbeat
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "event":
                    event = value
                elif name == "data":
                    data.append(value)

    def _welcome(self, welcome: dict[str, Any]) -> None:
        stats = self.sim.stats
        if welcome.get("type") != "welcome":
            stats.violation(f"{self.user_id} feed: first frame is {welcome.get('type')}")
            return
        if self.epoch is not None and welcome["epoch"] != self.epoch:
            stats.violation(f"{self.user_id} feed: epoch changed")
        self.epoch = welcome["epoch"]
        if not welcome["recovered"]:
            stats.violation(
                f"{self.user_id} feed: since={self.last_seq} not recovered "
                f"(cursor {welcome.get('cursor')})"
            )

    def _frame(self, frame: dict[str, Any]) -> None:
        kind = str(frame.get("type", ""))
        if not kind.startswith("feed.") or "seq" not in frame:
            return
        seq = frame["seq"]
        if seq <= self.last_seq:
            self.sim.stats.violation(f"{self.user_id} feed: seq {seq} again (at {self.last_seq})")
            return
        if seq != self.last_seq + 1:
            self.sim.stats.violation(f"{self.user_id} feed: gap {self.last_seq} -> {seq}")
        self.last_seq = seq
        data = {k: v for k, v in frame.items() if k not in ("type", "seq", "id", "author", "ts")}
        self.view.append(
            (seq, kind, frame.get("id"), frame["author"]["user_id"], canonical(data), frame["ts"])
        )
        if kind == "feed.post":
            self.counts[frame["post_id"]] = dict(frame["post"]["reactions"])
        elif kind == "feed.reaction":
            self.counts[frame["post_id"]] = dict(frame["counts"])


async def setup_feed(
    sim: Sim,
    server: Server,
    service: dict[str, str],
    tokens: dict[str, str],
    posters: list[str],
    writers: list[str],
    followers: list[str],
    interval: float,
) -> FeedWorld | None:
    """Create the community and the posters' threads; None if this server has no feed."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        resp = await http.post("/api/communities", json={"name": "Soak community"}, headers=service)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        world = FeedWorld(sim, resp.json()["id"])
        threads: dict[str, str] = {}
        for user in posters:
            r = await http.post(
                "/api/threads",
                json={"title": f"{user}'s journey", "community_id": world.community},
                headers={"authorization": "Bearer " + tokens[user]},
            )
            r.raise_for_status()
            threads[user] = r.json()["id"]
    for user in writers:
        world.writers.append(FeedWriter(world, user, tokens[user], threads.get(user), interval))
    for n, user in enumerate(followers):
        world.followers.append(FeedFollower(world, user, tokens[user], sse=n % 2 == 1))
    return world
