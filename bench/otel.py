"""
OpenTelemetry spans into events: throughput and application-thread cost, side by side.

Pipelines, each on a real ``TracerProvider``:

- ``batch+events``: ``BatchSpanProcessor(EventsSpanExporter())`` -> local gateway
- ``simple+events``: ``SimpleSpanProcessor(EventsSpanExporter())`` -> local gateway
- ``processor``: ``EventsSpanProcessor()`` -> local gateway
- ``processor packed``: ``EventsSpanProcessor()`` on an engine with
  ``pack_spans=1000``: spans travel as ``trace.batch`` events -> local gateway
- ``batch+otlp``: ``BatchSpanProcessor(OTLPSpanExporter())`` -> a minimal OTLP/HTTP
  endpoint (POST /v1/traces answers 200 with an empty ExportTraceServiceResponse)

Throughput: N spans are started and ended as fast as one thread can, then the
pipeline is flushed until everything was delivered; spans/s = N / that whole time.
App-thread cost: the time of one span start+end on the application thread, averaged
over N spans (delivery runs meanwhile in the background, as in production). "queued at
end": the share of the N spans still in the engine's queue (not yet taken by its
worker) when the application thread had made its last one: how little the worker gets
done while it competes for the GIL with a busy application thread. ``wrk``
POSTs to the same gateway over as many connections as the engine keeps, for the
">= 60% of wrk" comparison, twice: the very ``trace.span`` event the pipelines send
(encoded from a span made as the benchmark makes them: the same work per request for
the gateway) and the 80-byte event of the other benchmarks.
"then /s": the spans not yet delivered at the last span over the time it took to
deliver them, the pipeline's rate once the application thread is done (against wrk's
rate for the span event in the next column): the spans/s of a pipeline that delivers
almost nothing during the burst is N / (burst + N / that rate).
``engine ceiling`` submits N tiny prebuilt events (no span, almost no encoding) to the
same engine: what the engine's one-POST-per-event transport delivers at best with
the smallest event, an upper limit of the engine's sending alone; for the span event
the gateway's rate (about wrk's) is lower, and it roughly sets what an unpacked
pipeline delivers after its burst. The
gateway and the OTLP endpoint run in their own processes; wrk, both servers and this
process share the machine's cores.

    .venv/bin/python bench/otel.py [--spans 10000] [--rounds 3] [--duration 5]
                                   [--connections N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _results import Comparison, Fact, add_json_option, write_results
from _wrk import POST_LUA, engine_connections, post_lua, run_wrk

from cse_bridge.engine import ENV_CONNECTIONS

HERE = Path(__file__).resolve().parent


def serve_otlp() -> None:
    """Run the minimal OTLP/HTTP endpoint forever; print its address as JSON."""
    from aiohttp import web

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        # An empty ExportTraceServiceResponse serializes to zero bytes.
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(json.dumps({"http": f"http://127.0.0.1:{port}"}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def start(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a server process; return it and the address it printed."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


@contextmanager
def servers() -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The local gateway (memory store) and the OTLP endpoint, each its own process."""
    gateway_proc, gateway = start([str(HERE / "_serve.py"), "gateway", "memory://"])
    try:
        otlp_proc, otlp = start([str(HERE / "otel.py"), "--serve-otlp"])
        try:
            yield gateway, otlp
        finally:
            otlp_proc.terminate()
            otlp_proc.wait()
    finally:
        gateway_proc.terminate()
        gateway_proc.wait()


def packed_engine(sink: Any) -> Any:
    """An engine of its own for *sink*, packing up to 1,000 spans per trace.batch."""
    from cse_bridge.engine import BatchEngine, EngineOptions

    return BatchEngine(sink, EngineOptions.resolve(pack_spans=1000))


def pipelines(
    gateway: dict[str, str], otlp: dict[str, str], spans: int
) -> dict[str, tuple[Callable[[], object], Callable[[object], None]]]:
    """Name -> (make a span processor, wait until it delivered everything)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from cse_bridge.engine import EventsSink, get_shared_engine
    from cse_bridge.integrations.otel import EventsSpanExporter, EventsSpanProcessor

    creds = {"gateway_url": gateway["http"], "access_token": gateway["token"]}
    engine = get_shared_engine(**creds)

    def engine_done(_: object) -> None:
        assert engine.flush(120.0), "the engine did not deliver in time"

    def batch_done(processor: object) -> None:
        processor.force_flush()  # type: ignore[attr-defined]
        engine_done(processor)

    big = {"max_queue_size": spans, "max_export_batch_size": min(512, spans)}
    return {
        "batch+otlp": (
            lambda: BatchSpanProcessor(
                OTLPSpanExporter(endpoint=otlp["http"] + "/v1/traces"), **big
            ),
            lambda p: p.force_flush(),  # type: ignore[attr-defined]
        ),
        "batch+events": (
            lambda: BatchSpanProcessor(EventsSpanExporter(**creds), **big),
            batch_done,
        ),
        "simple+events": (
            lambda: SimpleSpanProcessor(EventsSpanExporter(**creds)),
            engine_done,
        ),
        "processor": (lambda: EventsSpanProcessor(**creds), engine_done),
        "processor packed": (
            lambda: EventsSpanProcessor(
                engine=packed_engine(EventsSink(gateway["http"], gateway["token"]))
            ),
            own_engine_delivered,
        ),
    }


def own_engine_delivered(processor: object) -> None:
    """Wait until the processor's own engine delivered (the caller shuts it down)."""
    engine = processor.engine  # type: ignore[attr-defined]
    assert engine.flush(120.0), "the engine did not deliver in time"


