"""
The durable spool: write and replay rates beside the in-memory queue, and the
application thread's cost while the engine spools (medians of several runs).

    .venv/bin/python bench/spool.py [--events 5000] [--runs 3]

Rates, records per second:

- ``memory queue -> gateway``: the engine's normal path, submit to acknowledged
  (the baseline);
- ``spool write (outage)``: the gateway refuses connections and ``spool_after=0``,
  so the worker writes every record to disk (one ``fdatasync`` per 32 KiB write);
- ``spool replay -> gateway``: a next engine of the same sandbox sends those
  records from disk to the gateway, until the directory is empty.

Application-thread cost, microseconds per ``logger.info`` through ``EventsHandler``
(the baseline is the gateway up): with the gateway down and a spool the worker is
writing to; and down without a spool (records wait in memory).

The gateway (memory store) runs in a separate process. A script, not a test:
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from _results import Comparison, add_json_option, write_results

from cse_bridge.engine import BatchEngine, EventItem, EventsSink, Spool
from cse_bridge.integrations.logging import EventsHandler

GATEWAY = """
import json, sys
from cse_bridge.gateway import GatewayConfig, GatewayThread
gw = GatewayThread(GatewayConfig(http_port=0, pubsub_port=0, retention=10**7)).start()
print(json.dumps({"url": gw.http_url, "token": gw.issue_token("bench")}), flush=True)
sys.stdin.read()
"""


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _item(index: int) -> EventItem:
    return EventItem("log.info", {"message": f"bench record {index}", "i": index})


def memory_rate(url: str, token: str, count: int) -> float:
    """Records/s from submit to acknowledged, through the memory queue."""
    engine = BatchEngine(EventsSink(url, token), handle_sigterm=False)
    started = time.perf_counter()
    for index in range(count):
        engine.submit(_item(index))
    assert engine.flush(120), engine.stats()
    elapsed = time.perf_counter() - started
    engine.shutdown(5)
    return count / elapsed


def write_rate(token: str, count: int, spool: Path) -> float:
    """Records/s from submit to written (and synced) in the spool."""
    engine = BatchEngine(
        EventsSink(_closed_url(), token),
        spool_dir=str(spool),
        spool_after=0,
        handle_sigterm=False,
    )
    engine.submit(_item(-1))  # the first failure starts the outage
    assert engine.flush(30), engine.stats()
    started = time.perf_counter()
    for index in range(count):
        engine.submit(_item(index))
    assert engine.flush(120), engine.stats()
    elapsed = time.perf_counter() - started
    engine.shutdown(5)
    assert count + 1 == engine.stats().spooled, engine.stats()
    return count / elapsed


def replay_rate(url: str, token: str, count: int, spool: Path) -> float:
    """Records/s a next engine sends from the spool until it is empty."""
    engine = BatchEngine(
        EventsSink(url, token), spool_dir=str(spool), handle_sigterm=False
    )
    directory = Spool(str(spool), 1 << 40)
    started = time.perf_counter()
    engine.submit(EventItem("custom", {"start": True}))
    end = time.monotonic() + 120
    while directory.names() and time.monotonic() < end:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    engine.shutdown(5)
    assert engine.stats().spool_replayed >= count, engine.stats()
    return count / elapsed


def call_cost(
    url: str, token: str, count: int, spool: Path | None, *, up: bool
) -> float:
    """Median microseconds per logger.info call on the application thread."""
    logger = logging.getLogger(f"bench.spool.{time.monotonic_ns()}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    options = {"spool_dir": str(spool), "spool_after": 0} if spool else {}
    handler = EventsHandler(
        gateway_url=url, access_token=token, handle_sigterm=False, **options
    )
    logger.addHandler(handler)
    # A gateway that is down without a spool never resolves a flush: don't wait.
    patience = 60.0 if spool is not None or up else 0.1
    logger.info("warm up")  # starts the worker; the first failure starts an outage
    handler.engine.flush(min(patience, 5.0))
    per_call = []
    for chunk in range(count // 100):
        started = time.perf_counter_ns()
        for index in range(chunk * 100, chunk * 100 + 100):
            logger.info("request %s done", index, extra={"n": index})
        per_call.append((time.perf_counter_ns() - started) / 100 / 1000)
    handler.engine.flush(patience)
    handler.engine.shutdown(5)
    logger.removeHandler(handler)
    return statistics.median(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()
    gateway = subprocess.Popen(
        [sys.executable, "-c", GATEWAY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    work = Path(tempfile.mkdtemp(prefix="cse-bridge-bench-spool-"))
    try:
        assert gateway.stdout is not None
        info = json.loads(gateway.stdout.readline())
        url, token = info["url"], info["token"]
        down = _closed_url()
        rates: dict[str, list[float]] = {
            "memory queue -> gateway": [],
            "spool write (outage)": [],
            "spool replay -> gateway": [],
        }
        costs: dict[str, list[float]] = {
            "gateway up": [],
            "gateway down, spooling": [],
            "gateway down, no spool": [],
        }
        count = args.events
        for run in range(args.runs):  # interleaved, so noise hits everyone alike
            spool = work / f"rates-{run}"
            rates["memory queue -> gateway"].append(memory_rate(url, token, count))
            rates["spool write (outage)"].append(write_rate(token, count, spool))
            rates["spool replay -> gateway"].append(
                replay_rate(url, token, count, spool)
            )
            cost_dir = work / f"cost-{run}"
            measure: dict[str, Callable[[], float]] = {
                "gateway up": lambda: call_cost(url, token, count, None, up=True),
                "gateway down, spooling": partial(
                    call_cost, down, token, count, cost_dir, up=False
                ),
                "gateway down, no spool": lambda: call_cost(
                    down, token, count, None, up=False
                ),
            }
            for name, cost in measure.items():
                costs[name].append(cost())
        base_rate = statistics.median(rates["memory queue -> gateway"])
        base_cost = statistics.median(costs["gateway up"])
        print(f"{'records/s':36} {'median':>10} {'vs memory':>10}")
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"{name:36} {median:10.0f} {median / base_rate:9.2f}x")
        print(f"{'us per log call':36} {'median':>10} {'vs up':>10}")
        for name, values in costs.items():
            median = statistics.median(values)
            print(f"{name:36} {median:10.2f} {median / base_cost:9.2f}x")
        if args.json:
            write_results(
                args.json,
                benchmark="spool",
                title="The durable spool beside the in-memory queue",
                args=args,
                comparisons=[
                    Comparison(
                        id="rates",
                        title="Records per second through the memory queue and "
                        "the spool",
                        metric="records per second",
                        unit="records/s",
                        baseline="memory queue -> gateway",
                        samples=rates,
                    ),
                    Comparison(
                        id="cost",
                        title="Application-thread cost of one log call",
                        metric="microseconds per logger.info call",
                        unit="us",
                        baseline="gateway up",
                        samples=costs,
                        better="lower",
                    ),
                ],
            )
    finally:
        if gateway.stdin is not None:
            gateway.stdin.close()
        gateway.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
