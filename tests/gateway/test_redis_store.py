"""The redis:// store and its broker, against a real Redis (see redis_fixtures)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from cse_bridge.errors import StoreUnavailableError
from cse_bridge.gateway import GatewayThread
from cse_bridge.gateway.stores import StoredEvent, open_store
from cse_bridge.gateway.stores._base import encode_event_json
from cse_bridge.gateway.stores.memory import MemoryStore
from cse_bridge.gateway.stores.redis import DEFAULT_PREFIX, RedisStore

from ..conftest import make_gateway_config
from ..helpers import API_KEY
from .redis_fixtures import free_port, run, shared_redis_url, unique_redis_url

KEY = (1, "sandbox-a")
TYPES = ("log.info", "log.error", "trace.span")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A store URL on the shared Redis under a fresh prefix, deleted afterwards."""
    with unique_redis_url() as url:
        yield url


async def _fill(store: Any, count: int, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    for i in range(count):
        await store.append(KEY, rng.choice(TYPES), json.dumps({"i": i}))


def _data(events: list[StoredEvent]) -> list[tuple[str, Any]]:
    return [(e.type, json.loads(e.json)["data"]) for e in events]


class Recorder:
    """A Subscriber that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.failures: list[str] = []
        self.got = asyncio.Event()

    def deliver(self, event: StoredEvent) -> None:
        """Keep *event*."""
        self.events.append(event)
        self.got.set()

    def fail(self, message: str) -> None:
        """Keep *message*."""
        self.failures.append(message)
        self.got.set()


class TestRedisStoreUrl:
    def test_prefix_from_url(self) -> None:
        """The prefix comes from ?prefix= and defaults to cse."""
        named = RedisStore.from_url("redis://h:1/2?prefix=team")
        plain = open_store("rediss://:pw@h:1/2")
        assert isinstance(plain, RedisStore)
        assert ("team", DEFAULT_PREFIX) == (named.prefix, plain.prefix)

    def test_keys_are_hash_tagged_by_sandbox(self) -> None:
        """All keys of a sandbox share one hash tag, so one Redis Cluster slot."""
        store = RedisStore.from_url("redis://h:1/0")
        assert "cse:{1:sb}" == store.base_key((1, "sb"))
        assert "cse:{1:sb}:live" == store.channel((1, "sb"))

    @pytest.mark.parametrize(
        "url", ["redis:///0", "redis://h/0?prefix=a{b}", "redis://h/0?prefix="]
    )
    def test_bad_urls(self, url: str) -> None:
        """A URL without a host, or with a braced or empty prefix, is refused."""
        with pytest.raises(ValueError, match="Redis"):
            RedisStore.from_url(url)


class TestRedisStoreConformance:
    def test_queries_match_the_memory_store(self, redis_url: str) -> None:
        """since/limit/newest and type filters answer what the memory store answers."""
        queries = [
            {"event_type": t, "since": s, "limit": n}
            for t in (None, *TYPES, "no.such")
            for s in (None, 0, "mid")
            for n in (1, 7, 1000)
        ]

        async def check() -> list[tuple[Any, Any]]:
            store, memory = (
                open_store(redis_url, retention=40),
                MemoryStore(retention=40),
            )
            await store.open()
            try:
                await _fill(store, 100)
                await _fill(memory, 100)
                mid_r = (await store.query(KEY, event_type=None, since=None, limit=20))[
                    0
                ].timestamp
                mid_m = (
                    await memory.query(KEY, event_type=None, since=None, limit=20)
                )[0].timestamp
                pairs = []
                for q in queries:
                    r = await store.query(
                        KEY,
                        **{**q, "since": mid_r if q["since"] == "mid" else q["since"]},
                    )
                    m = await memory.query(
                        KEY,
                        **{**q, "since": mid_m if q["since"] == "mid" else q["since"]},
                    )
                    pairs.append((_data(m), _data(r)))
                return pairs
            finally:
                await store.close()

        for expected, actual in run(check()):
            assert expected == actual

    def test_json_and_timestamps(self, redis_url: str) -> None:
        """Each event's JSON is the SandboxEvent of its id and timestamp."""

        async def check() -> list[StoredEvent]:
            store = open_store(redis_url)
            await store.open()
            try:
                stored = await store.append(KEY, "custom", '{"a":1}')
                read = await store.query(KEY, event_type=None, since=None, limit=10)
                return [stored, *read]
            finally:
                await store.close()

        stored, read = run(check())
        assert stored == read
        assert (
            encode_event_json(stored.id, KEY, "custom", '{"a":1}', stored.timestamp)
            == read.json
        )

    def test_two_stores_interleave_unique_increasing_timestamps(
        self, redis_url: str
    ) -> None:
        """Two processes' appends to one sandbox get strictly increasing timestamps."""

        async def check() -> tuple[list[int], list[int]]:
            a, b = open_store(redis_url), open_store(redis_url)
            await a.open()
            await b.open()
            try:
                acked = await asyncio.gather(
                    *(s.append(KEY, "x", "{}") for _ in range(200) for s in (a, b))
                )
                read = await a.query(KEY, event_type=None, since=0, limit=1000)
                return sorted(e.timestamp for e in acked), [e.timestamp for e in read]
            finally:
                await a.close()
                await b.close()

        acked, read = run(check())
        assert 400 == len(set(acked))
        assert acked == read

    def test_dead_type_indexes_are_dropped(self, redis_url: str) -> None:
        """Index streams of types trimmed out of the retention are deleted in time."""

        async def fill() -> None:
            store = open_store(redis_url, retention=10)
            await store.open()
            try:
                for i in range(50):
                    await store.append(KEY, f"once.{i}", "{}")
                for _ in range(400):
                    await store.append(KEY, "steady", "{}")
            finally:
                await store.close()

        run(fill())
        redis_prefix = RedisStore.from_url(redis_url).prefix
        client = redis.Redis.from_url(shared_redis_url())
        try:
            index_keys = list(client.scan_iter(match=f"{redis_prefix}:*:type:*"))
        finally:
            client.close()
        assert [f"{redis_prefix}:{{1:sandbox-a}}:type:steady".encode()] == index_keys


class TestRedisStoreUnavailable:
    def test_append_and_query_raise_store_unavailable(self) -> None:
        """With Redis unreachable the store raises StoreUnavailableError, not more."""

        async def check() -> list[type[BaseException]]:
            store = open_store(f"redis://127.0.0.1:{free_port()}/0")
            await store.open()  # never fails: the gateway starts and answers 503
            raised = []
            for call in (
                store.append(KEY, "x", "{}"),
                store.query(KEY, event_type=None, since=None, limit=1),
            ):
                try:
                    await call
                except StoreUnavailableError as exc:
                    raised.append(type(exc))
            await store.close()
            return raised

        assert [StoreUnavailableError, StoreUnavailableError] == run(check())

    def test_gateway_answers_503_with_retry_after(self) -> None:
        """POST and GET answer 503 with Retry-After while Redis is unreachable."""
        config = make_gateway_config(f"redis://127.0.0.1:{free_port()}/0")
        with GatewayThread(config) as gw:
            token = gw.issue_token("sandbox-a")
            post = requests.post(
                f"{gw.http_url}/events",
                json={"type": "x"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            get = requests.get(
                f"{gw.http_url}/events/sandbox-a",
                headers={"X-API-Key": API_KEY},
                timeout=10,
            )
        assert [(503, "1", False)] * 2 == [
            (r.status_code, r.headers.get("Retry-After"), r.json()["success"])
            for r in (post, get)
        ]


class TestRedisBroker:
    def test_delivers_other_stores_events_in_order(self, redis_url: str) -> None:
        """A broker delivers what another store appended, in order, once."""

        async def check() -> tuple[list[int], list[int], int]:
            writer, reader = open_store(redis_url), open_store(redis_url)
            await writer.open()
            await reader.open()
            broker = reader.create_broker()
            sub = Recorder()
            try:
                ready = broker.subscribe(KEY, sub)
                assert ready is not None
                await ready
                stored = [await writer.append(KEY, "x", "{}") for _ in range(30)]
                while len(sub.events) < 30:
                    sub.got.clear()
                    await asyncio.wait_for(sub.got.wait(), 5)
                count = broker.subscriber_count(KEY)
                return (
                    [e.timestamp for e in stored],
                    [e.timestamp for e in sub.events],
                    count,
                )
            finally:
                await broker.close()
                await writer.close()
                await reader.close()

        stored, delivered, count = run(check())
        assert stored == delivered
        assert 1 == count

    def test_subscribes_to_redis_only_while_needed(self, redis_url: str) -> None:
        """The Redis channel is subscribed once per process, and left with the last."""

        async def check() -> list[int]:
            store = open_store(redis_url)
            await store.open()
            broker = store.create_broker()
            assert isinstance(store, RedisStore)
            channel = store.channel(KEY)
            probe = redis.asyncio.Redis.from_url(shared_redis_url())
            first, second = Recorder(), Recorder()

            async def numsub() -> int:
                reply = await probe.execute_command("PUBSUB", "SHARDNUMSUB", channel)
                return int(reply[1])

            try:
                counts = [await numsub()]
                ready = broker.subscribe(KEY, first)
                assert ready is not None
                await ready
                assert broker.subscribe(KEY, second) is None  # active already
                counts.append(await numsub())
                broker.unsubscribe(KEY, first)
                counts.append(await numsub())
                broker.unsubscribe(KEY, second)
                await asyncio.sleep(0.2)  # SUNSUBSCRIBE is on its way
                counts.append(await numsub())
                return counts
            finally:
                await probe.aclose()
                await broker.close()
                await store.close()

        assert [0, 1, 1, 0] == run(check())