def shared_engine(gateway: dict[str, str]) -> object:
    """The process's shared engine, which the exporter pipelines submit to."""
    from cse_bridge.engine import get_shared_engine

    return get_shared_engine(gateway_url=gateway["http"], access_token=gateway["token"])


def engine_of(processor: object, shared: object) -> Any:
    """The engine a pipeline submits to, or None (the OTLP pipeline has none)."""
    own = getattr(processor, "engine", None)
    if own is not None:
        return own
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = getattr(processor, "span_exporter", None)
    return None if isinstance(exporter, OTLPSpanExporter) else shared


def run_spans(processor: object | None, count: int) -> float:
    """Start and end *count* spans on this thread; return the seconds it took."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    if processor is not None:
        provider.add_span_processor(processor)  # type: ignore[arg-type]
    tracer = provider.get_tracer("bench")
    attributes = {"http.method": "GET", "http.status_code": 200, "ok": True}
    started = time.perf_counter()
    for index in range(count):
        with tracer.start_as_current_span("GET /orders", attributes=attributes) as s:
            s.set_attribute("i", index)
    return time.perf_counter() - started


def span_event_body() -> str:
    """The ``trace.span`` request body the pipelines send for one benchmark span."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    from cse_bridge.schema.spans import encode_span

    exporter = InMemorySpanExporter()
    run_spans(SimpleSpanProcessor(exporter), 1)
    data = encode_span(exporter.get_finished_spans()[0])
    return json.dumps({"type": "trace.span", "data": data}, separators=(",", ":"))


def run_ceiling(gateway: dict[str, str], count: int) -> float:
    """Return events/s of *count* tiny prebuilt items through the shared engine."""
    from cse_bridge.engine import EventItem, get_shared_engine

    engine = get_shared_engine(
        gateway_url=gateway["http"], access_token=gateway["token"]
    )
    data = {"i": 1, "message": "hello from the benchmark", "ok": True}
    started = time.perf_counter()
    for _ in range(count):
        engine.submit(EventItem("bench.event", data, 100))
    assert engine.flush(120.0), "the engine did not deliver in time"
    return count / (time.perf_counter() - started)


def run_wrk_rounds(
    gateway: dict[str, str], opts: argparse.Namespace, connections: int
) -> dict[str, list[float]]:
    """wrk POSTing the span event and the 80-byte event, *rounds* times each."""
    wrk: dict[str, list[float]] = {"span event": [], "80-byte event": []}
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {
            "span event": Path(tmp) / "span.lua",
            "80-byte event": Path(tmp) / "tiny.lua",
        }
        scripts["span event"].write_text(post_lua(span_event_body()))
        scripts["80-byte event"].write_text(POST_LUA)
        for _ in range(opts.rounds):
            for body, script in scripts.items():
                wrk[body].append(
                    run_wrk(
                        gateway["http"],
                        gateway["token"],
                        str(script),
                        opts.duration,
                        connections,
                    )
                )
    return wrk


@dataclass
class Samples:
    """Every round's figures, by pipeline (wrk's by body)."""

    throughput: dict[str, list[float]] = field(default_factory=dict)
    """Spans per second, the burst and the delivery after it."""
    cost: dict[str, list[float]] = field(default_factory=lambda: {"no processor": []})
    """Seconds of the application thread per span."""
    waiting: dict[str, list[float]] = field(default_factory=dict)
    """Share of the spans still queued at the last span."""
    drain: dict[str, list[float]] = field(default_factory=dict)
    """Spans per second delivered after the last span."""
    wrk: dict[str, list[float]] = field(default_factory=dict)
    """wrk's POSTs per second, by body."""


