"""The redis+cluster:// store, its broker and two gateways, on a private cluster."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
import requests

from cse_bridge.gateway import GatewayThread
from cse_bridge.gateway.stores import open_store
from cse_bridge.gateway.stores.memory import MemoryStore
from cse_bridge.gateway.stores.redis import RedisStore

from ..conftest import make_gateway_config
from ..helpers import API_KEY, WORKSPACE, next_reply, raw_subscribe, read_all_events
from .redis_cluster_fixtures import OwnRedisCluster
from .redis_fixtures import run
from .test_redis_store import Recorder

TYPES = ("log.info", "log.error", "trace.span")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedisCluster]:
    """A 3-node Redis Cluster for the whole session; each test uses a fresh prefix."""
    nodes = OwnRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def doomed_cluster(tmp_path: Path) -> Iterator[OwnRedisCluster]:
    """A 3-node Redis Cluster of its own, for a test that kills one of its nodes."""
    nodes = OwnRedisCluster(tmp_path)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def one_sandbox_per_node(cluster: OwnRedisCluster) -> dict[int, str]:
    """A sandbox id for each node's port, whose keys that node owns."""
    found: dict[int, str] = {}
    for i in range(1000):
        sandbox = f"sandbox-{i}"
        port = cluster.owner_port(f"{{{WORKSPACE}:{sandbox}}}")
        found.setdefault(port, sandbox)
        if len(found) == len(cluster.ports):
            return found
    raise AssertionError("no sandbox for every node in 1000 tries")


def subscribe(gw: GatewayThread, sandbox: str) -> tuple[socket.socket, hiredis.Reader]:
    """A raw pub/sub subscriber of *sandbox* on *gw*, past its +OK."""
    return raw_subscribe(
        gw.pubsub_host, gw.pubsub_port, sandbox, gw.issue_token(sandbox)
    )


def post(gw: GatewayThread, sandbox: str, index: int) -> requests.Response:
    """POST one numbered event into *sandbox*."""
    return requests.post(
        f"{gw.http_url}/events",
        json={"type": "log.info", "data": {"i": index}},
        headers={"Authorization": f"Bearer {gw.issue_token(sandbox)}"},
        timeout=10,
    )


class TestClusterUrl:
    def test_seeds_prefix_and_options(self) -> None:
        """Every seed of a cluster URL is kept; the prefix and options are split off."""
        store = RedisStore.from_url(
            "rediss+cluster://:pw@a:7000,b,[::1]:7002/0?prefix=team&socket_timeout=1"
        )
        assert (True, "team") == (store.cluster, store.prefix)
        assert "rediss://:pw@a:7000/0?socket_timeout=1" == store._target.url
        assert (("b", 6379), ("::1", 7002)) == store._target.seeds

    def test_open_store_knows_the_scheme(self) -> None:
        """open_store returns a cluster store for redis+cluster://."""
        store = open_store("redis+cluster://h:1")
        assert isinstance(store, RedisStore)
        assert (True, False) == (
            store.cluster,
            RedisStore.from_url("redis://h").cluster,
        )

    @pytest.mark.parametrize(
        "url",
        ["redis+cluster://", "redis+cluster://a:1,:2", "redis+cluster://a:x?prefix=p"],
    )
    def test_bad_seeds(self, url: str) -> None:
        """A cluster URL with a missing host or a bad port is refused."""
        with pytest.raises(ValueError, match="Redis"):
            RedisStore.from_url(url)


class TestClusterStore:
    def test_sandboxes_spread_over_every_node(self, cluster: OwnRedisCluster) -> None:
        """Each sandbox's keys all live on its slot's owner, one sandbox per node."""
        url = cluster.unique_url()
        placed = one_sandbox_per_node(cluster)

        async def fill() -> None:
            store = open_store(url)
            await store.open()
            try:
                for sandbox in placed.values():
                    for event_type in TYPES:
                        await store.append((WORKSPACE, sandbox), event_type, "{}")
            finally:
                await store.close()

        run(fill())
        prefix = RedisStore.from_url(url).prefix
        found: dict[int, set[str]] = {}
        for port in cluster.ports:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                keys = client.scan_iter(match=f"{prefix}:*", count=1000)
                found[port] = {key.split("}")[0].split(":")[-1] for key in keys}
            finally:
                client.close()
        assert {port: {sandbox} for port, sandbox in placed.items()} == found
        assert 3 == len(set(placed))

    def test_queries_match_the_memory_store(self, cluster: OwnRedisCluster) -> None:
        """since/limit/newest/type/retention answer what the memory store answers."""
        sandboxes = list(one_sandbox_per_node(cluster).values())
        queries = [
            {"event_type": t, "since": s, "limit": n}
            for t in (None, *TYPES, "no.such")
            for s in (None, 0, "mid")
            for n in (1, 7, 1000)
        ]

        async def check() -> list[tuple[Any, Any]]:
            store = open_store(cluster.unique_url(), retention=40)
            memory = MemoryStore(retention=40)
            await store.open()
            pairs = []
            try:
                for n, sandbox in enumerate(sandboxes):
                    key = (WORKSPACE, sandbox)
                    # Concurrent appends: one batch touches every node at once.
                    for s in (store, memory):
                        await asyncio.gather(
                            *(
                                s.append(key, TYPES[(i * 7 + n) % 3], f'{{"i":{i}}}')
                                for i in range(100)
                            )
                        )
                    for q in queries:
                        pairs.append(await _both(store, memory, key, q))
            finally:
                await store.close()
            return pairs

        for expected, actual in run(check()):
            assert expected == actual


