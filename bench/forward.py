"""
bench/forward.py: the forwarder's throughput and end-to-end latency.

1. events/s from the gateway to a sink: N stored ``log.info`` events replayed with
   ``since=0`` into the logging sink (a counting handler) and the OTLP/HTTP sink (rotel,
   blackhole exporter), until the last one is delivered / exported.
2. latency from ``logger.info`` in a sandbox subprocess (EventsHandler, engine
   ``CSE_BRIDGE_SCHEDULE_DELAY`` as given) to the record reaching a handler in the
   forwarder's process, at RATE records/s: p50/p99.

    .venv/bin/python bench/forward.py [--events 20000] [--rate 500] [--seconds 5]
                                      [--rounds 1]

With ``--rounds N`` both parts run N times (a fresh sandbox each) and print each round.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _results import Comparison, add_json_option, write_results
from tests.conftest import make_gateway_config
from tests.forwarder.rotel import Received, RotelReceiver
from tests.helpers import API_KEY

from cse_bridge.client import EventsClient
from cse_bridge.forwarder import Forwarder, LoggingSink
from cse_bridge.gateway import GatewayThread

SANDBOX = """
import logging, sys, time
from cse_bridge.integrations.logging import EventsHandler
root = logging.getLogger(); root.setLevel(logging.INFO); root.addHandler(EventsHandler())
log = logging.getLogger("bench")
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
start = time.perf_counter()
for i in range(int(rate * seconds)):
    target = start + i / rate
    while (now := time.perf_counter()) < target:
        time.sleep(min(target - now, 0.001))
    log.info("r %d", i)
"""


class Count(logging.Handler):
    def __init__(self, total: int) -> None:
        super().__init__()
        self.n, self.total, self.done = 0, total, threading.Event()
        self.latencies: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.latencies.append(time.time() - record.created)
        self.n += 1
        if self.n >= self.total:
            self.done.set()


def options(gw: GatewayThread) -> dict:
    return {"api_key": API_KEY, "gateway_url": gw.http_url, "host": gw.pubsub_host,
            "port": gw.pubsub_port}  # fmt: skip


def fill(gw: GatewayThread, sandbox: str, n: int) -> None:
    token = gw.issue_token(sandbox, 1)
    data = {"message": "hello", "level": "INFO", "levelno": 20, "logger": "app",
            "timeUnixNano": time.time_ns(), "attributes": {"k": 1}}  # fmt: skip
    with EventsClient(gateway_url=gw.http_url, access_token=token) as c:
        for _ in range(n):
            c.store_event("log.info", data)


def throughput_logging(gw: GatewayThread, n: int, sandbox: str = "tp-log") -> float:
    fill(gw, sandbox, n)
    count = Count(n)
    target = logging.getLogger("sandbox")
    target.addHandler(count)
    target.setLevel(logging.INFO)
    target.propagate = False
    start = time.perf_counter()
    with Forwarder([LoggingSink()], tokens={sandbox: gw.issue_token(sandbox, 1)},
                   since=0, **options(gw)):  # fmt: skip
        count.done.wait(120)
        elapsed = time.perf_counter() - start
    target.removeHandler(count)
    return n / elapsed


def throughput_otlp(gw: GatewayThread, n: int, sandbox: str = "tp-otlp") -> float:
    from cse_bridge.forwarder.otlp import OtlpSink

    fill(gw, sandbox, n)
    received = Received()
    rotel = RotelReceiver(received)
    rotel.start()
    sink = OtlpSink(rotel.http_url)
    start = time.perf_counter()
    with Forwarder([sink], tokens={sandbox: gw.issue_token(sandbox, 1)},
                   since=0, **options(gw)) as fwd:  # fmt: skip
        deadline = time.monotonic() + 300  # never loop forever on a lost event
        while fwd.stats().delivered < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {fwd.stats()} of {n} events in 300 s")
            fwd.flush(0.5)
        sink.flush(60)
        elapsed = time.perf_counter() - start
    rotel.stop()
    received.close()
    return n / elapsed


def latency(gw: GatewayThread, rate: float, seconds: float, delay: str) -> list[float]:
    total = int(rate * seconds)
    token = gw.issue_token("lat", 1)
    count = Count(total)
    target = logging.getLogger("sandbox")
    target.addHandler(count)
    env = dict(os.environ, COMPUTESDK_GATEWAY_URL=gw.http_url,
               COMPUTESDK_ACCESS_TOKEN=token, CSE_BRIDGE_SCHEDULE_DELAY=delay)  # fmt: skip
    with Forwarder([LoggingSink()], tokens={"lat": token}, **options(gw)):
        subprocess.run([sys.executable, "-c", SANDBOX, str(rate), str(seconds)],
                       env=env, check=True)  # fmt: skip
        count.done.wait(30)
    target.removeHandler(count)
    return sorted(count.latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    add_json_option(parser)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"logging sink": [], "OTLP/HTTP sink (rotel)": []}
    delays = ("1.0", "0.05", "0.01")
    p50: dict[str, list[float]] = {f"schedule_delay {d} s": [] for d in delays}
    p99: dict[str, list[float]] = {f"schedule_delay {d} s": [] for d in delays}
    with GatewayThread(make_gateway_config()) as gw:
        for round_ in range(args.rounds):
            rate = throughput_logging(gw, args.events, f"tp-log-{round_}")
            rates["logging sink"].append(rate)
            print(f"logging sink: {rate:,.0f} events/s")
            rate = throughput_otlp(gw, args.events, f"tp-otlp-{round_}")
            rates["OTLP/HTTP sink (rotel)"].append(rate)
            print(f"OTLP/HTTP sink (rotel): {rate:,.0f} events/s")
            for delay in delays:
                lat = latency(gw, args.rate, args.seconds, delay)
                q = statistics.quantiles(lat, n=100)
                p50[f"schedule_delay {delay} s"].append(q[49] * 1000)
                p99[f"schedule_delay {delay} s"].append(q[98] * 1000)
                print(f"latency at {args.rate:.0f}/s, sandbox schedule_delay {delay} s: "
                      f"n={len(lat)} p50 {q[49] * 1000:.1f} ms p99 {q[98] * 1000:.1f} ms")  # fmt: skip
    if args.json:
        latency_panels = [
            Comparison(
                id=f"latency-{label}",
                title=f"Sandbox logger.info to the forwarder's handler, {label}, "
                f"{args.rate:.0f} records/s",
                metric=f"milliseconds, {label} of each round",
                unit="ms",
                baseline="schedule_delay 1.0 s",
                better="lower",
                samples=samples,
            )
            for label, samples in (("p50", p50), ("p99", p99))
        ]
        write_results(
            args.json,
            benchmark="forward",
            title="The forwarder: replay throughput per sink, end-to-end latency",
            args=args,
            comparisons=[
                Comparison(
                    id="throughput",
                    title=f"Replay of {args.events} stored events into a sink",
                    metric="events per second",
                    unit="events/s",
                    baseline="logging sink",
                    samples=rates,
                ),
                *latency_panels,
            ],
        )


if __name__ == "__main__":
    main()
