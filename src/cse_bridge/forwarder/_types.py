"""
The seams of the forwarder: the ``Sink`` protocol and the ``ForwarderStats`` snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..models import SandboxEvent

__all__ = ["ForwarderStats", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """
    Where forwarded events go; the forwarder calls it from its one sink thread only.

    ``deliver`` may block (a slow sink makes the hand-off queue fill up, never the
    socket reader stall); it should not raise, and an exception it raises is counted
    as a sink error. ``flush`` and ``close`` are bounded by their *timeout*.
    """

    name: str
    """Short name for the status line and diagnostics (``logging``, ``otlp``...)."""

    def deliver(self, event: SandboxEvent) -> None:
        """Hand one event on (blocking is allowed; only the sink thread calls it)."""

    def flush(self, timeout: float) -> bool:
        """Make what was delivered durable or sent; True if done within *timeout*."""

    def close(self, timeout: float) -> None:
        """Flush within *timeout* and release resources; idempotent."""

    def drops(self) -> Mapping[str, int]:
        """Events this sink lost, by reason (``send_failed``...); any thread."""


@dataclass(frozen=True, slots=True)
class ForwarderStats:
    """A snapshot of the forwarder's counters (``Forwarder.stats()``)."""

    received: int = 0
    """Events the subscribers handed over (history and live)."""
    delivered: int = 0
    """Events passed to every sink."""
    duplicates: int = 0
    """Events skipped because their id was delivered already."""
    overflow: int = 0
    """Events the full hand-off queue turned away (the sinks were too slow)."""
    resynced: int = 0
    """Events delivered by re-reading the store after an overflow (needs an API key)."""
    lost: int = 0
    """Overflowed events that cannot be re-read, because no API key was given."""
    sink_errors: int = 0
    """Exceptions a sink raised from ``deliver``."""
    queued: int = 0
    """Events waiting in the hand-off queue."""
    lag_ms: int | None = None
    """Age of the newest delivered event when it was delivered, in milliseconds."""
    sink_drops: Mapping[str, int] = field(default_factory=dict)
    """Drops the sinks counted, as ``"<sink>.<reason>"``."""
    newest_delivered_ms: int | None = None
    """Timestamp of the newest event delivered so far (ms since the epoch)."""
    reconnects: int = 0
    """Pub/sub connections reopened after a drop (every sandbox together)."""
    delivered_by_sink: Mapping[str, int] = field(default_factory=dict)
    """Events each sink took without raising, by sink label (the sink's name,
    numbered when two sinks share one: ``jsonl-1``, ``jsonl-2``)."""
    errors_by_sink: Mapping[str, int] = field(default_factory=dict)
    """Exceptions each sink raised from ``deliver``, by sink label."""

    @property
    def dropped(self) -> int:
        """Every event lost (overflow that cannot be re-read, plus the sinks' drops)."""
        return self.lost + sum(self.sink_drops.values())
