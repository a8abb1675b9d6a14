"""
Append batching for the Redis store: the appends of one loop iteration, one round trip.

Each append is one run of the append script (atomic on its own); what the batch saves
is the round trips. On a standalone Redis the batch is one pipeline. On a Redis Cluster
it is one pipeline per node that owns a slot in the batch, sent side by side, so a node
that is down fails its own sandboxes' appends and nobody else's.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException

from ._redis_errors import translate
from ._redis_url import slot_owner

__all__ = ["AppendBatcher", "load_script"]

_Append: TypeAlias = "tuple[tuple[str, ...], asyncio.Future[int]]"
"""One pending append: the script's keys and arguments, and the future of its ms."""

_KEYS = 3
"""The append script's declared keys: event stream, type index, type set."""


class AppendBatcher:
    """
    Runs the append script for every append of a loop iteration in one round trip.

    Runs on the gateway's loop; not thread-safe.

    Args:
        client: The store's client: a standalone ``Redis`` or a ``RedisCluster``.
        script: The append script's source, loaded again if Redis forgot it.
    """

    def __init__(self, client: Redis | RedisCluster, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = client.register_script(script).sha
        self._batch: list[_Append] = []
        self._batches: set[asyncio.Task[None]] = set()

    async def append(self, args: tuple[str, ...]) -> int:
        """
        Run the append script with *args* (its 3 keys first); return its result.

        Raises:
            StoreUnavailableError: Redis, or the node owning the keys, is unreachable.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self._batch.append((args, done))
        if len(self._batch) == 1:
            loop.call_soon(self._send_batch)
        return await done

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.ensure_future(self._run_batch(batch))
        # Keep a reference: the loop holds tasks only weakly.
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Append]) -> None:
        try:
            results = await self._send(batch)
            lost = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if lost:  # Redis restarted and forgot the script: load it, send again
                await self._load_script([batch[i] for i in lost])
                again = await self._send([batch[i] for i in lost])
                for i, result in zip(lost, again, strict=True):
                    results[i] = result
        except Exception as exc:  # every waiting request must get an answer
            results = [exc] * len(batch)
        for (_, done), result in zip(batch, results, strict=True):
            if done.done():  # the request went away meanwhile
                continue
            if isinstance(result, BaseException):
                done.set_exception(translate(result))
            else:
                done.set_result(int(result))

    async def _send(self, batch: list[_Append]) -> list[Any]:
        client = self._client
        if not isinstance(client, RedisCluster):
            return await self._pipeline(client, batch)
        # No-op once the slot map is known; after a connection error redis-py asks
        # for it again here, so a failover's new primaries are found.
        await client.initialize()
        results: list[Any] = [None] * len(batch)
        groups: dict[str, list[int]] = {}
        for i, (args, _) in enumerate(batch):
            try:
                groups.setdefault(slot_owner(client, args[0]).name, []).append(i)
            except RedisClusterException as exc:  # slot not covered: this one fails
                results[i] = exc
        sent = await asyncio.gather(
            *(self._pipeline(client, [batch[i] for i in g]) for g in groups.values()),
            return_exceptions=True,
        )
        for group, outcome in zip(groups.values(), sent, strict=True):
            for n, i in enumerate(group):
                results[i] = (
                    outcome if isinstance(outcome, BaseException) else outcome[n]
                )
        return results

    async def _pipeline(
        self, client: Redis | RedisCluster, batch: list[_Append]
    ) -> list[Any]:
        # Cluster pipelines route each EVALSHA by its declared keys, which share the
        # sandbox's hash tag, and follow MOVED/ASK by themselves.
        pipe = client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command("EVALSHA", self._sha, _KEYS, *args)
        return await pipe.execute(raise_on_error=False)

    async def _load_script(self, batch: list[_Append]) -> None:
        await load_script(self._client, self._script, [args[0] for args, _ in batch])


async def load_script(
    client: Redis | RedisCluster, script: str, keys: list[str]
) -> None:
    """
    Load *script* where the nodes owning *keys* run it (the one server, standalone).

    On a cluster, only those nodes are asked: redis-py's ``SCRIPT LOAD`` goes to every
    primary, and fails while any one of them is down.
    """
    if not isinstance(client, RedisCluster):
        await client.script_load(script)
        return
    nodes = {node.name: node for node in (slot_owner(client, key) for key in keys)}
    for node in nodes.values():
        await client.execute_command("SCRIPT LOAD", script, target_nodes=node)
