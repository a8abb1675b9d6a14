"""
The storage interface every gateway store implements, and the in-process fan-out.

A store keeps events per sandbox and assigns each one its id and timestamp; a broker
delivers every stored event to the pub/sub subscribers of its sandbox, in order.
Stores and brokers run on the gateway's event loop: their synchronous methods must not
block it for long.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _quote
from typing import Final, NamedTuple, Protocol, TypeAlias

__all__ = [
    "DEFAULT_RETENTION",
    "Broker",
    "EventStore",
    "LocalBroker",
    "SandboxKey",
    "StoredEvent",
    "Subscriber",
    "TimestampAllocator",
    "encode_event_json",
    "new_event_id",
    "now_ms",
]

DEFAULT_RETENTION = 100_000
"""Events kept per sandbox before the oldest are dropped."""

SandboxKey: TypeAlias = tuple[int, str]
"""``(workspace_id, sandbox_id)``: sandboxes of different workspaces never mix."""


class StoredEvent(NamedTuple):
    """
    An event as the gateway keeps it: the fields it filters on, and its wire JSON.

    ``json`` is the complete SandboxEvent object text, encoded once at store time and
    reused by every read and every pub/sub push. Immutable; a named tuple rather than
    a frozen dataclass because one is made per stored event, and a frozen dataclass
    costs three times as much to make (each field goes through ``object.__setattr__``).
    """

    id: str
    workspace_id: int
    sandbox_id: str
    type: str
    timestamp: int
    json: str

    @property
    def key(self) -> SandboxKey:
        """The sandbox this event belongs to."""
        return (self.workspace_id, self.sandbox_id)


def encode_event_json(
    event_id: str, key: SandboxKey, event_type: str, data_json: str, timestamp: int
) -> str:
    """Return the SandboxEvent wire JSON; *data_json* is encoded JSON object text."""
    workspace_id, sandbox_id = key
    # encode_basestring_ascii is json.dumps's own string quoting minus its call
    # overhead (about 6x faster here); event ids are hex and need no quoting.
    return (
        f'{{"id":"{event_id}","sandboxId":{_quote(sandbox_id)},'
        f'"workspaceId":{workspace_id},"type":{_quote(event_type)},'
        f'"data":{data_json},"timestamp":{timestamp}}}'
    )


_ID_BATCH: Final = 256
"""Event ids drawn from one ``os.urandom`` call: one syscall per 256 events."""
_spare_ids: list[str] = []
# A forked child must never hand out the ids its parent holds too.
os.register_at_fork(after_in_child=_spare_ids.clear)


def new_event_id() -> str:
    """Return a new, globally unique event id (``evt_`` and 128 random bits in hex)."""
    try:
        return _spare_ids.pop()  # atomic: two threads never get the same id
    except IndexError:
        raw = os.urandom(16 * _ID_BATCH).hex()
        _spare_ids.extend(["evt_" + raw[i : i + 32] for i in range(0, len(raw), 32)])
        return _spare_ids.pop()


_NS_PER_MS: Final = 1_000_000
"""Nanoseconds per millisecond (``now_ms`` and its inline copy in ``next``)."""


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch."""
    return time.time_ns() // _NS_PER_MS


class TimestampAllocator:
    """
    Hands out unique, strictly increasing millisecond timestamps per sandbox.

    Why: ``since`` means strictly after a millisecond, so two events stored in the same
    millisecond would make a reader paging with ``since=<last timestamp>`` skip one.
    Each sandbox's next timestamp is ``max(now, previous + 1)``: equal to the wall clock
    in normal use, and running at most a little ahead of it during bursts of more than
    1000 events per second into one sandbox. Every client, the official one included,
    then pages forward without loss or repetition.
    """

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._last: dict[SandboxKey, int] = {}

    def seed(self, key: SandboxKey, last: int) -> None:
        """Record *last* as the newest timestamp used for *key* (after a restart)."""
        if last > self._last.get(key, -1):
            self._last[key] = last

    def known(self, key: SandboxKey) -> bool:
        """True once *key* has been seeded or allocated in this process."""
        return key in self._last

    def next(self, key: SandboxKey) -> int:
        """Return the next timestamp for *key*."""
        clock = self._clock
        # now_ms() inline: one Python call fewer for every stored event.
        now = time.time_ns() // _NS_PER_MS if clock is now_ms else clock()
        last = self._last.get(key)
        ts = now if last is None or now > last else last + 1
        self._last[key] = ts
        return ts