async def _both(
    store: Any, memory: Any, key: Any, q: dict[str, Any]
) -> tuple[Any, Any]:
    """One query on both stores, ``mid`` as the 20th-newest event's timestamp."""
    answers = []
    for s in (memory, store):
        since = q["since"]
        if since == "mid":
            newest = await s.query(key, event_type=None, since=None, limit=20)
            since = newest[0].timestamp
        events = await s.query(
            key, event_type=q["event_type"], since=since, limit=q["limit"]
        )
        answers.append([(e.type, json.loads(e.json)["data"]) for e in events])
    return answers[0], answers[1]


class TestClusterBroker:
    def test_every_node_delivers_in_order(self, cluster: OwnRedisCluster) -> None:
        """A broker delivers what another store appended on all 3 nodes, in order."""
        keys = [(WORKSPACE, s) for s in one_sandbox_per_node(cluster).values()]
        url = cluster.unique_url()

        async def check() -> tuple[list[list[int]], list[list[int]], int]:
            writer, reader = open_store(url), open_store(url)
            await writer.open()
            await reader.open()
            broker = reader.create_broker()
            subs = [Recorder() for _ in keys]
            try:
                for key, sub in zip(keys, subs, strict=True):
                    ready = broker.subscribe(key, sub)
                    assert ready is not None
                    await ready
                stored = await asyncio.gather(
                    *(writer.append(keys[i % 3], "x", "{}") for i in range(90))
                )
                for sub in subs:
                    while len(sub.events) < 30:
                        sub.got.clear()
                        await asyncio.wait_for(sub.got.wait(), 5)
                links = len(broker._nodes)  # type: ignore[attr-defined]
                return (
                    [[e.timestamp for e in stored if e.key == key] for key in keys],
                    [[e.timestamp for e in sub.events] for sub in subs],
                    links,
                )
            finally:
                await broker.close()
                await writer.close()
                await reader.close()

        stored, delivered, links = run(check())
        assert stored == delivered
        assert 3 == links


class TestClusterGateways:
    def test_stored_through_a_read_and_pushed_through_b(
        self, cluster: OwnRedisCluster
    ) -> None:
        """Events posted to A and B, on every shard, are read and pushed through B."""
        url = cluster.unique_url()
        sandboxes = list(one_sandbox_per_node(cluster).values())
        with (
            GatewayThread(make_gateway_config(url)) as a,
            GatewayThread(make_gateway_config(url)) as b,
        ):
            subs = {sandbox: subscribe(b, sandbox) for sandbox in sandboxes}
            acked: dict[str, list[str]] = {sandbox: [] for sandbox in sandboxes}
            for i in range(60):
                sandbox = sandboxes[i % 3]
                answer = post((a, b)[i % 2], sandbox, i)
                acked[sandbox].append(answer.json()["data"]["eventId"])
            pushed = {}
            for sandbox, (sock, reader) in subs.items():
                with sock:
                    frames = [next_reply(sock, reader) for _ in range(20)]
                pushed[sandbox] = [json.loads(frame[2])["id"] for frame in frames]
            read = {
                s: [e["id"] for e in read_all_events(b.http_url, s)] for s in sandboxes
            }
        assert acked == read
        assert acked == pushed


class TestClusterNodeDown:
    def test_only_the_dead_shards_sandboxes_answer_503(
        self, doomed_cluster: OwnRedisCluster
    ) -> None:
        """With one node killed its sandboxes get 503 and -ERR; the others go on."""
        placed = one_sandbox_per_node(doomed_cluster)
        dead_port, live_port = doomed_cluster.ports[0], doomed_cluster.ports[1]
        dead, live = placed[dead_port], placed[live_port]
        config = make_gateway_config(doomed_cluster.url("down"))
        with GatewayThread(config) as gw:
            socks = {sandbox: subscribe(gw, sandbox) for sandbox in (dead, live)}
            before = [post(gw, s, 0).status_code for s in (dead, live)]
            doomed_cluster.kill(dead_port)
            during = [post(gw, s, 1) for s in (dead, live)]
            reads = [
                requests.get(
                    f"{gw.http_url}/events/{s}",
                    headers={"X-API-Key": API_KEY},
                    timeout=10,
                ).status_code
                for s in (dead, live)
            ]
            replies: dict[str, list[Any]] = {}
            for sandbox, (sock, reader) in socks.items():
                with sock:
                    # dead: its push, then -ERR and the close; live: both pushes.
                    count = 3 if sandbox == dead else 2
                    replies[sandbox] = [next_reply(sock, reader) for _ in range(count)]
        assert [200, 200] == before
        assert [(503, "1"), (200, None)] == [
            (r.status_code, r.headers.get("Retry-After")) for r in during
        ]
        assert [503, 200] == reads
        assert isinstance(replies[dead][1], hiredis.ReplyError)
        assert None is replies[dead][2]
        assert [0, 1] == [json.loads(r[2])["data"]["i"] for r in replies[live][:2]]
