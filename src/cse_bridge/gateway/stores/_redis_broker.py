"""
Fan-out through Redis pub/sub: what any gateway process stores, every process pushes.

The store's append script publishes each event on its sandbox's channel, so this
broker's ``publish`` has nothing left to do. It subscribes to a sandbox's channel only
while this process has local subscribers to it (reference counting), on one dedicated
connection, with ``SSUBSCRIBE`` where the server offers sharded pub/sub and
``SUBSCRIBE`` otherwise.

If that connection fails, every local subscriber gets ``-ERR`` and is closed: clients
reconnect and backfill with ``GET ?since=``, which is the only way not to lose what was
published meanwhile. The next ``SUBSCRIBE`` opens a new connection. So does an
unsubscription we did not ask for (Redis 7 sends one when a shard channel's slot
moves to another node): that channel's subscribers are failed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final, TypeAlias

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from ...errors import StoreUnavailableError
from ._base import SandboxKey, StoredEvent, Subscriber

__all__ = ["RedisBroker", "parse_message"]

logger = logging.getLogger(__name__)

PING_INTERVAL: Final = 5.0
"""Seconds between keep-alive PINGs; a PING unanswered for as long ends the link."""
LOST_MESSAGE: Final = "event store unavailable: reconnect and backfill"
"""The ``-ERR`` text subscribers get when the Redis link is lost."""

Connect: TypeAlias = Callable[[], Awaitable[tuple[AbstractConnection, bool]]]
"""Opens the broker's own connection; also says whether sharded pub/sub is offered."""


def parse_message(key: SandboxKey, payload: bytes) -> StoredEvent:
    """
    Decode the append script's message ``<ms> <event id> <type bytes> <type><json>``.

    Raises:
        ValueError: The payload is not in that form.
    """
    ms, event_id, size, rest = payload.split(b" ", 3)
    cut = int(size)
    return StoredEvent(
        event_id.decode(),
        key[0],
        key[1],
        rest[:cut].decode(),
        int(ms),
        rest[cut:].decode(),
    )


class _Channel:
    """One sandbox's subscription: local subscribers and the Redis-side state."""

    __slots__ = ("busy", "key", "last", "name", "ready", "subscribed", "subscribers")

    def __init__(self, key: SandboxKey, name: str) -> None:
        self.key = key
        self.name = name
        self.subscribers: dict[Subscriber, None] = {}
        self.subscribed = False
        """Redis confirmed the subscription (and no unsubscribe is on its way)."""
        self.busy = False
        """A (un)subscribe command is waiting for its confirmation."""
        self.ready: asyncio.Future[None] | None = None
        self.last = -1
        """Timestamp of the newest event delivered: anything not newer is dropped."""


