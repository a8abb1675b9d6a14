"""
The shipping engine's counters (``BatchEngine.stats()``) as Prometheus metrics.

Register an ``EngineCollector`` on your application's own prometheus-client registry
(the global ``REGISTRY`` or a private one); every scrape reads one ``stats()``
snapshot, so shipping pays nothing for it. Needs prometheus-client, which the
application brings (or the ``gateway``/``forward`` extras). The names are listed in
docs/how-to/operate.md#operate-engine-metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..engine import BatchEngine

__all__ = ["EngineCollector"]


class EngineCollector:
    """
    Export one engine's counters; register it once per engine.

    ``collect`` is called by prometheus-client on the scraping thread; ``stats()``
    is safe from any thread and O(1).

    Args:
        engine: The engine to read, e.g. ``handler.engine`` or
            ``get_shared_engine()``.
        labels: Constant labels for every sample, to tell engines apart
            (e.g. ``{"engine": "audit"}``); none by default.
    """

    def __init__(
        self, engine: BatchEngine, *, labels: Mapping[str, str] | None = None
    ) -> None:
        self._engine = engine
        self._names = list(labels or {})
        self._values = [str(v) for v in (labels or {}).values()]

    def collect(self) -> Iterator[Metric]:
        """Yield one snapshot of the engine's counters."""
        stats = self._engine.stats()
        names, values = self._names, self._values

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=names)
            family.add_metric(values, value)
            return family

        yield counter(
            "cse_engine_accepted_items",
            "Items submit() accepted since the engine started.",
            stats.queued,
        )
        yield counter(
            "cse_engine_sent_events", "Events the gateway acknowledged.", stats.sent
        )
        yield counter(
            "cse_engine_retries",
            "Send attempts repeated after a retryable failure.",
            stats.retried,
        )
        dropped = CounterMetricFamily(
            "cse_engine_dropped_items",
            "Items lost, by reason (queue_full, send_failed, too_large...).",
            labels=[*names, "reason"],
        )
        for reason, count in sorted(stats.dropped.items()):
            dropped.add_metric([*values, reason], count)
        yield dropped
        spooled = CounterMetricFamily(
            "cse_engine_spooled_items",
            "Items written to the spool, by why (exit, outage, overflow).",
            labels=[*names, "reason"],
        )
        for reason, count in sorted(stats.spooled_by.items()):
            spooled.add_metric([*values, reason], count)
        yield spooled
        yield counter(
            "cse_engine_spool_replayed_events",
            "Spooled items replayed and acknowledged by the gateway.",
            stats.spool_replayed,
        )
        yield counter(
            "cse_engine_spool_refused_events",
            "Spooled items replayed that the gateway refused for good.",
            stats.spool_refused,
        )
        yield counter(
            "cse_engine_spool_evicted_items",
            "Spooled items removed with the oldest segments (the spool's bound).",
            stats.spool_evicted,
        )
        yield counter(
            "cse_engine_spool_damaged_stretches",
            "Torn or corrupted stretches of spool segments skipped on replay.",
            stats.spool_damaged,
        )
        yield gauge(
            "cse_engine_in_flight_events",
            "Events handed to the exporter and not yet answered.",
            stats.in_flight,
        )
        yield gauge(
            "cse_engine_queue_items", "Items waiting in the queue.", stats.queue_depth
        )
        yield gauge(
            "cse_engine_queue_bytes",
            "Estimated size of the items waiting in the queue.",
            stats.queue_bytes,
        )
