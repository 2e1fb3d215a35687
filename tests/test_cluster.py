"""Two server processes on a real Redis Cluster (3 masters, 3 replicas on loopback ports):
everything works across them over sharded pub/sub, and a master killed with -9 or a slot
moved mid-conversation costs no acked event. The database sweep is off in every test here,
so whatever reaches the other process came through the cluster, or from the database
because the broker resubscribed and resynced."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from menteo_testkit.redis_cluster import LocalCluster, key_slot
from menteo_testkit.waits import wait_until
from realtime.auth import issue_token
from tests.backends import Backend
from tests.ci import skip_or_fail
from tests.client import RoomClient, create_room
from tests.servers import SECRET, ServerProcess, process_env

pytestmark = pytest.mark.slow

BACKEND = issue_token(SECRET, "backend", "Backend", role="service")
SERVICE = {"authorization": "Bearer " + BACKEND}


def token(user: str) -> str:
    return issue_token(SECRET, user, user.title())


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server and redis-cli are needed to start a Redis Cluster")
    nodes = LocalCluster(tmp_path / "cluster")
    await nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


@contextlib.asynccontextmanager
async def servers(
    cluster: LocalCluster, tmp_path: Path, count: int = 2
) -> AsyncIterator[list[ServerProcess]]:
    backend = Backend("sqlite+cluster", f"sqlite+aiosqlite:///{tmp_path / 'db'}", cluster.url)
    env = process_env(
        backend,
        MENTEO_PRESENCE_GRACE="0.5",
        MENTEO_PRESENCE_TTL="3",
        MENTEO_RATE_PER_SECOND="500",
        MENTEO_RATE_BURST="500",
        MENTEO_USER_RATE_PER_SECOND="500",
        MENTEO_USER_RATE_BURST="500",
        MENTEO_FEED_POST_RATE_PER_SECOND="100",
        MENTEO_FEED_POST_BURST="100",
        MENTEO_SWEEP_INTERVAL="3600",  # only the broker, or its resync, delivers
    )
    procs: list[ServerProcess] = []
    try:
        first = ServerProcess(env)
        await first.start()  # creates the schema before the others start
        procs.append(first)
        rest = [ServerProcess(env) for _ in range(count - 1)]
        await asyncio.gather(*(p.start() for p in rest))
        procs.extend(rest)
        yield procs
    finally:
        for proc in procs:
            proc.kill()


async def gauge(server: ServerProcess, name: str) -> int:
    async with httpx.AsyncClient() as http:
        text = (await http.get(server.url + "/metrics")).text
    found = re.search(rf"^{name} (\d+)", text, re.M)
    assert found is not None, name
    return int(found.group(1))


def channel(epoch: str, stream: str) -> str:
    """A stream's sharded channel: its room id (the last part) is the hash tag."""
    head, _, tail = stream.rpartition(":")
    return f"menteo:{epoch}:s:{head + ':' if head else ''}{{{tail}}}"


class Talker:
    """A room client whose one reader keeps every ack, every chat message in order, and who
    is online (the welcome's list, then joins, leaves and syncs)."""

    def __init__(self, client: RoomClient) -> None:
        self.client = client
        self.acked: dict[str, int] = {}
        self.seen: list[tuple[int, str]] = []
        self.online = {p["user_id"] for p in client.welcome["presence"]}
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, server: ServerProcess, room: str, user: str) -> Talker:
        return cls(await RoomClient.connect(server.ws, room, token(user)))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):  # closed at the test's end
            while True:
                self._take(await self.client.recv(timeout=120))

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "ack":
            self.acked[frame["id"]] = frame["seq"]
        elif kind == "error":
            raise AssertionError(f"refused: {frame}")
        elif kind == "chat.message":
            self.seen.append((frame["seq"], frame["id"]))
        elif kind == "presence.join":
            self.online.add(frame["user_id"])
        elif kind == "presence.leave":
            self.online.discard(frame["user_id"])
        elif kind == "presence.sync":
            self.online = {p["user_id"] for p in frame["presence"]}
        self.changed.set()

    async def wait(self, condition: Any, what: str, timeout: float = 20) -> None:
        def held() -> bool:
            if self.reader.done():
                self.reader.result()  # its failure, at the test
            return bool(condition())

        await wait_until(held, what, timeout, wake=self.changed)

    async def say(self, cid: str) -> int:
        await self.client.send({"type": "chat.send", "id": cid, "body": cid})
        await self.wait(lambda: cid in self.acked, f"the ack of {cid}")
        return self.acked[cid]


async def talk(talkers: list[Talker], phase: str, each: int) -> list[int]:
    """Every talker sends ``each`` messages at once with the others; their acked seqs."""

    async def one(i: int, talker: Talker) -> list[int]:
        return [await talker.say(f"{phase}-{i}-{n}") for n in range(each)]

    sent = await asyncio.gather(*(one(i, talker) for i, talker in enumerate(talkers)))
    return [seq for seqs in sent for seq in seqs]


