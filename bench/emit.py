"""
Application-thread cost of one log call, side by side, plus memory and delivery rate.

    .venv/bin/python bench/emit.py [--records 50000] [--runs 5] [--burst 1000000]

Contenders, each timed on ``logger.info("request %s done", i, extra={...})``:

- ``stdlib``: ``QueueHandler`` + ``QueueListener`` (to a ``NullHandler``);
- ``cse-bridge``: ``EventsHandler`` shipping to a local gateway (another process);
- ``otel``: the OpenTelemetry SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor`` +
  OTLP/HTTP exporter, pointed at a local dummy endpoint that answers 200.

Reports the median microseconds per call of several runs and the ratio to stdlib,
records lost, the tracemalloc peak during a burst, and delivered events/s end to end
(one event per POST, and packed).
"""

from __future__ import annotations

import argparse
import gc
import http.server
import json
import logging
import logging.handlers
import queue
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from cse_bridge.integrations.logging import EventsHandler

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


def setup_stdlib(logger: logging.Logger) -> Callable[[], dict[str, Any]]:
    """QueueHandler + QueueListener to a NullHandler."""
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, logging.NullHandler())
    listener.start()
    logger.addHandler(logging.handlers.QueueHandler(q))

    def done() -> dict[str, Any]:
        listener.stop()
        return {}

    return done


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


def compare(contenders: dict[str, Setup], records: int, runs: int) -> None:
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
    for name, values in results.items():
        median = statistics.median(values)
        extra = ""
        lost = [r["lost"] for r in reports[name] if "lost" in r]
        sent = [r["sent"] for r in reports[name] if "sent" in r]
        if lost:
            extra += f"  lost/run {max(lost)}"
        if sent:
            extra += f"  delivered/run min {min(sent)} of {records}"
        print(
            f"  {name:12s} {median:7.2f} us  x{median / base:4.2f}  "
            f"(runs: {', '.join(f'{v:.2f}' for v in values)}){extra}"
        )


def burst_memory(url: str, token: str, burst: int) -> None:
    """tracemalloc peak while *burst* records are logged as fast as possible."""
    handler = EventsHandler(gateway_url=url, access_token=token, own_engine=True)
    logger = fresh_logger("burst")
    logger.addHandler(handler)
    extra = {"user": "ann", "path": "/api/items"}
    tracemalloc.start()
    start = time.perf_counter()
    for i in range(burst):
        logger.info("request %s done", i, extra=extra)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine = handler.engine
    assert engine is not None
    stats = engine.stats()
    print(
        f"\nburst of {burst} records (tracemalloc on, {elapsed:.1f} s): peak "
        f"{peak / 2**20:.1f} MiB; queue bound {engine.max_queue_size} items / "
        f"{engine.max_queue_bytes / 2**20:.0f} MiB; dropped so far "
        f"{dict(stats.dropped)}"
    )
    handler.close()
    engine.shutdown(1.0)


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


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1_000_000)
    parser.add_argument("--deliver", type=int, default=50_000)
    args = parser.parse_args()

    proc, url, token = start_gateway()
    otlp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=otlp.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{otlp.server_address[1]}/v1/logs"
    try:
        print(f"python {sys.version.split()[0]}, gateway {url} (child process)")
        compare(
            {
                "stdlib": setup_stdlib,
                "cse-bridge": setup_bridge(url, token),
                "cse-b packed": setup_bridge(url, token, pack=100),
                "cse-b no I/O": setup_bridge_idle,
                "otel": setup_otel(endpoint),
            },
            args.records,
            args.runs,
        )
        print("\nend-to-end delivery to the local gateway")
        delivery(url, token, args.deliver)
        delivery(url, token, args.deliver * 4, pack=100)
        if args.burst:
            burst_memory(url, token, args.burst)
        print("\n" + json.dumps({"records": args.records, "runs": args.runs}))
    finally:
        otlp.shutdown()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
