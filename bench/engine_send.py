"""
Delivered events per second to one local gateway: the engine's transport next to plain
Python clients, side by side in one run (medians of several runs, and ratios).

    .venv/bin/python bench/engine_send.py [--events 5000] [--runs 5] [--pack 100]

The engine and aiohttp keep ``CSE_BRIDGE_CONNECTIONS`` connections (the engine's
default unless set).

The gateway (memory store) runs in a separate process so that its CPU is not the
clients' GIL. A script, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import requests
from _results import Comparison, add_json_option, write_results
from _wrk import engine_connections

from cse_bridge.engine import BatchEngine, EventItem, EventsSink

CONNECTIONS = engine_connections()
"""The engine's connection count (``CSE_BRIDGE_CONNECTIONS``); aiohttp gets as many."""

GATEWAY = """
import json, sys, threading
from cse_bridge.gateway import GatewayConfig, GatewayThread
gw = GatewayThread(GatewayConfig(http_port=0, pubsub_port=0, retention=10**7)).start()
print(json.dumps({"url": gw.http_url, "token": gw.issue_token("bench")}), flush=True)
sys.stdin.read()
"""

BODY = json.dumps(
    {"type": "log.info", "data": {"message": "bench record 12345", "i": 1, "k": "v"}}
).encode()


def engine_rate(url: str, token: str, count: int, pack: int) -> float:
    engine = BatchEngine(EventsSink(url, token), pack=pack, schedule_delay=0.05)
    started = time.perf_counter()
    for index in range(count):
        engine.submit(EventItem("log.info", {"message": "bench record", "i": index}))
    assert engine.flush(120), engine.stats()
    elapsed = time.perf_counter() - started
    engine.shutdown(5)
    return count / elapsed


def http_client_rate(url: str, token: str, count: int) -> float:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for _ in range(count):
        conn.request("POST", "/events", BODY, headers)
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def requests_rate(url: str, token: str, count: int) -> float:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for _ in range(count):
        session.post(url + "/events", data=BODY, headers=headers).raise_for_status()
    elapsed = time.perf_counter() - started
    session.close()
    return count / elapsed


def aiohttp_rate(url: str, token: str, count: int) -> float:
    async def run() -> float:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            todo = iter(range(count))

            async def lane() -> None:
                for _ in todo:
                    async with session.post(
                        url + "/events", data=BODY, headers=headers
                    ) as r:
                        await r.read()

            started = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(CONNECTIONS)))
            return count / (time.perf_counter() - started)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pack", type=int, default=100)
    add_json_option(parser)
    args = parser.parse_args()
    gateway = subprocess.Popen(
        [sys.executable, "-c", GATEWAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert gateway.stdout is not None
        info = json.loads(gateway.stdout.readline())
        url, token = info["url"], info["token"]
        candidates: dict[str, Callable[[], float]] = {
            "engine (unpacked)": lambda: engine_rate(url, token, args.events, 0),
            "http.client 1 thread": lambda: http_client_rate(url, token, args.events),
            "requests.Session": lambda: requests_rate(url, token, args.events),
            f"aiohttp {CONNECTIONS} conns": lambda: aiohttp_rate(
                url, token, args.events
            ),
            f"engine pack={args.pack} (records/s)": lambda: engine_rate(
                url, token, args.events * 20, args.pack
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.runs):  # interleaved, so noise hits everyone alike
            for name, measure in candidates.items():
                results[name].append(measure())
        medians = {name: statistics.median(rates) for name, rates in results.items()}
        best_name = max(
            (name for name in medians if not name.startswith("engine")),
            key=medians.__getitem__,
        )
        best_plain = medians[best_name]
        print(f"{'candidate':36} {'median/s':>10} {'vs best plain':>14}")
        for name, rate in medians.items():
            print(f"{name:36} {rate:10.0f} {rate / best_plain:13.2f}x")
        if args.json:
            delivered = Comparison(
                id="send",
                title=f"Delivered to one local gateway, {CONNECTIONS} connections",
                metric="events delivered per second (packed: records)",
                unit="events/s",
                baseline=best_name,
                samples=results,
            )
            write_results(
                args.json,
                benchmark="engine_send",
                title="The engine's transport against plain Python HTTP clients",
                args=args,
                comparisons=[delivered],
            )
    finally:
        if gateway.stdin is not None:
            gateway.stdin.close()
        gateway.wait(10)


if __name__ == "__main__":
    main()