async def all_seen(talkers: list[Talker], acked: list[int]) -> None:
    """Every talker ends with the same gap-free sequence, holding every acked seq."""
    total = max(acked)
    for talker in talkers:
        await talker.wait(lambda t=talker: len(t.seen) >= total, f"{total} messages at a talker")
    assert sorted(acked) == list(range(1, total + 1))
    for talker in talkers:
        assert [seq for seq, _ in talker.seen] == list(range(1, total + 1))
        assert talker.seen == talkers[0].seen


async def test_chat_checklist_notes_feed_and_presence_across_two_processes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from tests.feed_client import FeedApi, WSFollower, close_all, feed_query
    from tests.notes_client import NotesClient, converged

    async with servers(cluster, tmp_path) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        rid = room["id"]
        ana = await RoomClient.connect(a.ws, rid, token("ana"))
        ben = await RoomClient.connect(b.ws, rid, token("ben"))
        epoch = ana.welcome["epoch"]
        assert [p["user_id"] for p in ben.welcome["presence"]] == ["ana", "ben"]
        joined = await ana.recv_until(lambda f: f["type"] == "presence.join")
        assert joined == {"type": "presence.join", "user_id": "ben", "name": "Ben"}

        assert await ana.chat("a1", "hello from A") == 1
        assert (await ben.recv_until(lambda f: f["type"] == "chat.message"))["seq"] == 1
        await ben.send({"type": "checklist.add", "id": "c1", "item_id": "sql", "title": "SQL"})
        added = await ana.recv_until(lambda f: f["type"] == "checklist.add")
        assert added["item"]["id"] == "sql" and added["seq"] == 2
        await ben.send({"type": "typing", "active": True})
        typing = await ana.recv_until(lambda f: f["type"] == "presence.typing")
        assert typing == {"type": "presence.typing", "user_id": "ben", "active": True}

        # The room's channel is sharded, on the master that holds its presence keys, with
        # one subscriber connection per process there; no classic channel anywhere.
        home = await cluster.master_of(f"{{{rid}}}")
        assert key_slot(channel(epoch, rid)) == key_slot(f"menteo:ph:{{{rid}}}")
        shard_channels = (await cluster.cli(home, "pubsub", "shardchannels")).split()
        assert channel(epoch, rid) in shard_channels
        assert await cluster.cli(home, "exists", f"menteo:ph:{{{rid}}}") == "1\n"
        clients = await cluster.cli(home, "client", "list")
        assert len(re.findall(r" ssub=[1-9]", clients)) == 2, clients
        for node in cluster.alive():
            assert (await cluster.cli(node, "pubsub", "channels")).strip() == ""

        notes_a = await NotesClient.connect(a.ws, rid, token("ana"))
        notes_b = await NotesClient.connect(b.ws, rid, token("ben"))
        try:
            await notes_a.wait_synced()
            await notes_b.wait_synced()
            notes_a.text.insert(0, "from A. ")
            notes_b.text.insert(0, "from B. ")
            text = await converged([notes_a, notes_b], timeout=20)
            assert sorted(text.split(". ")) == sorted(["from A", "from B", ""])
            assert (
                channel(epoch, f"notes:{rid}")
                in (await cluster.cli(home, "pubsub", "shardchannels")).split()
            )
        finally:
            await notes_a.close()
            await notes_b.close()

        try:
            community = await FeedApi(a.url, BACKEND).community()
            follower = await WSFollower.connect(b.ws, feed_query(token("cy"), community))
            poster = FeedApi(a.url, token("ana"))
            post = await poster.post(await poster.thread(community), "on the cluster")
            await follower.events_until(
                lambda f: f["type"] == "feed.post" and f["post_id"] == post["id"]
            )
        finally:
            await close_all()

        await ben.close()  # a clean close leaves at once
        left = await ana.recv_until(lambda f: f["type"] == "presence.leave")
        assert left == {"type": "presence.leave", "user_id": "ben"}


