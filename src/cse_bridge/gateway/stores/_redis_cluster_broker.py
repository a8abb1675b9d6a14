"""
Fan-out through a Redis Cluster's sharded pub/sub: one link per shard node in use.

A shard channel lives on the primary that owns its slot, and ``SSUBSCRIBE`` must be sent
there. So this broker keeps one ``RedisBroker`` per node, each on its own connection to
that node, and routes every sandbox to the broker of its channel's slot owner; reference
counting, ``-ERR`` on a lost link and the keep-alive are the single-node broker's.

Topology changes never go unnoticed: a node's lost link fails that node's subscribers,
a slot moved away is announced by Redis with an unsubscription that fails that channel's
subscribers, and a ``SSUBSCRIBE`` sent to a node that no longer owns the slot is refused
with ``MOVED``, which ends that node's link. Failed subscribers reconnect and backfill,
and each loss refreshes the slot map, so they subscribe at the new owner.

redis-py's own ``ClusterPubSub`` is not used: it resubscribes silently after a
reconnect or a slot move, losing what was published meanwhile without telling anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, RedisError

from ...errors import StoreUnavailableError
from ._base import SandboxKey, StoredEvent, Subscriber
from ._redis_broker import LOST_MESSAGE, RedisBroker
from ._redis_errors import unavailable_on_failure
from ._redis_url import slot_owner

__all__ = ["ClusterBroker"]

logger = logging.getLogger(__name__)


class ClusterBroker:
    """
    Delivers events any gateway process stored to this process's subscribers.

    Runs on the gateway's loop, like the pub/sub server that calls it; not thread-safe.

    Args:
        cluster: Returns the store's cluster client (created when the store opens).
        channel_for: The Redis channel of a sandbox.
    """

    def __init__(
        self,
        cluster: Callable[[], RedisCluster],
        channel_for: Callable[[SandboxKey], str],
    ) -> None:
        self._cluster = cluster
        self._channel_for = channel_for
        self._nodes: dict[str, RedisBroker] = {}
        """One broker per node name (``host:port``), kept while the process runs."""
        self._routes: dict[SandboxKey, RedisBroker] = {}
        """The node broker of each sandbox that has local subscribers."""
        self._refresh: asyncio.Task[None] | None = None

    def subscribe(
        self, key: SandboxKey, subscriber: Subscriber
    ) -> asyncio.Future[None] | None:
        """
        Start delivering *key*'s events to *subscriber*, from its slot's owner.

        Returns:
            As ``RedisBroker.subscribe``; a failed future (``StoreUnavailableError``)
            if the slot map is not known yet or the slot has no owner.
        """
        broker = self._routes.get(key)
        # Route again only once nobody listens here: one sandbox, one node broker.
        if broker is None or not broker.subscriber_count(key):
            try:
                node = slot_owner(self._cluster(), self._channel_for(key))
            except RedisClusterException as exc:  # slot map unknown or incomplete
                self._refresh_slots()
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(
                    StoreUnavailableError(f"{LOST_MESSAGE}: {exc}", 503)
                )
                return failed
            broker = self._routes[key] = self._node_broker(node.name)
        return broker.subscribe(key, subscriber)

    def unsubscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Stop delivering to *subscriber*; the last one leaves the Redis channel."""
        broker = self._routes.get(key)
        if broker is not None:
            broker.unsubscribe(key, subscriber)
            if not broker.subscriber_count(key):
                del self._routes[key]

    def subscriber_count(self, key: SandboxKey) -> int:
        """How many subscribers *key* has in this process."""
        broker = self._routes.get(key)
        return 0 if broker is None else broker.subscriber_count(key)

    async def publish(self, event: StoredEvent) -> None:
        """Nothing to do: the store's append script published *event* already."""

    async def close(self) -> None:
        """Close every node's link and forget every subscriber. Idempotent."""
        refresh, self._refresh = self._refresh, None
        if refresh is not None:
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
        nodes, self._nodes = self._nodes, {}
        self._routes.clear()
        for broker in nodes.values():
            await broker.close()

    def _node_broker(self, name: str) -> RedisBroker:
        broker = self._nodes.get(name)
        if broker is None:

            async def connect() -> tuple[AbstractConnection, bool]:
                return await self._connect(name)

            broker = RedisBroker(
                connect, self._channel_for, on_lost=self._refresh_slots
            )
            self._nodes[name] = broker
        return broker

    async def _connect(self, name: str) -> tuple[AbstractConnection, bool]:
        """A new connection to node *name*, with the cluster client's settings."""
        node = self._cluster().get_node(node_name=name)
        if node is None:  # gone from the slot map meanwhile
            raise StoreUnavailableError(f"{LOST_MESSAGE}: {name} left the cluster", 503)
        conn = node.connection_class(**node.connection_kwargs)
        with unavailable_on_failure():
            await conn.connect()  # type: ignore[no-untyped-call]  # redis-py: untyped
        return conn, True

    def _refresh_slots(self) -> None:
        """Ask the cluster for its slot map again, in the background, one at a time."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._reload_slots())

    async def _reload_slots(self) -> None:
        try:
            await self._cluster().nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError, RuntimeError) as exc:
            # The store's next command tries again; the subscribers were told.
            # RuntimeError: the store closed meanwhile.
            logger.warning("could not refresh the Redis Cluster slot map: %s", exc)
