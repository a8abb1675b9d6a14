"""
``redis://[:password@]host:port/db?prefix=NAME`` (and ``rediss://``): one event log
and one live fan-out shared by any number of gateway processes.

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
while different sandboxes spread over the cluster. Redis failures that may pass
(connection lost, timeout, loading, failover) raise ``StoreUnavailableError``; the
client reconnects by itself on the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ...errors import StoreUnavailableError
from ._base import (
    DEFAULT_RETENTION,
    Broker,
    SandboxKey,
    StoredEvent,
    encode_event_json,
    new_event_id,
)
from ._redis_broker import RedisBroker
from ._redis_scripts import APPEND, QUERY

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

logger = logging.getLogger(__name__)

_Append: TypeAlias = "tuple[tuple[str, ...], asyncio.Future[int]]"
"""One pending append: the script's keys and arguments, and the future of its ms."""

DEFAULT_PREFIX: Final = "cse"
"""Key prefix when the URL has no ``?prefix=``."""
_MAX_SINCE: Final = 2**53
"""Lua numbers are doubles: exact up to here, far beyond any millisecond timestamp."""
_TRANSIENT_REPLIES: Final = (
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "READONLY",
)
"""Error replies of a Redis that is starting, failing over or busy: worth a retry."""
_POOL_DEFAULTS: Final[dict[str, Any]] = {
    "max_connections": 64,
    "timeout": 5.0,  # seconds to wait for a free pooled connection
    "socket_timeout": 5.0,
    "socket_connect_timeout": 2.0,
    "socket_keepalive": True,
}
"""Connection settings; the URL's own query options (redis-py names) win."""


_SHARDED_SINCE: Final = 7
"""The Redis major version that brought sharded pub/sub (SPUBLISH, SSUBSCRIBE)."""


def _translate(exc: Exception) -> Exception:
    """Return *exc* as ``StoreUnavailableError`` if it may pass, else unchanged."""
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)) or (
        isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)
    ):
        unavailable = StoreUnavailableError(f"event store unavailable: {exc}", 503)
        unavailable.__cause__ = exc
        return unavailable
    return exc


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    """Turn the Redis failures that may pass into ``StoreUnavailableError``."""
    try:
        yield
    except RedisError as exc:
        translated = _translate(exc)
        if translated is exc:
            raise
        raise translated from exc


