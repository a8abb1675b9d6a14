"""
Where a span's application-thread time goes: the floor under ``bench/otel.py``.

``bench/otel.py`` times one span start and end on the application thread through each
pipeline. This script splits the time of its "processor packed" row into steps, side
by side in one run against the SDK's ``BatchSpanProcessor`` with the OTLP/HTTP
exporter (the baseline of ``bench/otel.py``'s application-thread panel). The
printed "+ floor" is a row's time over the SDK's own span:

- ``SDK span, no processor``: the SDK's own span, the floor of every pipeline.
- ``hold the SDK span``: ``on_end`` keeps the SDK's ``ReadableSpan`` in a deque, all
  that ``BatchSpanProcessor.on_end`` does on the application thread; its worker and
  exporter are left out.
- ``hold the SDK span, no GC``: the same with the garbage collector off during the
  burst: the difference to the row above is what the collector spends walking the
  spans a burst keeps alive.
- ``snapshot, discarded``: ``snapshot_span`` (``SpanSnapshot.of`` and the size
  estimate) on every span, the result thrown away: reading what the event needs
  through the SDK's public properties.
- ``snapshot, held``: the same, kept in a deque as the engine's queue keeps it.
- ``snapshot, held, no GC``: the same with the collector off during the burst.
- ``processor, worker parked``: ``EventsSpanProcessor`` on an engine with
  ``pack_spans=1000`` whose worker is blocked in a send (to a sink that hangs) from
  before the burst: the producer and the queue, with no worker competing for the GIL.
- ``processor packed``: the same engine posting to a local gateway, as
  ``bench/otel.py``'s "processor packed" row.
- ``batch+otlp``: ``BatchSpanProcessor(OTLPSpanExporter())`` posting to a minimal
  OTLP/HTTP endpoint, the baseline.

Each round runs every row once on a fresh ``TracerProvider``, after a full collection,
in an order shuffled anew each round (seeded by the round's number), so that no row
always follows the same one. Wall and CPU time (``time.thread_time``) are taken
around the same call; the "waited" column, the median of each round's wall less CPU
time, is the time the thread waited for the GIL or for a core (the two cores are
shared with the servers); the facts give the CPU time. The gateway and the OTLP
endpoint run in their own processes. When the parked
worker is let go after its round, its send fails and the engine says so once on
stderr ("cannot ship events (TimeoutError: hung); retrying"); the retry delivers
everything to memory.

    .venv/bin/python bench/otel_floor.py [--spans 10000] [--rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from _results import Comparison, Fact, add_json_option, write_results
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from otel import own_engine_delivered, packed_engine, pipelines, run_spans, servers

from cse_bridge.engine import EventItem, InMemorySink
from cse_bridge.integrations.otel import EventsSpanProcessor
from cse_bridge.schema.spans import snapshot_span

BASELINE = "batch+otlp"
FLOOR = "SDK span, no processor"
NO_GC = frozenset({"hold the SDK span, no GC", "snapshot, held, no GC"})
"""Rows whose burst runs with the garbage collector off."""


class KeepEach(SpanProcessor):
    """Keeps what *step* makes of each ended span in a deque (None: the span)."""

    def __init__(self, step: Callable[[ReadableSpan], object] | None) -> None:
        self.kept: deque[object] = deque()
        self._step = step

    def on_end(self, span: ReadableSpan) -> None:
        """Keep the span, or what the step makes of it."""
        self.kept.append(span if self._step is None else self._step(span))


class SnapshotEach(SpanProcessor):
    """Takes each ended span's snapshot and throws it away."""

    def on_end(self, span: ReadableSpan) -> None:
        """Snapshot the span; keep nothing."""
        snapshot_span(span)


def parked_processor() -> EventsSpanProcessor:
    """A processor whose engine's worker is blocked in a send before the burst."""
    sink = InMemorySink(["hang"])
    engine = packed_engine(sink)
    engine.submit(EventItem("bench.park", {}, 10))
    assert sink.wait_calls(1), "the worker did not take the parking event"
    return EventsSpanProcessor(engine=engine)