async def test_a_master_killed_mid_conversation_loses_no_acked_event(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The room's master dies with -9 while four members on two processes talk; its replica
    takes over; every process resubscribes there and resyncs from the database, so every
    member ends with the same gap-free sequence. Presence works on the new master."""
    async with servers(cluster, tmp_path) as procs:
        users = [f"u{i}" for i in range(4)]
        room = await create_room(
            procs[0].url, SERVICE, [(u, u, "mentee") for u in [*users, "late"]]
        )
        rid = room["id"]
        talkers = [await Talker.join(procs[i % 2], rid, u) for i, u in enumerate(users)]
        acked = await talk(talkers, "before", 5)
        reconnects = [await gauge(p, "menteo_broker_reconnects_total") for p in procs]

        killed = await cluster.master_of(f"{{{rid}}}")
        cluster.kill(killed)
        # Only the members on A talk now (acked: the database is the truth). Nothing of B's
        # follows to show B a hole, and the sweep is off: B gets them from its resync alone.
        acked += await talk(talkers[0::2], "during", 5)
        await cluster.wait_failover(killed)
        await all_seen(talkers, acked)
        acked += await talk(talkers, "after", 5)  # live again, on the new master
        await all_seen(talkers, acked)
        assert (await cluster.master_of(f"{{{rid}}}")).port != killed.port
        for proc, before in zip(procs, reconnects, strict=True):

            async def resubscribed(proc: ServerProcess = proc, before: int = before) -> bool:
                return await gauge(proc, "menteo_broker_reconnects_total") > before

            await wait_until(resubscribed, f"{proc.url} to count its resubscription")

        late = await Talker.join(procs[1], rid, "late")
        for talker in [*talkers, late]:
            await talker.wait(
                lambda t=talker: t.online == {*users, "late"}, "everyone online, after the failover"
            )


async def test_a_slot_moved_to_another_master_is_followed(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """The room's slot moves to another master mid-conversation (its keys with it): the old
    master unsubscribes both processes, which subscribe on the new one and resync. After the
    move only Ana (on A) talks: Ben's process publishes nothing that could fail and tell it,
    so only the shard's SUNSUBSCRIBE can."""
    async with servers(cluster, tmp_path) as (a, b):
        room = await create_room(
            a.url, SERVICE, [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        )
        rid = room["id"]
        talkers = [await Talker.join(a, rid, "ana"), await Talker.join(b, rid, "ben")]
        epoch = talkers[0].client.welcome["epoch"]
        acked = await talk(talkers, "before", 5)
        home = await cluster.master_of(f"{{{rid}}}")
        target = next(m for m in await cluster.masters() if m.port != home.port)
        await cluster.move_slot(key_slot(rid), target)
        acked += await talk(talkers[:1], "after", 5)
        await all_seen(talkers, acked)

        async def subscribed_on_target() -> bool:
            return (
                channel(epoch, rid)
                in (await cluster.cli(target, "pubsub", "shardchannels")).split()
            )

        await wait_until(subscribed_on_target, "the room's channel subscribed on its new master")
        assert await cluster.cli(target, "exists", f"menteo:ph:{{{rid}}}") == "1\n"


async def test_check_reports_the_cluster_and_a_master_down(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from tests.test_check import check, cli, sqlite_env

    env = sqlite_env(tmp_path, MENTEO_REDIS_URL=cluster.url)
    assert (await cli("migrate", env=env, cwd=tmp_path))[0] == 0
    code, lines = await check(env, tmp_path)
    assert code == 0, lines
    assert lines["redis"].startswith(f"ok    redis: {cluster.url} reachable (Redis ")
    assert lines["redis"].endswith(", cluster of 3 masters)")

    killed = (await cluster.masters())[0]
    cluster.kill(killed)
    code, lines = await check(env, tmp_path)
    assert code == 1 and lines["redis"].startswith("FAIL  redis: cannot connect"), lines
    await cluster.wait_failover(killed)
    code, lines = await check(env, tmp_path)
    assert code == 0, lines


async def test_a_shard_lost_for_good_leaves_the_other_shards_serving(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """A master and its replica both die: rooms on the other shards keep their chat live
    across processes and their presence written and swept, though A serves a room of the
    lost shard too (subscribed first, so swept first)."""
    async with servers(cluster, tmp_path) as (a, b):
        members = [("ana", "Ana", "mentor"), ("ben", "Ben", "mentee")]
        lost = await create_room(a.url, SERVICE, members)
        lost_home = await cluster.master_of(f"{{{lost['id']}}}")
        while True:  # a room whose slot another master serves
            kept = await create_room(a.url, SERVICE, members)
            if (await cluster.master_of(f"{{{kept['id']}}}")).port != lost_home.port:
                break
        await Talker.join(a, lost["id"], "ana")
        ana = await Talker.join(a, kept["id"], "ana")
        ben = await Talker.join(b, kept["id"], "ben")
        await ana.wait(lambda: ana.online == {"ana", "ben"}, "Ben online at Ana")

        for node in await cluster.shard_of(lost_home):
            cluster.kill(node)
        acked = await talk([ana, ben], "after", 3)
        await all_seen([ana, ben], acked)
        ben.client.ws.transport.abort()  # a drop: only the sweep says Ben left, after grace
        await ana.wait(lambda: ana.online == {"ana"}, "Ben's leave, swept on A")
        # The first leave on that master since the kill: its script was new there, and went
        # to that master alone (not loaded on every master, which fails while one is away).
        assert not [line for line in b.output if "presence leave failed" in line], b.output