class RedisBroker:
    """
    Delivers events any gateway process stored to this process's subscribers.

    Runs on the gateway's loop, like the pub/sub server that calls it; not thread-safe.

    Args:
        connect: Opens the dedicated pub/sub connection; returns it and whether the
            server offers sharded pub/sub.
        channel_for: The Redis channel of a sandbox.
        on_lost: Called (on the loop) when the link or a channel was lost to Redis:
            the cluster broker refreshes its slot map then.
    """

    def __init__(
        self,
        connect: Connect,
        channel_for: Callable[[SandboxKey], str],
        *,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._channel_for = channel_for
        self._on_lost = on_lost
        self._channels: dict[SandboxKey, _Channel] = {}
        self._by_name: dict[bytes, _Channel] = {}
        self._commands: asyncio.Queue[tuple[str, ...]] = asyncio.Queue()
        self._link: asyncio.Task[None] | None = None
        self._pong_due: float | None = None
        self._closed = False

    def subscribe(
        self, key: SandboxKey, subscriber: Subscriber
    ) -> asyncio.Future[None] | None:
        """
        Start delivering *key*'s events to *subscriber*.

        Returns:
            None if the Redis subscription is active already, else a future that
            resolves once it is (or fails with ``StoreUnavailableError``): the caller
            answers ``+OK`` only then.
        """
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = _Channel(key, self._channel_for(key))
            self._by_name[channel.name.encode()] = channel
        channel.subscribers[subscriber] = None
        if channel.subscribed and not channel.busy:
            return None
        if channel.ready is None:
            channel.ready = asyncio.get_running_loop().create_future()
        ready = channel.ready
        self._sync(channel)
        return ready

    def unsubscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Stop delivering to *subscriber*; the last one leaves the Redis channel."""
        channel = self._channels.get(key)
        if channel is None:
            return
        channel.subscribers.pop(subscriber, None)
        if not channel.subscribers:
            self._sync(channel)

    def subscriber_count(self, key: SandboxKey) -> int:
        """How many subscribers *key* has in this process."""
        channel = self._channels.get(key)
        return 0 if channel is None else len(channel.subscribers)

    async def publish(self, event: StoredEvent) -> None:
        """Nothing to do: the store's append script published *event* already."""

    async def close(self) -> None:
        """Close the Redis link and forget every subscriber. Idempotent."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link
        self._fail_all("the gateway is shutting down")

    # the Redis side

    def _sync(self, channel: _Channel) -> None:
        """Send the one command that moves Redis towards what *channel* wants."""
        wanted = bool(channel.subscribers)
        if channel.busy or wanted == channel.subscribed:
            if not wanted and not channel.busy:
                self._forget(channel)
            return
        if self._closed:
            self._fail_channel(channel, "the gateway is shutting down")
            return
        channel.busy = True
        action = "subscribe" if wanted else "unsubscribe"
        self._commands.put_nowait((action, channel.name))
        if self._link is None:
            self._link = asyncio.ensure_future(self._run_link())

    def _forget(self, channel: _Channel) -> None:
        self._channels.pop(channel.key, None)
        self._by_name.pop(channel.name.encode(), None)

    async def _run_link(self) -> None:
        try:
            conn, sharded = await self._connect()
        except (RedisError, OSError, StoreUnavailableError) as exc:
            self._lost(exc)
            return
        tasks = [
            asyncio.ensure_future(self._write(conn, sharded)),
            asyncio.ensure_future(self._read(conn)),
            asyncio.ensure_future(self._ping()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                failure = task.exception()
                if failure is not None:
                    self._lost(failure)
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await conn.disconnect(nowait=True)

    async def _write(self, conn: AbstractConnection, sharded: bool) -> None:
        prefix = "S" if sharded else ""
        while True:
            action, name = await self._commands.get()
            if action == "ping":
                await conn.send_command("PING", check_health=False)
            else:
                command = f"{prefix}{action.upper()}"
                await conn.send_command(command, name, check_health=False)

    async def _ping(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL)
            if self._pong_due is not None and loop.time() > self._pong_due:
                raise ConnectionError("Redis did not answer PING in time")
            if self._pong_due is None:
                self._pong_due = loop.time() + PING_INTERVAL
                self._commands.put_nowait(("ping", ""))

    async def _read(self, conn: AbstractConnection) -> None:
        while True:
            # push_request: under RESP3 (redis-py's default protocol may be 3) the
            # messages are push replies, which redis-py would otherwise swallow.
            reply = await conn.read_response(
                disable_decoding=True, timeout=math.inf, push_request=True
            )
            if not isinstance(reply, list):  # +PONG outside subscribed mode
                self._pong_due = None
                continue
            kind = reply[0].lower()
            if kind in (b"smessage", b"message"):
                self._on_message(reply[1], reply[2])
            elif kind in (b"ssubscribe", b"subscribe"):
                self._on_confirmed(reply[1], subscribed=True)
            elif kind in (b"sunsubscribe", b"unsubscribe"):
                self._on_confirmed(reply[1], subscribed=False)
            elif kind == b"pong":
                self._pong_due = None

    def _on_confirmed(self, name: bytes, *, subscribed: bool) -> None:
        channel = self._by_name.get(name)
        if channel is None:
            return
        if not subscribed and not channel.busy and channel.subscribed:
            # Not asked for: the slot moved, and so did its messages. Those published
            # before the subscribers resubscribe are found by their backfill only.
            self._fail_channel(channel, LOST_MESSAGE)
            if self._on_lost is not None:
                self._on_lost()
            return
        channel.busy = False
        channel.subscribed = subscribed
        if not subscribed:
            channel.last = -1
        if subscribed and channel.subscribers:
            ready, channel.ready = channel.ready, None
            if ready is not None and not ready.done():
                ready.set_result(None)
        self._sync(channel)

    def _on_message(self, name: bytes, payload: bytes) -> None:
        channel = self._by_name.get(name)
        if channel is None or not channel.subscribers:
            return
        try:
            event = parse_message(channel.key, payload)
        except ValueError:
            logger.warning("ignored a malformed message on Redis channel %r", name)
            return
        # Redis delivers one channel's messages in publish order; this only guards
        # against seeing an event twice (say, across a resubscription).
        if event.timestamp <= channel.last:
            return
        channel.last = event.timestamp
        # Copy: a subscriber cut off for a full buffer unsubscribes meanwhile.
        for subscriber in list(channel.subscribers):
            subscriber.deliver(event)

    # losing Redis

    def _lost(self, exc: BaseException) -> None:
        if not self._closed:
            logger.warning("lost the Redis pub/sub link: %s", exc)
        self._link = None
        self._pong_due = None
        self._commands = asyncio.Queue()
        self._fail_all(LOST_MESSAGE)
        if self._on_lost is not None and not self._closed:
            self._on_lost()

    def _fail_all(self, message: str) -> None:
        for channel in list(self._channels.values()):
            self._fail_channel(channel, message)

    def _fail_channel(self, channel: _Channel, message: str) -> None:
        self._forget(channel)
        channel.subscribed = channel.busy = False
        ready, channel.ready = channel.ready, None
        if ready is not None and not ready.done():
            ready.set_exception(StoreUnavailableError(message, 503))
            ready.exception()  # retrieved: nobody may be waiting any more
        for subscriber in list(channel.subscribers):
            subscriber.fail(message)
        channel.subscribers.clear()