class Subscriber(Protocol):
    """A pub/sub connection's receiving end."""

    def deliver(self, event: StoredEvent) -> None:
        """Queue *event* for the connection; called on the loop, must not block."""

    def fail(self, message: str) -> None:
        """
        Tell the client ``-ERR message`` and close: the broker lost its event source.

        Clients reconnect and backfill; called on the loop, must not block.
        """


class Broker(Protocol):
    """Delivers each stored event to the subscribers of its sandbox, in store order."""

    def subscribe(
        self, key: SandboxKey, subscriber: Subscriber
    ) -> asyncio.Future[None] | None:
        """
        Start delivering *key*'s events to *subscriber*.

        Returns:
            None when delivery is active at once (in-process brokers); otherwise a
            future that resolves once it is, or fails with
            ``cse_bridge.errors.StoreUnavailableError``. Until it resolves the
            subscriber may get events already; it must not tell its client it is
            subscribed before.
        """

    def unsubscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Stop delivering to *subscriber*; unknown pairs are ignored."""

    def subscriber_count(self, key: SandboxKey) -> int:
        """How many subscribers *key* has in this process."""

    async def publish(self, event: StoredEvent) -> None:
        """Deliver *event* to its sandbox's subscribers (in this or every process)."""

    async def close(self) -> None:
        """Release what the broker holds."""


class LocalBroker:
    """In-process fan-out for the embedded stores: one process, one event log."""

    def __init__(self) -> None:
        self._subscribers: dict[SandboxKey, dict[Subscriber, None]] = {}

    def subscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Start delivering *key*'s events to *subscriber*."""
        self._subscribers.setdefault(key, {})[subscriber] = None

    def unsubscribe(self, key: SandboxKey, subscriber: Subscriber) -> None:
        """Stop delivering to *subscriber*; unknown pairs are ignored."""
        subs = self._subscribers.get(key)
        if subs is not None:
            subs.pop(subscriber, None)
            if not subs:
                del self._subscribers[key]

    def subscriber_count(self, key: SandboxKey) -> int:
        """How many subscribers *key* has."""
        return len(self._subscribers.get(key, ()))

    async def publish(self, event: StoredEvent) -> None:
        """Deliver *event* synchronously to every subscriber of its sandbox."""
        subs = self._subscribers.get((event.workspace_id, event.sandbox_id))
        if subs:
            # Copy: a subscriber cut off for a full buffer unsubscribes meanwhile.
            for subscriber in list(subs):
                subscriber.deliver(event)

    async def close(self) -> None:
        """Forget every subscriber."""
        self._subscribers.clear()


class EventStore(Protocol):
    """
    Where a gateway keeps events: ``memory://``, ``sqlite://`` and Redis.

    ``append`` assigns the id and a per-sandbox unique, increasing timestamp; once it
    returns, the event is acknowledged and must survive whatever the store promises to
    survive (a restart, for sqlite).
    """

    async def open(self) -> None:
        """Connect or create what the store needs; called once before use."""

    async def append(
        self, key: SandboxKey, event_type: str, data_json: str
    ) -> StoredEvent:
        """Store one event; *data_json* is the event's ``data`` as JSON object text."""

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """
        Return events of *key* in ascending timestamp order.

        With *since*: the first *limit* events whose timestamp is strictly greater.
        Without: the newest *limit* events. *event_type* filters by exact type.
        """

    def create_broker(self) -> Broker:
        """Return the fan-out that goes with this store."""

    async def close(self) -> None:
        """Flush and release everything; the store is not used afterwards."""
