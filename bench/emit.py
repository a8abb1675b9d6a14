"""
Shipping log records: what one log call costs, side by side, each in a fresh process.

    .venv/bin/python bench/emit.py [--records 50000] [--runs 5] [--burst 1000000]
                                   [--deliver 50000] [--before SRC] [--json PATH]

The table (``--records`` calls of ``logger.info("request %s done", i, extra={3
fields})`` per contender and run, each run of each contender in a new process, the
contenders alternating so that drift hits every one alike) against one fast local HTTP
sink (``bench/_sink.py``, its own process):

- ``NullHandler``: the floor, what creating and dropping a record costs;
- ``QueueHandler``: the standard library's ``QueueHandler`` + ``QueueListener`` whose
  handler does per record what the engine's worker does: it builds the record's fields
  (message, level, logger, time, source, process, thread, ``extra=`` attributes) into a
  dict, ``json.dumps`` it and writes the line to ``os.devnull``. The baseline of the
  ratios: its listener competes for the GIL as the engine's worker does;
- ``EventsHandler`` and ``EventsHandler pack=1000``: shipping to the sink's ``/events``;
- ``OTel``: the OpenTelemetry SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor`` +
  OTLP/HTTP exporter (its defaults), to the sink's ``/v1/logs``;
- ``logtail``: logtail-python's ``LogtailHandler`` (its defaults), to the sink;
- ``loki``: python-logging-loki's ``LokiQueueHandler`` (a ``QueueListener`` posting one
  record per request), to the sink's ``/loki/api/v1/push``.

Columns: the application thread's wall time per call (and its CPU time), its ratio to
``QueueHandler``, records delivered per second from the first call until the last was
acknowledged, records lost, and the whole process's CPU time (every thread) from the
first call until the last was delivered, per delivered record.

Then: ``handle(record)`` alone with nothing draining; delivered records/s to a real
gateway (one event per POST and packed) next to the requests/s ``wrk`` reaches on it
with the same kind of body (``--deliver 0`` skips it); the tracemalloc peak during a
burst of records logged as fast as possible (``--burst 0`` skips it).
"""

from __future__ import annotations

import argparse
import gc
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
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _results import Comparison, Fact, add_json_option, write_results
from _wrk import engine_connections, run_wrk

from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.schema.logs import STANDARD_RECORD_ATTRIBUTES as STANDARD

HERE = Path(__file__).resolve().parent
BASELINE = "QueueHandler"
EXTRA = {"user": "ann", "path": "/api/items", "status": 200}
"""The ``extra=`` fields of every benchmark call."""

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

Setup = Callable[[logging.Logger, str], Callable[[], dict[str, Any]]]
"""Attach a contender to the logger (the sink's URL given); return its teardown.

The teardown waits until everything was delivered and returns ``delivered`` and
``lost`` (records), or nothing for the contenders that deliver nowhere."""


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


