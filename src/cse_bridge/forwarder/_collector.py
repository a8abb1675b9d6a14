"""
``ForwarderCollector``: a forwarder's counters as Prometheus metrics.

Read from ``Forwarder.stats()`` at every scrape, so delivery itself pays nothing for
them. The names and their meaning are listed in docs/how-to/operate.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._core import Forwarder

__all__ = ["ForwarderCollector"]


class ForwarderCollector:
    """
    Register on a prometheus-client registry to export *forwarder*'s counters.

    Args:
        forwarder: The forwarder to read.
        clock: Unix time in seconds, for the lag; injectable for tests.
    """

    def __init__(
        self, forwarder: Forwarder, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._forwarder = forwarder
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Yield one snapshot of the counters (prometheus-client calls this)."""
        stats = self._forwarder.stats()
        yield CounterMetricFamily(
            "cse_forwarder_events_received",
            "Events the subscribers handed over (history and live).",
            value=stats.received,
        )
        delivered = CounterMetricFamily(
            "cse_forwarder_events_delivered",
            "Events a sink took without raising, by sink.",
            labels=["sink"],
        )
        errors = CounterMetricFamily(
            "cse_forwarder_sink_errors",
            "Exceptions a sink raised while taking an event, by sink.",
            labels=["sink"],
        )
        for sink, count in stats.delivered_by_sink.items():
            delivered.add_metric([sink], count)
        for sink, count in stats.errors_by_sink.items():
            errors.add_metric([sink], count)
        yield delivered
        yield errors
        dropped = CounterMetricFamily(
            "cse_forwarder_sink_dropped_events",
            "Events a sink lost after taking them, by sink name and reason.",
            labels=["sink", "reason"],
        )
        for key, count in stats.sink_drops.items():
            sink, _, reason = key.partition(".")
            dropped.add_metric([sink, reason], count)
        yield dropped
        yield CounterMetricFamily(
            "cse_forwarder_duplicates_suppressed",
            "Events skipped because their id was delivered already.",
            value=stats.duplicates,
        )
        yield CounterMetricFamily(
            "cse_forwarder_overflowed_events",
            "Events the full hand-off queue turned away (the sinks were too slow).",
            value=stats.overflow,
        )
        yield CounterMetricFamily(
            "cse_forwarder_reread_events",
            "Events delivered by re-reading the store after an overflow.",
            value=stats.resynced,
        )
        yield CounterMetricFamily(
            "cse_forwarder_lost_events",
            "Overflowed events that cannot be re-read (no API key).",
            value=stats.lost,
        )
        yield CounterMetricFamily(
            "cse_forwarder_reconnects",
            "Pub/sub connections reopened after a drop.",
            value=stats.reconnects,
        )
        yield GaugeMetricFamily(
            "cse_forwarder_queued_events",
            "Events waiting in the hand-off queue.",
            value=stats.queued,
        )
        newest = stats.newest_delivered_ms
        if newest is not None:  # absent until the first delivery: no lag to speak of
            yield GaugeMetricFamily(
                "cse_forwarder_newest_delivered_timestamp_seconds",
                "Timestamp of the newest event delivered (Unix seconds).",
                value=newest / 1000,
            )
            yield GaugeMetricFamily(
                "cse_forwarder_lag_seconds",
                "Now minus the newest delivered event's timestamp.",
                value=max(0.0, self._clock() - newest / 1000),
            )
        yield GaugeMetricFamily(
            "cse_forwarder_up",
            "1 while the forwarder runs (its sink thread lives), else 0.",
            value=int(self._forwarder.running),
        )
