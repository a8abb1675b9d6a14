"""
The shipping engine's counters (``BatchEngine.stats()``) as OpenTelemetry metrics.

``observe_engine(meter, engine)`` registers observable instruments on your meter;
the SDK's metric reader calls them at each collection, reading one ``stats()``
snapshot per engine and instrument. Several engines may share one meter (tell them
apart with ``attributes``): an instrument name exists once per meter, so the
instruments are made on the first call and every later engine joins them. Needs the
``otel`` extra. The instruments are listed in
docs/how-to/operate.md#operate-engine-metrics.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..engine import BatchEngine, EngineStats

__all__ = ["observe_engine"]

_Observed = list[tuple["weakref.ref[BatchEngine]", dict[str, str]]]
_observed: weakref.WeakKeyDictionary[Meter, _Observed] = weakref.WeakKeyDictionary()
"""The engines each meter reports, weakly held: a collected engine stops reporting."""


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
    observed = _observed.get(meter)
    entry = (weakref.ref(engine), dict(attributes or {}))
    if observed is not None:
        observed.append(entry)
        return
    observed = _observed[meter] = [entry]
    _make_instruments(meter, observed)


def _make_instruments(meter: Meter, observed: _Observed) -> None:
    def snapshots() -> list[tuple[EngineStats, dict[str, str]]]:
        live = [(ref(), attrs) for ref, attrs in observed]
        return [(engine.stats(), attrs) for engine, attrs in live if engine is not None]

    def each(
        read: Callable[[EngineStats], float],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(stats), attrs) for stats, attrs in snapshots()]

        return callback

    def by_reason(
        read: Callable[[EngineStats], Mapping[str, int]],
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(count, {**attrs, "reason": reason})
                for stats, attrs in snapshots()
                for reason, count in sorted(read(stats).items())
            ]

        return callback

    meter.create_observable_counter(
        "cse.engine.accepted",
        callbacks=[each(lambda s: s.queued)],
        unit="{item}",
        description="Items submit() accepted since the engine started.",
    )
    meter.create_observable_counter(
        "cse.engine.sent",
        callbacks=[each(lambda s: s.sent)],
        unit="{event}",
        description="Events the gateway acknowledged.",
    )
    meter.create_observable_counter(
        "cse.engine.retries",
        callbacks=[each(lambda s: s.retried)],
        unit="{attempt}",
        description="Send attempts repeated after a retryable failure.",
    )
    meter.create_observable_counter(
        "cse.engine.dropped",
        callbacks=[by_reason(lambda s: s.dropped)],
        unit="{item}",
        description="Items lost, by reason (queue_full, send_failed, too_large...).",
    )
    meter.create_observable_counter(
        "cse.engine.spooled",
        callbacks=[by_reason(lambda s: s.spooled_by)],
        unit="{item}",
        description="Items written to the spool, by why (exit, outage, overflow).",
    )
    meter.create_observable_counter(
        "cse.engine.spool.replayed",
        callbacks=[each(lambda s: s.spool_replayed)],
        unit="{event}",
        description="Spooled items replayed and acknowledged by the gateway.",
    )
    meter.create_observable_counter(
        "cse.engine.spool.refused",
        callbacks=[each(lambda s: s.spool_refused)],
        unit="{event}",
        description="Spooled items replayed that the gateway refused for good.",
    )
    meter.create_observable_counter(
        "cse.engine.spool.evicted",
        callbacks=[each(lambda s: s.spool_evicted)],
        unit="{item}",
        description="Spooled items removed with the oldest segments (the bound).",
    )
    meter.create_observable_counter(
        "cse.engine.spool.damaged",
        callbacks=[each(lambda s: s.spool_damaged)],
        unit="{stretch}",
        description="Torn or corrupted stretches of spool segments skipped.",
    )
    meter.create_observable_up_down_counter(
        "cse.engine.in_flight",
        callbacks=[each(lambda s: s.in_flight)],
        unit="{event}",
        description="Events handed to the exporter and not yet answered.",
    )
    meter.create_observable_gauge(
        "cse.engine.queue.items",
        callbacks=[each(lambda s: s.queue_depth)],
        unit="{item}",
        description="Items waiting in the queue.",
    )
    meter.create_observable_gauge(
        "cse.engine.queue.size",
        callbacks=[each(lambda s: s.queue_bytes)],
        unit="By",
        description="Estimated size of the items waiting in the queue.",
    )
