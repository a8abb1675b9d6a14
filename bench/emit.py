"""
Application-thread cost of one log call, side by side, plus memory and delivery rate.

    .venv/bin/python bench/emit.py [--records 50000] [--runs 5] [--burst 1000000]

Contenders, each timed on ``logger.info("request %s done", i, extra={...})``:

- ``stdlib``: ``QueueHandler`` + ``QueueListener`` whose handler does per record what
  the engine's worker does: it builds the record's fields (message, level, logger,
  time, source, process, thread, ``extra=`` attributes) into a dict, ``json.dumps`` it
  and writes the line to ``os.devnull``. This is the baseline of the ratios, since its
  listener competes for the GIL as the engine's worker does;
- ``stdlib null``: the same with a ``NullHandler`` (the listener does nothing);
- ``cse-bridge``: ``EventsHandler`` shipping to a local gateway (another process);
- ``otel``: the OpenTelemetry SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor`` +
  OTLP/HTTP exporter, pointed at a local dummy endpoint that answers 200.

Reports the median microseconds per call of several runs and the ratio to stdlib,
records lost, the tracemalloc peak during a burst, and delivered events/s end to end
(one event per POST, and packed) next to the requests/s ``wrk`` reaches on the same
gateway with the same kind of body.
"""

from __future__ import annotations

import argparse
import gc
import http.server
import json
import logging
import logging.handlers
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from _results import Comparison, Fact, add_json_option, write_results
from _wrk import engine_connections, run_wrk

from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.schema.logs import STANDARD_RECORD_ATTRIBUTES as STANDARD

LUA = """
wrk.method = "POST"
wrk.body = '{"type":"log.info","data":{"message":"request 12345 done","level":"INFO",'
  .. '"levelno":20,"logger":"deliver","attributes":{"n":12345}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""

GATEWAY_SCRIPT = """
import sys
from cse_bridge.gateway import GatewayConfig, GatewayThread
gw = GatewayThread(GatewayConfig(http_port=0, pubsub_port=0, secret="x" * 32,
                                 api_keys={"bench-key": 1})).start()
print(gw.http_url, gw.issue_token("bench", 1), flush=True)
sys.stdin.read()
"""

Setup = Callable[[logging.Logger], Callable[[], dict[str, Any]]]


class _Ok(http.server.BaseHTTPRequestHandler):
    """A dummy OTLP endpoint: reads the body, answers 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


def fresh_logger(name: str) -> logging.Logger:
    """A logger outside the manager: only the handlers the benchmark adds."""
    return logging.Logger(name, logging.INFO)  # noqa: LOG001 - on purpose


