"""
The shipping engine's counters (``BatchEngine.stats()``) as OpenTelemetry metrics.

``observe_engine(meter, engine)`` registers observable instruments on your meter;
the SDK's metric reader calls them at each collection, reading one ``stats()``
snapshot per instrument. Needs the ``otel`` extra. The instruments are listed in
docs/how-to/operate.md#operate-engine-metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..engine import BatchEngine, EngineStats

__all__ = ["observe_engine"]


def observe_engine(
    meter: Meter,
    engine: BatchEngine,
    *,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """
    Publish *engine*'s counters through *meter*; call once per engine.

    Args:
        meter: From your ``MeterProvider`` (``metrics.get_meter(__name__)``).
        engine: The engine to read, e.g. ``handler.engine``.
        attributes: Added to every observation, to tell engines apart.
    """
    attrs = dict(attributes or {})

    def observe(
        read: Callable[[EngineStats], float],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(engine.stats()), attrs)]

        return callback

    def dropped(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {**attrs, "reason": reason})
            for reason, count in sorted(engine.stats().dropped.items())
        ]

    meter.create_observable_counter(
        "cse.engine.accepted",
        callbacks=[observe(lambda s: s.queued)],
        unit="{item}",
        description="Items submit() accepted since the engine started.",
    )
    meter.create_observable_counter(
        "cse.engine.sent",
        callbacks=[observe(lambda s: s.sent)],
        unit="{event}",
        description="Events the gateway acknowledged.",
    )
    meter.create_observable_counter(
        "cse.engine.retries",
        callbacks=[observe(lambda s: s.retried)],
        unit="{attempt}",
        description="Send attempts repeated after a retryable failure.",
    )
    meter.create_observable_counter(
        "cse.engine.dropped",
        callbacks=[dropped],
        unit="{item}",
        description="Items lost, by reason (queue_full, send_failed, too_large...).",
    )
    meter.create_observable_up_down_counter(
        "cse.engine.in_flight",
        callbacks=[observe(lambda s: s.in_flight)],
        unit="{event}",
        description="Events handed to the exporter and not yet answered.",
    )
    meter.create_observable_gauge(
        "cse.engine.queue.items",
        callbacks=[observe(lambda s: s.queue_depth)],
        unit="{item}",
        description="Items waiting in the queue.",
    )
    meter.create_observable_gauge(
        "cse.engine.queue.size",
        callbacks=[observe(lambda s: s.queue_bytes)],
        unit="By",
        description="Estimated size of the items waiting in the queue.",
    )
