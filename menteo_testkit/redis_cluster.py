"""A private Redis Cluster on loopback: 3 masters and 3 replicas, each ``redis-server
--cluster-enabled yes`` on a free port in its own directory, joined by ``redis-cli --cluster
create … --cluster-replicas 1``. A test or a benchmark can ``kill -9`` a master and wait for
its replica to take over; ``stop`` kills every node by PID.

``cluster-node-timeout`` is short (1 s by default) so that a failover takes seconds;
``cluster-require-full-coverage no`` keeps the other shards serving meanwhile (what
docs/deploy.md recommends)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from menteo_testkit import procstat
from menteo_testkit.ports import HOST, free_port, listening
from menteo_testkit.waits import wait_until

__all__ = ["ClusterNode", "LocalCluster", "key_slot"]

SLOTS = 16384


class NodeExited(RuntimeError):
    """A node's process ended while the cluster was starting."""


def _crc16(data: bytes) -> int:
    """CRC16-XMODEM, as Redis Cluster hashes keys (polynomial 0x1021)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``, its ``{hash tag}`` alone when it has one."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return _crc16(raw) % SLOTS


@dataclass
class ClusterNode:
    port: int
    bus_port: int  # the cluster bus: chosen too (port + 10000 may be taken, or past 65535)
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    cpu_ticks_done: int = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class LocalCluster:
    """Six ``redis-server`` nodes (``masters`` + one replica each), started by ``start``."""

    def __init__(self, workdir: Path, *, masters: int = 3, node_timeout_ms: int = 1000) -> None:
        self.dir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.masters_wanted = masters
        self.nodes = self._pick_nodes()

    def _pick_nodes(self) -> list[ClusterNode]:
        """Nodes on distinct free ports (each a client port and a cluster bus port)."""
        ports: list[int] = []
        while len(ports) < self.masters_wanted * 4:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return [
            ClusterNode(ports[2 * i], ports[2 * i + 1], self.dir / f"node{i}")
            for i in range(self.masters_wanted * 2)
        ]

    @property
    def url(self) -> str:
        """``MENTEO_REDIS_URL`` for the server: every node, so any survivor is a way in."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def command(self, node: ClusterNode) -> list[str]:
        # No RDB, no AOF: a killed node is gone for good, its replica takes over.
        return ["redis-server", "--port", str(node.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(node.dir), "--logfile", "node.log",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-port", str(node.bus_port),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-require-full-coverage", "no",
                "--repl-diskless-sync-delay", "0"]  # fmt: skip

    async def start(self, timeout: float = 30.0, attempts: int = 2) -> None:
        """Start the nodes, join them as a cluster, and wait until every node says ok. On a
        failure every node started is killed; a node that could not start (a port taken
        since it was picked) is tried again once on other ports."""
        for attempt in range(1, attempts + 1):
            try:
                await self._start(timeout)
                return
            except NodeExited:
                self.stop()
                if attempt == attempts:
                    raise
                for node in self.nodes:
                    shutil.rmtree(node.dir, ignore_errors=True)
                self.nodes = self._pick_nodes()
            except BaseException:
                self.stop()
                raise

    async def _start(self, timeout: float) -> None:
        for node in self.nodes:
            node.dir.mkdir(parents=True, exist_ok=True)
            node.proc = await asyncio.to_thread(
                subprocess.Popen,
                self.command(node),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for node in self.nodes:
            await wait_until(
                lambda node=node: self._accepting(node),  # type: ignore[misc]
                f"cluster node {node.address} to accept",
                timeout,
            )
        create = ["redis-cli", "--cluster", "create", *(n.address for n in self.nodes),
                  "--cluster-replicas", "1", "--cluster-yes"]  # fmt: skip
        done = await asyncio.to_thread(subprocess.run, create, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"redis-cli --cluster create failed: {output[-2000:]}")
        await wait_until(self._settled, "every cluster node to report cluster_state:ok", timeout)
        # A replica that never synced cannot take over: wait until every one has.
        await wait_until(self._replicas_synced, "every replica to sync with its master", timeout)

    async def _replicas_synced(self) -> bool:
        replicas = 0
        for node in self.alive():
            info = await self.cli(node, "info", "replication")
            if "role:slave" in info:
                replicas += 1
                if "master_link_status:up" not in info or "master_sync_in_progress:0" not in info:
                    return False
        return replicas == len(self.nodes) - self.masters_wanted

    async def _accepting(self, node: ClusterNode) -> bool:
        assert node.proc is not None
        if node.proc.poll() is not None:
            log = node.dir / "node.log"
            tail = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            raise NodeExited(f"redis-server {node.address} exited at start: {tail}")
        return await listening(node.port)

    async def cli(self, node: ClusterNode, *args: str) -> str:
        """One ``redis-cli`` command against ``node``: its output."""
        argv = ["redis-cli", "-h", HOST, "-p", str(node.port), *args]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=10)
        return done.stdout.decode(errors="replace")

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.pid is not None]

    async def _settled(self) -> bool:
        """Every live node: state ok, every live node known, the masters wanted serving."""
        for node in self.alive():
            info = await self.cli(node, "cluster", "info")
            if "cluster_state:ok" not in info:
                return False
            if f"cluster_size:{self.masters_wanted}" not in info:
                return False
        views = [await self._masters_seen_by(n) for n in self.alive()]
        return all(v == views[0] for v in views) and len(views[0]) == self.masters_wanted

    async def _masters_seen_by(self, node: ClusterNode) -> dict[int, list[tuple[int, int]]]:
        """The masters serving slots as ``node`` sees them (``CLUSTER NODES``): port -> slot
        ranges."""
        masters: dict[int, list[tuple[int, int]]] = {}
        for line in (await self.cli(node, "cluster", "nodes")).splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            ranges = masters[port] = []
            for spec in fields[8:]:
                if not spec.startswith("["):  # "[slot->-node]": a slot being migrated
                    low, _, high = spec.partition("-")
                    ranges.append((int(low), int(high or low)))
        return masters

    async def master_of(self, key: str) -> ClusterNode:
        """The node serving ``key``'s slot now, as a live node sees it."""
        return await self.master_of_slot(key_slot(key))

    async def master_of_slot(self, slot: int) -> ClusterNode:
        for port, ranges in (await self._masters_seen_by(self.alive()[0])).items():
            if any(low <= slot <= high for low, high in ranges):
                return self._by_port(port)
        raise RuntimeError(f"no live master serves slot {slot}")

    async def shard_of(self, master: ClusterNode) -> list[ClusterNode]:
        """``master`` and its replicas (``CLUSTER NODES`` of a live node)."""
        master_id = (await self.cli(master, "cluster", "myid")).strip()
        shard = [master]
        for line in (await self.cli(self.alive()[0], "cluster", "nodes")).splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[3] == master_id:
                shard.append(self._by_port(int(fields[1].split("@")[0].rsplit(":", 1)[1])))
        return shard

    async def masters(self) -> list[ClusterNode]:
        return [self._by_port(p) for p in await self._masters_seen_by(self.alive()[0])]

    def _by_port(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def kill(self, node: ClusterNode) -> None:
        """``kill -9`` one node and reap it."""
        if node.proc is not None:
            node.cpu_ticks_done += procstat.cpu_ticks(node.proc.pid) or 0
            node.proc.kill()
            node.proc.wait()
            node.proc = None

    async def wait_failover(self, killed: ClusterNode, timeout: float = 20.0) -> None:
        """Until a replica serves what ``killed`` served and every live node agrees."""

        async def taken_over() -> bool:
            for node in self.alive():
                if killed.port in await self._masters_seen_by(node):
                    return False
            return await self._settled()

        await wait_until(
            taken_over, f"a replica to take over from {killed.address}", timeout, every=0.1
        )

    async def move_slot(self, slot: int, target: ClusterNode) -> ClusterNode:
        """Move ``slot`` and its keys to ``target`` (another master), as ``redis-cli --cluster
        reshard`` does one slot: IMPORTING, MIGRATING, MIGRATE, then SETSLOT NODE on every
        master. Returns the master it left."""
        source = await self.master_of_slot(slot)
        src_id = (await self.cli(source, "cluster", "myid")).strip()
        dst_id = (await self.cli(target, "cluster", "myid")).strip()
        await self.cli(target, "cluster", "setslot", str(slot), "importing", src_id)
        await self.cli(source, "cluster", "setslot", str(slot), "migrating", dst_id)
        while keys := (
            await self.cli(source, "cluster", "getkeysinslot", str(slot), "100")
        ).split():
            await self.cli(
                source, "migrate", HOST, str(target.port), "", "0", "5000", "KEYS", *keys
            )
        for master in await self.masters():
            await self.cli(master, "cluster", "setslot", str(slot), "node", dst_id)
        return source

    def cpu_ticks(self) -> int:
        """CPU of every node so far (the killed ones' up to their kill)."""
        live = sum(procstat.cpu_ticks(n.proc.pid) or 0 for n in self.nodes if n.proc is not None)
        return live + sum(n.cpu_ticks_done for n in self.nodes)

    def stop(self) -> None:
        """Kill every node by PID (nothing of theirs is worth keeping)."""
        for node in self.nodes:
            self.kill(node)
