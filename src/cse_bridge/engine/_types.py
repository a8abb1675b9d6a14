"""
The engine's data: what producers submit, what sinks send, what they answer.

Producers (the logging handler, structlog, the OpenTelemetry exporters) build an
``EventItem`` on the application thread; the engine's worker turns it into JSON and
hands batches of ``EncodedEvent`` to a ``Sink``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

__all__ = ["EncodedEvent", "EngineStats", "EventItem", "SendResult", "Sink"]


class EventItem(NamedTuple):
    """
    One event waiting to be shipped, as a producer snapshotted it.

    ``data`` is a snapshot the producer will not touch again; it need not be JSON-safe
    yet: the worker converts it (``repr`` for what is not JSON-able), so one bad value
    never reaches the application thread or sinks a batch. A named tuple, not a
    frozen dataclass: every record makes one on the application thread, and a tuple
    is built in half the time (about 0.5 us less per record).
    """

    type: str
    """The event type (``log.info``, ``trace.span``, ...)."""
    data: Mapping[str, object]
    """The event's data, as the producer snapshotted it."""
    size_hint: int = 256
    """A cheap estimate of the encoded size in bytes, for the queue's byte bound."""


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event ready for the wire: its type and its complete ``POST /events`` body."""

    type: str
    body: bytes
    items: int = 1
    """Items it carries (N for a packed ``log.batch``, 0 in a self-report)."""
    attempts: int = 0
    """Sends tried so far; sinks bound the retries of non-transient failures by it."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """
    What a sink did with a batch.

    Every event of the batch is accounted for exactly once: sent, dropped with a
    reason, or handed back to be retried later.
    """

    sent: int = 0
    """Events the gateway acknowledged (events; ``EncodedEvent.items`` says items)."""
    dropped: Mapping[str, int] = field(default_factory=dict)
    """Items given up on, by reason (``rejected``, ``send_failed``, ...)."""
    dropped_events: Sequence[EncodedEvent] = ()
    """The events given up on, so the engine can count the items they carried."""
    retry: Sequence[EncodedEvent] = ()
    """Events the sink could not send now and the engine should send again."""
    retry_after: float | None = None
    """Seconds every sender should pause (``Retry-After``, or backoff), if any."""
    error: str | None = None
    """The last error, for ``EngineStats.last_error`` and rate-limited diagnostics."""
    drop_errors: Mapping[str, str] = field(default_factory=dict)
    """For each reason in ``dropped``, the error that caused it (for report lines)."""
    auth_failed: bool = False
    """True when the gateway refused the credentials; pause until they are replaced."""
    permanent: str | None = None
    """A setup error the operator must fix (wrong URL, TLS, not a gateway), said as
    a sentence naming the fix; the events are in ``retry`` and retried slowly."""


class Sink(Protocol):
    """Where the engine's worker delivers batches. Only the worker calls it."""

    def send(self, batch: Sequence[EncodedEvent], deadline: float) -> SendResult:
        """Send *batch*, giving up at monotonic time *deadline*; never raises."""

    def close(self, timeout: float) -> None:
        """Release connections, within *timeout* seconds; never raises."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """A snapshot of an engine's counters (``BatchEngine.stats()``)."""

    queued: int
    """Items accepted by ``submit`` since the engine started."""
    sent: int
    """Events the gateway acknowledged."""
    retried: int
    """Send attempts repeated after a retryable failure."""
    dropped: Mapping[str, int]
    """Items lost by reason (queue_full, after_shutdown, send_failed, too_large...)."""
    in_flight: int
    """Events handed to the sink and not yet answered."""
    queue_depth: int
    """Items waiting in the queue now."""
    queue_bytes: int
    """Their estimated size in bytes."""
    last_error: str | None
    """The most recent send error, if any."""
    spooled: int = 0
    """Items written to the spool; with ``sent`` and ``dropped`` they account for
    every item ``queued`` once the engine drained (docs/how-to/spool.md)."""
    spooled_by: Mapping[str, int] = field(default_factory=dict)
    """The same, by why they went there (``exit``, ``outage`` or ``overflow``)."""
    spool_replayed: int = 0
    """Spooled items (of any process) replayed and acknowledged by the gateway."""
    spool_refused: int = 0
    """Spooled items replayed that the gateway refused for good."""
    spool_evicted: int = 0
    """Spooled items removed with the oldest segments to stay under the bound."""
    spool_damaged: int = 0
    """Damaged stretches of segments skipped while replaying (torn or corrupted)."""
    spool_error: str | None = None
    """Why the spool last could not take an event, if it ever could not."""
