"""
``memory://``: events in process memory, lost when the gateway stops.

The fastest store, for tests and throwaway demos. Each sandbox keeps a list in
timestamp order; reads find their start with a binary search.
"""

from __future__ import annotations

from bisect import bisect_right

from ._base import (
    DEFAULT_RETENTION,
    Broker,
    LocalBroker,
    SandboxKey,
    StoredEvent,
    TimestampAllocator,
    encode_event_json,
    new_event_id,
)

__all__ = ["MemoryStore", "select_events"]

_new_tuple = tuple.__new__
"""Makes a ``StoredEvent`` past its ``__new__``, which is Python code: half the cost."""


def select_events(
    events: list[StoredEvent], *, event_type: str | None, since: int | None, limit: int
) -> list[StoredEvent]:
    """
    Apply the query semantics of ``EventStore.query`` to *events* (ascending by time).

    Runs in O(log n + k) without a type filter, where k is what it returns.
    """
    if since is not None:
        start = bisect_right(events, since, key=lambda e: e.timestamp)
        if event_type is None:
            return events[start : start + limit]
        out: list[StoredEvent] = []
        for i in range(start, len(events)):
            if events[i].type == event_type:
                out.append(events[i])
                if len(out) >= limit:
                    break
        return out
    if event_type is None:
        return events[-limit:] if limit else []
    newest: list[StoredEvent] = []
    for i in range(len(events) - 1, -1, -1):
        if events[i].type == event_type:
            newest.append(events[i])
            if len(newest) >= limit:
                break
    newest.reverse()
    return newest


class MemoryStore:
    """
    Keeps up to *retention* events per sandbox in memory.

    Args:
        retention: Events kept per sandbox; the oldest go first.
    """

    def __init__(self, *, retention: int = DEFAULT_RETENTION) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self._retention = retention
        # Trim in chunks so that appending stays amortised O(1) at the cap.
        self._slack = max(1, retention // 8)
        self._events: dict[SandboxKey, list[StoredEvent]] = {}
        self._clock = TimestampAllocator()

    async def open(self) -> None:
        """Nothing to open."""

    async def append(
        self, key: SandboxKey, event_type: str, data_json: str
    ) -> StoredEvent:
        """Store one event and return it with its id and timestamp."""
        timestamp = self._clock.next(key)
        event_id = new_event_id()
        event = _new_tuple(
            StoredEvent,
            (
                event_id,
                key[0],
                key[1],
                event_type,
                timestamp,
                encode_event_json(event_id, key, event_type, data_json, timestamp),
            ),
        )
        events = self._events.setdefault(key, [])
        events.append(event)
        if len(events) > self._retention + self._slack:
            del events[: len(events) - self._retention]
        return event

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """Return events of *key* as ``EventStore.query`` defines."""
        events = self._events.get(key)
        if not events:
            return []
        if len(events) > self._retention:
            events = events[-self._retention :]
        return select_events(events, event_type=event_type, since=since, limit=limit)

    def create_broker(self) -> Broker:
        """Return an in-process broker."""
        return LocalBroker()

    async def close(self) -> None:
        """Drop every event."""
        self._events.clear()