def rows(
    gateway: dict[str, str], otlp: dict[str, str], spans: int
) -> dict[str, tuple[Callable[[], SpanProcessor | None], Callable[[Any], None]]]:
    """Name -> (make the row's processor, settle it after the burst)."""
    otel_pipelines = pipelines(gateway, otlp, spans)

    def nothing(_: object) -> None:
        return None

    def delivered(processor: Any) -> None:
        own_engine_delivered(processor)
        processor.engine.shutdown(5.0)

    def release(processor: Any) -> None:
        engine = processor.engine
        engine.sink.release()  # the parked send fails; the retry goes to memory
        delivered(processor)

    return {
        FLOOR: (lambda: None, nothing),
        "hold the SDK span": (lambda: KeepEach(None), nothing),
        "hold the SDK span, no GC": (lambda: KeepEach(None), nothing),
        "snapshot, discarded": (SnapshotEach, nothing),
        "snapshot, held": (lambda: KeepEach(snapshot_span), nothing),
        "snapshot, held, no GC": (lambda: KeepEach(snapshot_span), nothing),
        "processor, worker parked": (parked_processor, release),
        "processor packed": (otel_pipelines["processor packed"][0], delivered),
        BASELINE: otel_pipelines[BASELINE],
    }


def parse_options() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    add_json_option(parser)
    return parser.parse_args()


def main() -> None:
    """Run every row *rounds* times, interleaved; print medians and ratios."""
    opts = parse_options()
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with servers() as (gateway, otlp):
        made = rows(gateway, otlp, opts.spans)
        names = list(made)
        for round_number in range(opts.rounds):
            order = names.copy()
            random.Random(round_number).shuffle(order)
            for name in order:
                make, settle = made[name]
                processor = make()
                gc.collect()
                if name in NO_GC:
                    gc.disable()
                try:
                    cpu_started = time.thread_time()
                    started = time.perf_counter()
                    run_spans(processor, opts.spans)
                    seconds = time.perf_counter() - started
                    cpu_seconds = time.thread_time() - cpu_started
                finally:
                    gc.enable()
                wall.setdefault(name, []).append(seconds / opts.spans * 1e6)
                cpu.setdefault(name, []).append(cpu_seconds / opts.spans * 1e6)
                settle(processor)
                if processor is not None:
                    processor.shutdown()
    base = statistics.median(wall[BASELINE])
    print(f"{opts.spans} spans x {opts.rounds} rounds; medians, us per span")
    floor = statistics.median(wall[FLOOR])
    print(
        f"{'row':<26} {'wall':>6} {'vs otlp':>8} {'cpu':>6} {'waited':>7} "
        f"{'+ floor':>8}"
    )
    for name in names:
        median = statistics.median(wall[name])
        waited = statistics.median(
            w - c for w, c in zip(wall[name], cpu[name], strict=True)
        )
        print(
            f"{name:<26} {median:>6.1f} {median / base:>8.2f} "
            f"{statistics.median(cpu[name]):>6.1f} {waited:>7.1f} "
            f"{median - floor:>+8.1f}"
        )
    if opts.json:
        write_results(
            opts.json,
            benchmark="otel_floor",
            title="Where a span's application-thread time goes",
            args=opts,
            comparisons=[
                Comparison(
                    id="app-thread",
                    title="Application-thread time of one span start and end, "
                    "step by step",
                    metric="microseconds per span",
                    unit="us/span",
                    baseline=BASELINE,
                    better="lower",
                    samples={name: wall[name] for name in names},
                )
            ],
            facts=[
                *(
                    Fact(
                        f"{name}: application-thread CPU",
                        statistics.median(cpu[name]),
                        "us/span",
                    )
                    for name in names
                ),
                *(
                    Fact(
                        f"{name}: waited (wall less CPU, median of rounds)",
                        statistics.median(
                            w - c for w, c in zip(wall[name], cpu[name], strict=True)
                        ),
                        "us/span",
                    )
                    for name in names
                ),
            ],
        )


if __name__ == "__main__":
    main()
