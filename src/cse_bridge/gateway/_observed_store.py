"""
``ObservedStore``: the store as the HTTP API sees it, timed and counted for /metrics.

A wrapper rather than code in every store: the three stores stay unaware of Prometheus,
and whatever a store raises is counted once, here, before the HTTP layer answers it.
"""

from __future__ import annotations

import time

from ..errors import StoreUnavailableError
from ._metrics import GatewayMetrics
from .stores import Broker, EventStore, SandboxKey, StoredEvent

__all__ = ["ObservedStore"]


class ObservedStore:
    """
    Delegates to *store*; records each call's duration, result and failure.

    Args:
        store: The store that does the work.
        metrics: Where durations, stored events and bytes, and errors are counted.
    """

    def __init__(self, store: EventStore, metrics: GatewayMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self._append_time = metrics.store_duration["append"]
        self._query_time = metrics.store_duration["query"]

    async def open(self) -> None:
        """Open the store."""
        await self._store.open()

    async def append(
        self, key: SandboxKey, event_type: str, data_json: str
    ) -> StoredEvent:
        """Store one event, timed; count it and its bytes once acknowledged."""
        started = time.perf_counter()
        try:
            event = await self._store.append(key, event_type, data_json)
        except Exception as exc:
            self._count_error("append", exc)
            raise
        finally:
            self._append_time.observe(time.perf_counter() - started)
        self._metrics.count_stored(len(event.json))
        return event

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """Read events, timed."""
        started = time.perf_counter()
        try:
            return await self._store.query(
                key, event_type=event_type, since=since, limit=limit
            )
        except Exception as exc:
            self._count_error("query", exc)
            raise
        finally:
            self._query_time.observe(time.perf_counter() - started)

    def create_broker(self) -> Broker:
        """The store's own broker."""
        return self._store.create_broker()

    async def close(self) -> None:
        """Close the store."""
        await self._store.close()

    def _count_error(self, operation: str, exc: Exception) -> None:
        kind = "unavailable" if isinstance(exc, StoreUnavailableError) else "error"
        self._metrics.store_errors.labels(operation, kind).inc()
