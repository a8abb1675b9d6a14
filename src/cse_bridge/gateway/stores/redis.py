"""
``redis://[:password@]host:port/db?prefix=NAME`` (and ``rediss://``), or a Redis
Cluster as ``redis+cluster://host:port[,host:port...]?prefix=NAME`` (and
``rediss+cluster://``): one event log and one live fan-out shared by any number of
gateway processes.

Layout, for sandbox ``sb`` of workspace 1 and the default prefix ``cse``:

- ``cse:{1:sb}:events``: a stream of the sandbox's events, capped at the retention
  with ``XADD MAXLEN ~`` (queries hide the surplus that approximate trimming keeps).
  Entry id ``<ms>-0`` *is* the event's timestamp; fields ``t`` type, ``i`` event id,
  ``j`` the SandboxEvent JSON.
- ``cse:{1:sb}:type:<type>``: one index stream per type, entries with the same ids and
  no payload; ``?type=`` ranges over it and looks each event up, so a filtered read
  costs O(k log n) however rare the type. The price: a second, small ``XADD`` per
  event (plus ``cse:{1:sb}:types``, a sorted set for dropping dead indexes).
- ``cse:{1:sb}:live``: the pub/sub channel; the append script publishes each event
  there (``SPUBLISH`` on Redis >= 7, else ``PUBLISH``).

The ``{1:sb}`` hash tag keeps a sandbox's keys and channel in one Redis Cluster slot,
while different sandboxes spread over the cluster: every script call declares its keys,
so redis-py routes it to the slot's owner. Redis failures that may pass (connection
lost, timeout, loading, failover) raise ``StoreUnavailableError``; the client
reconnects by itself on the next call. On a cluster, they affect only the sandboxes
whose shard is unreachable.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError

from ...errors import StoreUnavailableError
from ._base import (
    DEFAULT_RETENTION,
    Broker,
    SandboxKey,
    StoredEvent,
    encode_event_json,
    new_event_id,
)
from ._redis_batch import AppendBatcher, load_script
from ._redis_broker import RedisBroker
from ._redis_cluster_broker import ClusterBroker
from ._redis_errors import unavailable_on_failure
from ._redis_scripts import APPEND, QUERY
from ._redis_url import DEFAULT_PREFIX, RedisTarget, parse_redis_url

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

logger = logging.getLogger(__name__)

_MAX_SINCE: Final = 2**53
"""Lua numbers are doubles: exact up to here, far beyond any millisecond timestamp."""
_SHARDED_SINCE: Final = 7
"""The Redis major version that brought sharded pub/sub (SPUBLISH, SSUBSCRIBE)."""


class RedisStore:
    """
    Keeps up to *retention* events per sandbox in Redis streams, shared by processes.

    Every call is one script run (one round trip); appends are acknowledged once
    Redis has executed the script, so a 200 means the event is in Redis.

    Args:
        url: A redis-py URL without our ``prefix`` option (a cluster's first seed).
        prefix: The key prefix; lets several gateways (or test runs) share a Redis.
        retention: Events kept per sandbox; the oldest go first.
        seeds: A Redis Cluster's further seed nodes, ``()`` for none; None (the
            default) for a single endpoint.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        retention: int,
        seeds: tuple[tuple[str, int], ...] | None = None,
    ) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"bad Redis key prefix {prefix!r}: no braces, not empty")
        self._target = RedisTarget(url, prefix, seeds)
        self.prefix = prefix
        self._retention = str(retention)
        self._client: Redis | RedisCluster | None = None
        self._batcher: AppendBatcher | None = None
        # A cluster needs sharded pub/sub (a shard's primary holds the channel), so
        # it gets SPUBLISH without asking; one endpoint says which it offers.
        self._publish: str | None = "SPUBLISH" if self.cluster else None
        """``SPUBLISH`` or ``PUBLISH``, once the server was asked which it offers."""

    @classmethod
    def from_url(cls, url: str, *, retention: int = DEFAULT_RETENTION) -> RedisStore:
        """
        Return a store for a ``redis[s]://`` or ``redis[s]+cluster://`` URL.

        ``redis[s]://[[user]:password@]host[:port][/db][?prefix=]`` names one
        endpoint, ``redis[s]+cluster://[[user]:password@]host[:port][,host[:port]...]``
        a Redis Cluster (seed nodes; database 0). Other query options go to redis-py
        (e.g. ``socket_timeout=2``).

        Raises:
            ValueError: Not a redis URL, or a bad prefix.
        """
        target = parse_redis_url(url)
        return cls(
            target.url, prefix=target.prefix, retention=retention, seeds=target.seeds
        )

    @property
    def cluster(self) -> bool:
        """True if the URL named a Redis Cluster."""
        return self._target.cluster

    def base_key(self, key: SandboxKey) -> str:
        """The name every Redis key of sandbox *key* starts with (hash tag included)."""
        return f"{self.prefix}:{{{key[0]}:{key[1]}}}"

    def channel(self, key: SandboxKey) -> str:
        """The pub/sub channel of sandbox *key*."""
        return self.base_key(key) + ":live"

    def _redis(self) -> Redis | RedisCluster:
        if self._client is None:
            raise RuntimeError("the Redis store is not open")
        return self._client

    def _cluster_client(self) -> RedisCluster:
        client = self._redis()
        if not isinstance(client, RedisCluster):
            raise TypeError("the Redis store is not on a Redis Cluster")
        return client

    async def open(self) -> None:
        """
        Create the client; never fails for Redis being down.

        The gateway starts anyway and answers 503 until Redis is reachable.
        """
        client = self._client = self._target.create_client()
        self._batcher = AppendBatcher(client, APPEND)
        self._query = client.register_script(QUERY)
        try:
            if isinstance(client, RedisCluster):
                with unavailable_on_failure():
                    await client.initialize()  # learn the slot map now
            else:
                await self._publish_command()
        except StoreUnavailableError as exc:
            logger.warning("Redis is not reachable yet (%s); will keep trying", exc)

    async def _publish_command(self) -> str:
        """Ask the server once whether it offers sharded pub/sub (Redis >= 7)."""
        if self._publish is None:
            with unavailable_on_failure():
                info = await self._redis().info("server")
            # Sharded pub/sub came with Redis 7.0; forks that report an older
            # version get classic pub/sub, which every server offers.
            major = str(info.get("redis_version", "0")).split(".", 1)[0]
            sharded = major.isdigit() and int(major) >= _SHARDED_SINCE
            self._publish = "SPUBLISH" if sharded else "PUBLISH"
        return self._publish

    async def append(
        self, key: SandboxKey, event_type: str, data_json: str
    ) -> StoredEvent:
        """
        Store one event; return once Redis holds it.

        Appends made in the same loop iteration go to Redis together (one pipeline,
        or one per cluster node), which is what lets one process keep up with the
        memory store; each is still its own atomic script run.

        Raises:
            StoreUnavailableError: Redis (the sandbox's shard) cannot be reached now.
        """
        publish = await self._publish_command()
        event_id = new_event_id()
        # The script appends the timestamp it chooses, the JSON's last field.
        head = encode_event_json(event_id, key, event_type, data_json, 0)[:-2]
        base = self.base_key(key)
        if self._batcher is None:
            raise RuntimeError("the Redis store is not open")
        # The three keys first: the script declares them, and all share the hash tag.
        timestamp = await self._batcher.append(
            (
                f"{base}:events",
                f"{base}:type:{event_type}",
                f"{base}:types",
                event_type,
                event_id,
                head,
                self._retention,
                publish,
                base + ":live",
                f"{base}:type:",
            )
        )
        return StoredEvent(
            event_id, key[0], key[1], event_type, timestamp, f"{head}{timestamp}}}"
        )

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """
        Return events of *key* as ``EventStore.query`` defines, in one round trip.

        Raises:
            StoreUnavailableError: Redis (the sandbox's shard) cannot be reached now.
        """
        base = self.base_key(key)
        events_key = f"{base}:events"
        ranged = events_key if event_type is None else f"{base}:type:{event_type}"
        after = "" if since is None else str(min(since, _MAX_SINCE))
        keys = [events_key, ranged]
        args: list[str | int] = [self._retention, after, limit]
        with unavailable_on_failure():
            client = self._redis()
            if isinstance(client, RedisCluster):
                rows = await self._cluster_query(client, keys, args)
            else:
                rows = await self._query(keys=keys, args=args)
        if since is None:
            rows.reverse()
        workspace_id, sandbox_id = key
        # Fields come back in the order the append script wrote them: t, i, j.
        return [
            StoredEvent(
                fields[3], workspace_id, sandbox_id, fields[1], int(sid[:-2]), fields[5]
            )
            for sid, fields in rows
        ]

    async def _cluster_query(
        self, client: RedisCluster, keys: list[str], args: list[str | int]
    ) -> Any:
        """The query script on the keys' node; loaded there alone if it forgot it."""
        try:
            return await client.evalsha(self._query.sha, len(keys), *keys, *args)
        except NoScriptError:
            await load_script(client, QUERY, keys)
            return await client.evalsha(self._query.sha, len(keys), *keys, *args)

    async def _broker_connection(self) -> tuple[AbstractConnection, bool]:
        """A new connection with the pool's settings, for the broker alone."""
        sharded = await self._publish_command() == "SPUBLISH"
        client = self._redis()
        if isinstance(client, RedisCluster):
            raise TypeError("a Redis Cluster's broker connects per node")
        pool = client.connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        with unavailable_on_failure():
            await conn.connect()  # type: ignore[no-untyped-call]  # redis-py: untyped
        return conn, sharded

    def create_broker(self) -> Broker:
        """Return a broker fed by Redis pub/sub: it sees every process's events."""
        if self.cluster:
            return ClusterBroker(self._cluster_client, self.channel)
        return RedisBroker(self._broker_connection, self.channel)

    async def close(self) -> None:
        """Close every connection. Idempotent."""
        client, self._client = self._client, None
        if isinstance(client, Redis):
            await client.aclose()
            await client.connection_pool.disconnect()
        elif client is not None:
            await client.aclose()