def start_gateway() -> tuple[subprocess.Popen[str], str, str]:
    """Start a gateway in a child process (its CPU is not ours); return url, token."""
    proc = subprocess.Popen(
        [sys.executable, "-c", GATEWAY_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url, token = proc.stdout.readline().split()
    return proc, url, token


class JsonLineHandler(logging.Handler):
    """The stdlib baseline's listener work: one JSON line per record, to devnull."""

    def __init__(self) -> None:
        super().__init__()
        self.stream = open(os.devnull, "w")  # noqa: SIM115 - closed in close()

    def emit(self, record: logging.LogRecord) -> None:
        """Build the fields (docs/protocol.md#protocol-log-records), dump, write."""
        fields = record.__dict__
        line = {
            "message": record.getMessage(),
            "level": record.levelname,
            "levelno": record.levelno,
            "logger": record.name,
            "timeUnixNano": int(record.created * 1e9),
            "source": {
                "file": record.pathname,
                "line": record.lineno,
                "function": record.funcName,
                "module": record.module,
            },
            "process": {"pid": record.process, "name": record.processName},
            "thread": {"id": record.thread, "name": record.threadName},
            "attributes": {k: v for k, v in fields.items() if k not in STANDARD},
        }
        self.stream.write(json.dumps(line, default=repr) + "\n")

    def close(self) -> None:
        """Close devnull."""
        self.stream.close()
        super().close()


def stdlib_setup(target: logging.Handler) -> Setup:
    """QueueHandler + QueueListener to *target*."""

    def setup(logger: logging.Logger) -> Callable[[], dict[str, Any]]:
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(q, target)
        listener.start()
        logger.addHandler(logging.handlers.QueueHandler(q))

        def done() -> dict[str, Any]:
            listener.stop()
            return {}

        return done

    return setup


def setup_bridge(url: str, token: str, **options: Any) -> Setup:
    """EventsHandler with its own engine to the local gateway."""

    def setup(logger: logging.Logger) -> Callable[[], dict[str, Any]]:
        handler = EventsHandler(
            gateway_url=url, access_token=token, own_engine=True, **options
        )
        logger.addHandler(handler)

        def done() -> dict[str, Any]:
            engine = handler.engine
            assert engine is not None
            engine.flush(120.0)
            stats = engine.stats()
            handler.close()
            return {"lost": sum(stats.dropped.values()), "sent": stats.sent}

        return done

    return setup


def setup_bridge_idle(logger: logging.Logger) -> Callable[[], dict[str, Any]]:
    """EventsHandler on an engine whose worker waits: the app-thread share alone."""
    from cse_bridge.engine import BatchEngine, InMemorySink

    engine = BatchEngine(
        InMemorySink(),
        schedule_delay=3600.0,
        max_batch_size=10**7,
        max_batch_bytes=2**40,
        max_queue_size=10**7,
        max_queue_bytes=2**40,
    )
    logger.addHandler(EventsHandler(engine=engine))

    def done() -> dict[str, Any]:
        engine.shutdown(0.1)
        return {}

    return done


def setup_otel(endpoint: str) -> Setup:
    """OpenTelemetry SDK LoggingHandler + BatchLogRecordProcessor + OTLP/HTTP."""

    def setup(logger: logging.Logger) -> Callable[[], dict[str, Any]]:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter,
        )
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        provider = LoggerProvider()
        exporter = OTLPLogExporter(endpoint=endpoint)
        sent = [0]
        export = exporter.export

        def counting_export(batch: Any) -> Any:
            sent[0] += len(batch)
            return export(batch)

        exporter.export = counting_export  # type: ignore[method-assign]
        provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
        logger.addHandler(LoggingHandler(logger_provider=provider))

        def done() -> dict[str, Any]:
            provider.force_flush(120_000)
            provider.shutdown()
            return {"sent": sent[0]}

        return done

    return setup


def run_once(setup: Setup, records: int) -> tuple[float, dict[str, Any]]:
    """Microseconds per call of one run, and what the teardown reports."""
    logger = fresh_logger("bench")
    done = setup(logger)
    extra = {"user": "ann", "path": "/api/items"}
    gc.collect()
    start = time.perf_counter()
    for i in range(records):
        logger.info("request %s done", i, extra=extra)
    elapsed = time.perf_counter() - start
    report = done()
    for handler in logger.handlers:
        handler.close()
    return elapsed / records * 1e6, report


def compare(contenders: dict[str, Setup], records: int, runs: int) -> Comparison:
    """Interleave the runs so drift hits every contender alike; print medians."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    reports: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, setup in contenders.items():
            us, report = run_once(setup, records)
            results[name].append(us)
            reports[name].append(report)
    base = statistics.median(results["stdlib"])
    print(f"\napplication-thread cost, {records} calls x {runs} runs (median us/call)")
    notes: dict[str, str] = {}
    for name, values in results.items():
        median = statistics.median(values)
        extra = ""
        lost = [r["lost"] for r in reports[name] if "lost" in r]
        sent = [r["sent"] for r in reports[name] if "sent" in r]
        if lost:
            extra += f"  lost/run {max(lost)}"
        if sent:
            extra += f"  delivered/run min {min(sent)} of {records}"
        if extra:
            notes[name] = extra.strip()
        print(
            f"  {name:12s} {median:7.2f} us  x{median / base:4.2f}  "
            f"(runs: {', '.join(f'{v:.2f}' for v in values)}){extra}"
        )
    return Comparison(
        id="app-thread",
        title=f"Application-thread cost of logger.info, {records} calls per run",
        metric="microseconds per call",
        unit="us/call",
        baseline="stdlib",
        better="lower",
        samples=results,
        notes=notes,
    )


def burst_memory(url: str, token: str, burst: int) -> list[Fact]:
    """tracemalloc peak while *burst* records are logged as fast as possible."""
    handler = EventsHandler(gateway_url=url, access_token=token, own_engine=True)
    logger = fresh_logger("burst")
    logger.addHandler(handler)
    extra = {"user": "ann", "path": "/api/items"}
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    most_queued = 0
    start = time.perf_counter()
    for i in range(burst):
        logger.info("request %s done", i, extra=extra)
        if not i % 1000:
            engine = handler.engine
            assert engine is not None
            most_queued = max(most_queued, engine.queue_bytes)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine = handler.engine
    assert engine is not None
    stats = engine.stats()
    mib = 2**20
    print(
        f"\nburst of {burst} records (tracemalloc on, {elapsed:.1f} s): peak "
        f"{(peak - base) / mib:.1f} MiB above the start; queue bound "
        f"{engine.max_queue_size} items / {engine.max_queue_bytes / mib:.0f} MiB "
        f"(most seen queued {most_queued / mib:.1f} MiB by size_hint, which "
        f"covers real memory); one batch in flight adds up to "
        f"{engine.max_batch_size} records; dropped so far {dict(stats.dropped)}"
    )
    handler.close()
    engine.shutdown(1.0)
    return [
        Fact(f"burst of {burst} records: tracemalloc peak", (peak - base) / mib, "MiB"),
        Fact("burst: most queued (size_hint)", most_queued / mib, "MiB"),
        Fact("burst: records dropped", sum(stats.dropped.values()), "records"),
    ]


def wrk_rate(url: str, token: str, seconds: int = 3) -> float:
    """
    Requests/s wrk reaches on POST /events of the same gateway (0: no wrk).

    Over as many connections as the engine keeps (``CSE_BRIDGE_CONNECTIONS``).
    """
    connections = engine_connections()
    if shutil.which("wrk") is None:
        print("  wrk: not installed (apt-get install wrk)")
        return 0.0
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(LUA)
        script.flush()
        rate = run_wrk(url, token, script.name, seconds, connections)
    print(f"  wrk -t1 -c{connections} {seconds}s, one event per POST: {rate:,.0f}/s")
    return rate


def delivery(url: str, token: str, records: int, **options: Any) -> float:
    """Delivered events/s: from the first call until the gateway acknowledged all."""
    handler = EventsHandler(
        gateway_url=url, access_token=token, own_engine=True, **options
    )
    logger = fresh_logger("deliver")
    logger.addHandler(handler)
    start = time.perf_counter()
    for i in range(records):
        logger.info("request %s done", i, extra={"n": i})
    engine = handler.engine
    assert engine is not None
    engine.flush(300.0)
    elapsed = time.perf_counter() - start
    stats = engine.stats()
    handler.close()
    lost = sum(stats.dropped.values())
    print(
        f"  {options or 'one event per POST'}: {records / elapsed:,.0f} records/s "
        f"({stats.sent} events sent, {lost} lost)"
    )
    return records / elapsed


def handle_alone(runs: int, calls: int = 200_000) -> Comparison:
    """
    Each handler's own ``handle(record)`` cost, with nothing draining its queue.

    The application-thread figures above also carry what each consumer thread takes
    from the GIL; this isolates the handler: EventsHandler on an engine whose sink
    never answers (nothing is sent) beside QueueHandler on a ``queue.Queue``.
    """
    import queue
    import timeit
    from logging.handlers import QueueHandler

    from cse_bridge.engine import BatchEngine, InMemorySink
    from cse_bridge.integrations.logging import EventsHandler

    logger = fresh_logger("bench.alone")
    record = logger.makeRecord(
        "bench.alone", logging.INFO, __file__, 1, "request %s done", (1,), None,
        extra={"user": "ann", "status": 200},
    )  # fmt: skip
    engine = BatchEngine(
        InMemorySink(["hang"]), max_queue_size=10**8, max_queue_bytes=2**40
    )
    ours = EventsHandler(engine=engine)
    theirs = QueueHandler(queue.Queue())
    results: dict[str, list[float]] = {"EventsHandler": [], "QueueHandler": []}
    for _ in range(runs):
        for name, handler in (("EventsHandler", ours), ("QueueHandler", theirs)):
            seconds = timeit.timeit(lambda h=handler: h.handle(record), number=calls)
            results[name].append(seconds / calls * 1e6)
    engine.shutdown(0.1)
    base = statistics.median(results["QueueHandler"])
    print(f"\nhandle(record) alone, {calls} calls x {runs} runs (median us/call)")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"  {name:14} {med:6.2f} us  x{med / base:.2f}")
    return Comparison(
        id="handle-alone",
        title=f"handle(record) alone, nothing draining, {calls} calls per run",
        metric="microseconds per call",
        unit="us/call",
        baseline="QueueHandler",
        better="lower",
        samples=results,
    )


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1_000_000)
    parser.add_argument("--deliver", type=int, default=50_000)
    add_json_option(parser)
    args = parser.parse_args()

    proc, url, token = start_gateway()
    otlp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=otlp.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{otlp.server_address[1]}/v1/logs"
    try:
        print(f"python {sys.version.split()[0]}, gateway {url} (child process)")
        app_thread = compare(
            {
                "stdlib": stdlib_setup(JsonLineHandler()),
                "stdlib null": stdlib_setup(logging.NullHandler()),
                "cse-bridge": setup_bridge(url, token),
                "cse-b packed": setup_bridge(url, token, pack=100),
                "cse-b no I/O": setup_bridge_idle,
                "otel": setup_otel(endpoint),
            },
            args.records,
            args.runs,
        )
        alone = handle_alone(args.runs)
        print("\nend-to-end delivery to the local gateway")
        wrk = wrk_rate(url, token)
        unpacked = delivery(url, token, args.deliver)
        packed = delivery(url, token, args.deliver * 4, pack=5000)
        if wrk:
            print(
                f"  unpacked {unpacked / wrk:.2f}x of wrk's requests/s; packed "
                f"{packed / wrk:.2f}x of wrk's rate in records/s"
            )
        facts = burst_memory(url, token, args.burst) if args.burst else []
        print("\n" + json.dumps({"records": args.records, "runs": args.runs}))
        if args.json:
            comparisons = [app_thread, alone]
            if wrk:
                comparisons.append(
                    Comparison(
                        id="delivery",
                        title="Delivered to the local gateway, one measurement each",
                        metric="records per second (wrk: requests per second)",
                        unit="records/s",
                        baseline="wrk, one event per POST",
                        samples={
                            "wrk, one event per POST": [wrk],
                            "EventsHandler, one per POST": [unpacked],
                            "EventsHandler, pack=5000": [packed],
                        },
                    )
                )
            write_results(
                args.json,
                benchmark="emit",
                title="Cost of one log call on the application thread, and delivery",
                args=args,
                comparisons=comparisons,
                facts=facts,
            )
    finally:
        otlp.shutdown()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
