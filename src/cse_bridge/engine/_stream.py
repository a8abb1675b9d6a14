"""
``BatchStream``: the events of one ``sink.send``, taken off the queue and encoded only
when the sink is ready to post the next one.

The events sink pulls the next body when a connection frees up, so the worker
encodes (and packs) body N+1 while bodies up to N are in flight: the gateway works on
the other core meanwhile. Taking items only as they are needed is also the engine's
natural batching: whatever arrived while earlier requests were in flight goes into
the next event (a bigger ``log.batch`` when packing).

Runs on the worker thread only, like every other part of a send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from ._encode import (
    MAX_EVENT_BYTES,
    PACK_OVERHEAD,
    PACKED_TYPE,
    encode_body,
    pack_bodies,
)
from ._types import EncodedEvent, EventItem

if TYPE_CHECKING:
    from ._engine import BatchEngine

__all__ = ["PACKED_CALL_BYTES", "BatchStream"]

PACKED_CALL_BYTES: Final = 16 * MAX_EVENT_BYTES
"""Encoded bytes one packed send carries at most (about 16 full ``log.batch``)."""
_CHUNK: Final = 256
"""Items taken off the queue at once: one lock round trip per chunk, not per item."""


class BatchStream:
    """
    The events of one send: *first* (a ``bridge.dropped`` report), then the queue's.

    Bounded per send by ``max_batch_size`` events and ``max_batch_bytes`` of size
    hints (``PACKED_CALL_BYTES`` of bodies when packing). Iterate it once; what was
    taken off the queue but not yet handed out is ``leftover()``.
    """

    def __init__(self, engine: BatchEngine, first: list[EncodedEvent]) -> None:
        self.engine = engine
        self.first = first
        self.packing = engine.pack > 1
        self.end = engine.removed
        """The sequence number of the last item taken off the queue."""
        self._buffer: deque[EventItem] = deque()
        self._items_left = engine.max_batch_size
        self._bytes_left = PACKED_CALL_BYTES if self.packing else engine.max_batch_bytes
        self._closed = False

    def __iter__(self) -> Iterator[EncodedEvent]:
        yield from self.first
        yield from self._packed() if self.packing else self._single()

    def leftover(self) -> list[EncodedEvent]:
        """Stop taking; return the items already taken, encoded, in order."""
        self._closed = True
        return list(self._packed() if self.packing else self._single())

    def _more(self) -> bool:
        """True if an item is buffered, taking the next chunk if the budget allows."""
        if self._buffer:
            return True
        if self._closed or self._items_left <= 0 or self._bytes_left <= 0:
            return False
        most = min(_CHUNK, self._items_left)
        limit = self._bytes_left if not self.packing else self.engine.max_queue_bytes
        items, end = self.engine.take(most, limit)
        if not items:
            return False
        self.end = end
        if not self.packing:
            self._items_left -= len(items)
            self._bytes_left -= sum(item.size_hint for item in items)
        self._buffer.extend(items)
        return True

    def _body(self, item: EventItem) -> bytes | None:
        try:
            return encode_body(item)
        except Exception as exc:  # one bad item never sinks the batch
            engine = self.engine
            with engine.lock:  # the counters are shared with submit and stats
                if not engine.abandoned:
                    engine.in_flight -= 1
                    engine.dropped["encode_failed"] += 1
                    engine.unreported["encode_failed"] += 1
                    engine.drop_errors["encode_failed"] = f"{type(exc).__name__}: {exc}"
            return None

    def _single(self) -> Iterator[EncodedEvent]:
        while self._more():
            item = self._buffer.popleft()
            body = self._body(item)
            if body is not None:
                yield EncodedEvent(item.type, body)

    def _packed(self) -> Iterator[EncodedEvent]:
        # Invariant: `parts` is empty at every yield, so leftover() can run a fresh
        # generator over the buffer while this one is suspended.
        pack, room = self.engine.pack, MAX_EVENT_BYTES - PACK_OVERHEAD
        parts: list[bytes] = []
        size, first_type = 0, ""
        while self._more():
            item = self._buffer.popleft()
            event_type = item.type
            body = self._body(item)
            if body is None:
                continue
            alone = not event_type.startswith("log.") or event_type == PACKED_TYPE
            if parts and (alone or len(parts) >= pack or size + len(body) >= room):
                yield self._close(parts, first_type)
                parts, size = [], 0
            if alone or len(body) >= room:  # not a record, or too big to share
                yield self._count(EncodedEvent(event_type, body))
                continue
            if not parts:
                first_type = event_type
            parts.append(body)
            size += len(body) + 1
        if parts:
            yield self._close(parts, first_type)

    def _close(self, parts: list[bytes], first_type: str) -> EncodedEvent:
        # A lone record goes out as itself, as without packing.
        if len(parts) == 1:
            return self._count(EncodedEvent(first_type, parts[0]))
        return self._count(pack_bodies(parts))

    def _count(self, event: EncodedEvent) -> EncodedEvent:
        self._items_left -= 1
        self._bytes_left -= len(event.body)
        return event