class RedisStore:
    """
    Keeps up to *retention* events per sandbox in Redis streams, shared by processes.

    Every call is one script run (one round trip); appends are acknowledged once
    Redis has executed the script, so a 200 means the event is in Redis.

    Args:
        url: A redis-py URL without our ``prefix`` option.
        prefix: The key prefix; lets several gateways (or test runs) share a Redis.
        retention: Events kept per sandbox; the oldest go first.
    """

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, retention: int
    ) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"bad Redis key prefix {prefix!r}: no braces, not empty")
        self._url = url
        self.prefix = prefix
        self._retention = str(retention)
        self._client: Redis | None = None
        self._publish: str | None = None
        """``SPUBLISH`` or ``PUBLISH``, once the server was asked which it offers."""
        # Appends of one loop iteration, sent together as one pipeline.
        self._batch: list[_Append] = []
        self._batches: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str, *, retention: int = DEFAULT_RETENTION) -> RedisStore:
        """
        Return a store for ``redis[s]://[[user]:password@]host[:port][/db][?prefix=]``.

        Other query options go to redis-py (e.g. ``socket_timeout=2``).

        Raises:
            ValueError: Not a redis URL, or a bad prefix.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(
                f"bad Redis URL {url!r}: use redis://[:password@]host:port/db"
                "?prefix=NAME (or rediss://)"
            )
        options = parse_qsl(parts.query, keep_blank_values=True)
        prefixes = [value for name, value in options if name == "prefix"]
        rest = urlencode([(name, value) for name, value in options if name != "prefix"])
        return cls(
            urlunsplit(parts._replace(query=rest)),
            prefix=prefixes[-1] if prefixes else DEFAULT_PREFIX,
            retention=retention,
        )

    def base_key(self, key: SandboxKey) -> str:
        """The name every Redis key of sandbox *key* starts with (hash tag included)."""
        return f"{self.prefix}:{{{key[0]}:{key[1]}}}"

    def channel(self, key: SandboxKey) -> str:
        """The pub/sub channel of sandbox *key*."""
        return self.base_key(key) + ":live"

    def _redis(self) -> Redis:
        if self._client is None:
            raise RuntimeError("the Redis store is not open")
        return self._client

    async def open(self) -> None:
        """
        Create the connection pool; never fails for Redis being down.

        The gateway starts anyway and answers 503 until Redis is reachable.
        """
        pool = BlockingConnectionPool.from_url(
            self._url,
            decode_responses=True,
            # One retry on a fresh connection: a pooled one may predate a Redis
            # restart. More would only delay the 503 the client retries on anyway.
            retry=Retry(NoBackoff(), 1),
            **_POOL_DEFAULTS,
        )
        self._client = Redis(connection_pool=pool)
        self._append_sha = self._client.register_script(APPEND).sha
        self._query = self._client.register_script(QUERY)
        try:
            await self._publish_command()
        except StoreUnavailableError as exc:
            logger.warning("Redis is not reachable yet (%s); will keep trying", exc)

    async def _publish_command(self) -> str:
        """Ask the server once whether it offers sharded pub/sub (Redis >= 7)."""
        if self._publish is None:
            with _unavailable_on_failure():
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

        Appends made in the same loop iteration go to Redis as one pipeline (one
        write, one read), which is what lets one process keep up with the memory
        store; each is still its own atomic script run.

        Raises:
            StoreUnavailableError: Redis cannot be reached now.
        """
        publish = await self._publish_command()
        event_id = new_event_id()
        # The script appends the timestamp it chooses, the JSON's last field.
        head = encode_event_json(event_id, key, event_type, data_json, 0)[:-2]
        base = self.base_key(key)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        args = (
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
        self._batch.append((args, done))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)
        timestamp = await done
        return StoredEvent(
            event_id, key[0], key[1], event_type, timestamp, f"{head}{timestamp}}}"
        )

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.ensure_future(self._run_batch(batch))
        # Keep a reference: the loop holds tasks only weakly.
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Append]) -> None:
        try:
            results = await self._pipeline(batch)
            lost = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if lost:  # Redis restarted and forgot the script: load it, send again
                await self._redis().script_load(APPEND)
                again = await self._pipeline([batch[i] for i in lost])
                for i, result in zip(lost, again, strict=True):
                    results[i] = result
        except Exception as exc:  # every waiting request must get an answer
            results = [exc] * len(batch)
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():  # the request went away meanwhile
                continue
            if isinstance(result, Exception):
                done.set_exception(_translate(result))
            else:
                done.set_result(int(result))

    async def _pipeline(self, batch: list[_Append]) -> list[Any]:
        pipe = self._redis().pipeline(transaction=False)
        for args, _ in batch:
            pipe.evalsha(self._append_sha, 3, *args)
        return await pipe.execute(raise_on_error=False)

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """
        Return events of *key* as ``EventStore.query`` defines, in one round trip.

        Raises:
            StoreUnavailableError: Redis cannot be reached now.
        """
        base = self.base_key(key)
        events_key = f"{base}:events"
        ranged = events_key if event_type is None else f"{base}:type:{event_type}"
        after = "" if since is None else str(min(since, _MAX_SINCE))
        with _unavailable_on_failure():
            rows = await self._query(
                keys=[events_key, ranged], args=[self._retention, after, limit]
            )
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

    async def _broker_connection(self) -> tuple[AbstractConnection, bool]:
        """A new connection with the pool's settings, for the broker alone."""
        sharded = await self._publish_command() == "SPUBLISH"
        pool = self._redis().connection_pool
        conn = pool.connection_class(**pool.connection_kwargs)
        with _unavailable_on_failure():
            await conn.connect()  # type: ignore[no-untyped-call]  # redis-py: untyped
        return conn, sharded

    def create_broker(self) -> Broker:
        """Return a broker fed by Redis pub/sub: it sees every process's events."""
        return RedisBroker(self._broker_connection, self.channel)

    async def close(self) -> None:
        """Close every connection. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