def start_sink() -> tuple[subprocess.Popen[str], str]:
    """Start the fast HTTP sink (bench/_sink.py) in a child process; return its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_sink.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["http"]


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


def setup_null(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
    """A ``NullHandler``: the floor."""
    logger.addHandler(logging.NullHandler())
    return dict


def setup_queue(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
    """``QueueHandler`` + ``QueueListener`` to ``JsonLineHandler``: the baseline."""
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, JsonLineHandler())
    listener.start()
    logger.addHandler(logging.handlers.QueueHandler(q))

    def done() -> dict[str, Any]:
        listener.stop()  # returns once the listener handled every record
        return {}

    return done


def setup_bridge(**options: Any) -> Setup:
    """``EventsHandler`` with an engine of its own, to the sink's ``/events``."""

    def setup(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
        handler = EventsHandler(
            gateway_url=url,
            access_token="bench",  # noqa: S106 - the sink takes any
            own_engine=True,
            **options,
        )
        logger.addHandler(handler)

        def done() -> dict[str, Any]:
            engine = handler.engine
            assert engine is not None
            engine.flush(300.0)
            stats = engine.stats()
            return {"delivered": stats.sent, "lost": sum(stats.dropped.values())}

        return done

    return setup


def setup_otel(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
    """The OTel SDK's LoggingHandler + BatchLogRecordProcessor + OTLP/HTTP exporter."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        LogRecordExportResult,
    )

    provider = LoggerProvider()
    exporter = OTLPLogExporter(endpoint=url + "/v1/logs")
    delivered = [0]
    export = exporter.export

    def counting_export(batch: Any) -> Any:
        result = export(batch)
        if result is LogRecordExportResult.SUCCESS:
            delivered[0] += len(batch)
        return result

    exporter.export = counting_export  # type: ignore[method-assign]
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger.addHandler(LoggingHandler(logger_provider=provider))

    def done() -> dict[str, Any]:
        provider.force_flush(300_000)
        return {"delivered": delivered[0]}

    return done


def setup_logtail(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
    """logtail-python's ``LogtailHandler`` (its defaults), to the sink."""
    from logtail import LogtailHandler

    handler = LogtailHandler(
        source_token="bench",  # noqa: S106 - the sink takes any
        host=url,
        flush_timeout=300,
    )
    delivered = [0]
    upload = handler.uploader

    class Counting:
        def __call__(self, frame: list[Any]) -> Any:
            response = upload(frame)
            if 200 <= response.status_code < 300:
                delivered[0] += len(frame)
            return response

    handler.uploader = Counting()  # type: ignore[assignment]
    logger.addHandler(handler)

    def done() -> dict[str, Any]:
        handler.flush()
        return {"delivered": delivered[0]}

    return done


def setup_loki(logger: logging.Logger, url: str) -> Callable[[], dict[str, Any]]:
    """python-logging-loki's ``LokiQueueHandler``, to the sink's push endpoint."""
    from logging_loki import LokiQueueHandler

    handler = LokiQueueHandler(
        queue.Queue(-1),
        url=url + "/loki/api/v1/push",
        tags={"app": "bench"},
        version="1",
    )
    delivered = [0]
    emitter = handler.handler.emitter

    def counting(record: logging.LogRecord, line: str) -> None:
        emitter(record, line)  # raises unless Loki's 204 came back
        delivered[0] += 1

    handler.handler.emitter = counting  # type: ignore[assignment]
    logger.addHandler(handler)

    def done() -> dict[str, Any]:
        handler.listener.stop()
        return {"delivered": delivered[0]}

    return done


CONTENDERS: dict[str, Setup] = {
    "NullHandler": setup_null,
    "QueueHandler": setup_queue,
    "EventsHandler": setup_bridge(),
    "EventsHandler pack=1000": setup_bridge(pack=1000),
    "OTel": setup_otel,
    "logtail": setup_logtail,
    "loki": setup_loki,
}
"""Every contender of the table, in its order; the peers only where installed."""


def available(name: str) -> bool:
    """Whether a contender's library is installed (the peers are optional)."""
    module = {"OTel": "opentelemetry.sdk", "logtail": "logtail", "loki": "logging_loki"}
    needed = module.get(name)
    if needed is None:
        return True
    import importlib.util

    return importlib.util.find_spec(needed.split(".")[0]) is not None


def run_one(name: str, url: str, records: int) -> dict[str, Any]:
    """One run of one contender in this (fresh) process: its figures."""
    logger = fresh_logger("bench")
    done = CONTENDERS[name](logger, url)
    extra = EXTRA
    gc.collect()
    cpu_start, thread_start = time.process_time(), time.thread_time()
    start = time.perf_counter()
    for i in range(records):
        logger.info("request %s done", i, extra=extra)
    app = time.perf_counter() - start
    app_cpu = time.thread_time() - thread_start
    report = done()
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    delivered = report.get("delivered")
    lost = report.get("lost", records - delivered if delivered is not None else 0)
    return {
        "app_us": app / records * 1e6,
        "app_cpu_us": app_cpu / records * 1e6,
        "delivered": delivered,
        "delivered_per_s": delivered / total if delivered is not None else None,
        "lost": lost,
        "cpu_us": cpu / (delivered or records) * 1e6 if delivered != 0 else None,
    }


def run_fresh(
    name: str, url: str, records: int, src: str | None = None
) -> dict[str, Any]:
    """Run one contender once in a new Python process (cse_bridge from *src*)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            name,
            "--url",
            url,
            "--records",
            str(records),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


BEFORE = " (before)"
"""Suffix of the rows run with ``--before SRC``'s cse_bridge."""


def compare(
    url: str,
    records: int,
    runs: int,
    before: str | None = None,
    only: list[str] | None = None,
) -> list[Comparison]:
    """
    The table: every contender *runs* times, alternating; print medians.

    With *before* (the ``src`` directory of another checkout), the EventsHandler rows
    also run with that cse_bridge, in the same rounds: a before/after in one run.
    *only* names the contenders to run (default: all; the baseline always runs).
    """
    if only and BASELINE not in only:
        only = [BASELINE, *only]
    names = [name for name in only or CONTENDERS if available(name)]
    missing = [name for name in only or CONTENDERS if name not in names]
    if before:
        mine = [name for name in names if name.startswith("EventsHandler")]
        names[names.index(mine[-1]) + 1 : 0] = [name + BEFORE for name in mine]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(runs):
        for name in names:
            own = name.removesuffix(BEFORE)
            src = before if own != name else None
            results[name].append(run_fresh(own, url, records, src))

    def series(name: str, key: str) -> list[float]:
        return [r[key] for r in results[name] if r[key] is not None]

    def median(name: str, key: str) -> float | None:
        values = series(name, key)
        return statistics.median(values) if values else None

    base_app = median(BASELINE, "app_us") or 1.0
    base_cpu = median(BASELINE, "cpu_us") or 1.0
    print(
        f"\n{records} calls x {runs} runs per contender, each run a fresh process "
        f"(medians){'; not installed: ' + ', '.join(missing) if missing else ''}"
    )
    print(
        f"{'contender':<24} {'app us/call':>11} {'(CPU)':>6} {'vs QH':>6} "
        f"{'delivered/s':>11} {'lost':>6} {'CPU us/rec':>10} {'vs QH':>6}"
    )
    notes: dict[str, str] = {}
    for name in names:
        app, app_cpu = median(name, "app_us"), median(name, "app_cpu_us")
        rate, cpu = median(name, "delivered_per_s"), median(name, "cpu_us")
        lost = max(r["lost"] for r in results[name])
        assert app is not None
        assert app_cpu is not None
        rate_text = f"{rate:>11,.0f}" if rate else f"{'-':>11}"
        cpu_text = f"{cpu:>10.1f} {cpu / base_cpu:>6.2f}" if cpu else f"{'-':>10}"
        print(
            f"{name:<24} {app:>11.1f} {app_cpu:>6.1f} {app / base_app:>6.2f} "
            f"{rate_text} {lost:>6} {cpu_text}"
        )
        notes[name] = f"app-thread CPU {app_cpu:.1f} us/call" + (
            f"; {rate:,.0f} delivered/s; lost {lost} per {records}" if rate else ""
        )
    delivering = [name for name in names if series(name, "delivered_per_s")]
    return [
        Comparison(
            id="app-thread",
            title=f"Application-thread time of logger.info, {records} calls per run",
            metric="microseconds per call (wall time)",
            unit="us/call",
            baseline=BASELINE,
            better="lower",
            samples={name: series(name, "app_us") for name in names},
            notes=notes,
        ),
        Comparison(
            id="process-cpu",
            title="Whole-process CPU time per delivered record (every thread)",
            metric="microseconds of CPU per record",
            unit="us/record",
            baseline=BASELINE,
            better="lower",
            samples={name: series(name, "cpu_us") for name in names},
        ),
        Comparison(
            id="delivered",
            title="Records delivered per second, first call to last acknowledged",
            metric="records per second",
            unit="records/s",
            baseline="EventsHandler",
            samples={name: series(name, "delivered_per_s") for name in delivering},
            notes={
                name: f"lost {max(r['lost'] for r in results[name])} per {records}"
                for name in delivering
            },
        ),
    ]


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
    """Run the benchmark (or, with ``--one``, one run of one contender)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1_000_000)
    parser.add_argument("--deliver", type=int, default=50_000)
    parser.add_argument("--one", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="run only these contenders of the table (comma-separated), and "
        "the baseline",
    )
    parser.add_argument(
        "--before",
        metavar="SRC",
        help="also run the EventsHandler rows with the cse_bridge of SRC (another "
        "checkout's src directory), alternating with this one's",
    )
    add_json_option(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.url, args.records)))
        return

    sink, sink_url = start_sink()
    try:
        print(f"python {sys.version.split()[0]}, sink {sink_url} (child process)")
        only = [name.strip() for name in args.only.split(",")] if args.only else None
        comparisons = compare(sink_url, args.records, args.runs, args.before, only)
    finally:
        sink.terminate()
        sink.wait(10)
    comparisons.append(handle_alone(args.runs))
    facts: list[Fact] = []
    if args.deliver or args.burst:
        proc, url, token = start_gateway()
        try:
            if args.deliver:
                comparisons.extend(gateway_delivery(url, token, args.deliver))
            if args.burst:
                facts = burst_memory(url, token, args.burst)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    if args.json:
        write_results(
            args.json,
            benchmark="emit",
            title="Shipping log records: application thread, process CPU, delivery",
            args=args,
            comparisons=comparisons,
            facts=facts,
        )


def gateway_delivery(url: str, token: str, records: int) -> list[Comparison]:
    """Delivered records/s to the real gateway next to ``wrk``'s requests/s."""
    print("\nend-to-end delivery to the local gateway")
    wrk = wrk_rate(url, token)
    unpacked = delivery(url, token, records)
    packed = delivery(url, token, records * 4, pack=5000)
    if not wrk:
        return []
    print(
        f"  unpacked {unpacked / wrk:.2f}x of wrk's requests/s; packed "
        f"{packed / wrk:.2f}x of wrk's rate in records/s"
    )
    return [
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
    ]


if __name__ == "__main__":
    main()