def write_json(opts: argparse.Namespace, connections: int, samples: Samples) -> None:
    """Write the two comparisons (spans/s against wrk, cost against OTLP) as JSON."""
    throughput, cost, wrk = samples.throughput, samples.cost, samples.wrk
    waiting, drain = samples.waiting, samples.drain
    spans_per_second = Comparison(
        id="throughput",
        title=f"Spans delivered per second, {connections} connections",
        metric="spans per second (wrk: POSTs per second)",
        unit="spans/s",
        baseline="wrk span event",
        samples={
            **throughput,
            **{f"wrk {body}": rates for body, rates in wrk.items()},
        },
    )
    app_cost = Comparison(
        id="app-thread",
        title="Application-thread cost of one span start and end",
        metric="microseconds per span",
        unit="us/span",
        baseline="batch+otlp",
        better="lower",
        samples={
            name: [seconds * 1e6 for seconds in values] for name, values in cost.items()
        },
    )
    write_results(
        opts.json,
        benchmark="otel",
        title="OpenTelemetry spans into events, against the SDK's OTLP exporter",
        args=opts,
        comparisons=[spans_per_second, app_cost],
        facts=[
            *(
                Fact(
                    f"{name}: still queued after the last span",
                    statistics.median(shares) * 100,
                    "%",
                )
                for name, shares in waiting.items()
            ),
            *(
                Fact(
                    f"{name}: delivered per second after the last span",
                    statistics.median(rates),
                    "spans/s",
                )
                for name, rates in drain.items()
            ),
        ],
    )


def print_table(opts: argparse.Namespace, connections: int, samples: Samples) -> None:
    """Print every pipeline's medians and ratios, then wrk's rates."""
    throughput, cost, wrk = samples.throughput, samples.cost, samples.wrk
    waiting, drain = samples.waiting, samples.drain
    print(
        f"{opts.spans} spans x {opts.rounds} rounds, {connections} connections, "
        f"{os.cpu_count()} cores shared by this process, the gateway, the OTLP "
        "endpoint and wrk"
    )
    wrk_span = statistics.median(wrk["span event"])
    wrk_tiny = statistics.median(wrk["80-byte event"])
    otlp_cost = statistics.median(cost["batch+otlp"])
    print(
        f"{'pipeline':<16} {'spans/s':>9} {'vs wrk':>7} {'(80 B)':>7} "
        f"{'app us/span':>12} {'vs otlp':>8} {'queued at end':>15} "
        f"{'then /s':>8} {'then/wrk':>9}"
    )
    for name in [*cost, "engine ceiling"]:
        rate = statistics.median(throughput[name]) if name in throughput else None
        rate_text = (
            f"{rate:>9.0f} {rate / wrk_span:>7.2f} {rate / wrk_tiny:>7.2f}"
            if rate
            else " " * 25
        )
        costs = cost.get(name)
        med = statistics.median(costs) if costs else None
        cost_text = f"{med * 1e6:>12.1f} {med / otlp_cost:>8.2f}" if med else ""
        shares = waiting.get(name)
        loop_text = f" {statistics.median(shares):>14.0%}" if shares else ""
        rates = drain.get(name)
        if rates:
            then = statistics.median(rates)
            loop_text += f" {then:>8.0f} {then / wrk_span:>9.2f}"
        print(f"{name:<16} {rate_text} {cost_text}{loop_text}")
    for body, rates in wrk.items():
        print(
            f"{'wrk ' + body:<16} {statistics.median(rates):>9.0f} POST/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f})"
        )


def parse_options() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument(
        "--connections",
        type=int,
        help="the engine's (CSE_BRIDGE_CONNECTIONS) and wrk's; default the engine's",
    )
    add_json_option(parser)
    return parser.parse_args()


def main() -> None:
    """Run every pipeline *rounds* times, then wrk; print medians and ratios."""
    opts = parse_options()
    if opts.connections:
        os.environ[ENV_CONNECTIONS] = str(opts.connections)
    connections = engine_connections()
    samples = Samples()
    throughput, cost = samples.throughput, samples.cost
    waiting, drain = samples.waiting, samples.drain
    with servers() as (gateway, otlp):
        made = pipelines(gateway, otlp, opts.spans)
        shared = shared_engine(gateway)
        for _ in range(opts.rounds):
            cost["no processor"].append(run_spans(None, opts.spans) / opts.spans)
            for name, (make, done) in made.items():
                processor = make()
                engine = engine_of(processor, shared)
                sent_before = engine.stats().sent if engine is not None else 0
                started = time.perf_counter()
                app_seconds = run_spans(processor, opts.spans)
                if engine is not None:
                    at_end = engine.stats()
                    waiting.setdefault(name, []).append(at_end.queue_depth / opts.spans)
                done(processor)
                total = time.perf_counter() - started
                throughput.setdefault(name, []).append(opts.spans / total)
                cost.setdefault(name, []).append(app_seconds / opts.spans)
                if engine is not None:
                    # Not yet delivered at the last span: queued, in flight, or
                    # still in BatchSpanProcessor's own queue.
                    left = opts.spans - (at_end.sent - sent_before)
                    drain.setdefault(name, []).append(
                        left / max(total - app_seconds, 1e-9)
                    )
                processor.shutdown()  # type: ignore[attr-defined]
                if engine is not None and engine is not shared:
                    engine.shutdown(5.0)
            throughput.setdefault("engine ceiling", []).append(
                run_ceiling(gateway, opts.spans)
            )
        samples.wrk = run_wrk_rounds(gateway, opts, connections)
    print_table(opts, connections, samples)
    if opts.json:
        write_json(opts, connections, samples)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-otlp"]:
        serve_otlp()
    else:
        main()
