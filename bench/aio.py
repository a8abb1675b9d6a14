"""
The asyncio clients beside the threaded ones and beside the libraries under them.

1. Store rate: events/s POSTed to a local gateway (a subprocess, memory store) with
   ``--concurrency`` requests in flight, by ``AsyncEventsClient`` (tasks on one loop),
   by raw aiohttp and raw httpx (the two async HTTP candidates, sending the same
   request with no checks), and by ``EventsClient`` (requests) on as many threads.
   The baseline is raw aiohttp: the ceiling of an aiohttp client on this machine.
2. Receive rate: events/s delivered from a raw server that writes ``--count`` pushes
   as fast as the socket takes them (bench/pubsub.py's blaster), to an
   ``async for`` over ``AsyncPubSubClient.stream()`` and to a ``for`` over the
   threaded ``PubSubClient.stream()``; against redis.asyncio's pub/sub reading the
   same payloads PUBLISHed to the local Redis (bytes, and bytes + json.loads).

Rounds are interleaved so that noise hits every contender alike; medians are printed.

    .venv/bin/python bench/aio.py [--stores 2000] [--concurrency 16] [--count 50000]
        [--rounds 3] [--json bench/results/aio.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _results import Comparison, add_json_option, write_results
from pubsub import SECRET, payload, start_gateway

HERE = Path(__file__).resolve().parent
DATA = {"message": "GET /api/items 200 in 3.2 ms", "user": "alice", "n": 0}


# --- 1. store rate ---------------------------------------------------------------


async def tasks_rate(
    store: Callable[[], Awaitable[object]], total: int, concurrency: int
) -> float:
    """Calls/s of *store*: one warm-up, then *total* calls over *concurrency* tasks."""
    await store()

    async def worker(offset: int) -> None:
        for _ in range(offset, total, concurrency):
            await store()

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return total / (time.perf_counter() - start)


def store_ours_async(url: str, token: str, total: int, concurrency: int) -> float:
    """Events/s stored by AsyncEventsClient, *concurrency* tasks on one loop."""
    from cse_bridge.aio import AsyncEventsClient

    async def main() -> float:
        async with AsyncEventsClient(
            gateway_url=url, access_token=token, pool_size=concurrency
        ) as client:
            return await tasks_rate(
                lambda: client.store_event("bench", DATA), total, concurrency
            )

    return asyncio.run(main())


def store_raw_aiohttp(url: str, token: str, total: int, concurrency: int) -> float:
    """Events/s POSTed by a bare aiohttp session: the same request, no checks."""
    import aiohttp

    body = json.dumps({"type": "bench", "data": DATA}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def main() -> float:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post() -> None:
                async with session.post(
                    f"{url}/events", data=body, headers=headers
                ) as response:
                    await response.read()
                    assert response.status in (200, 201)

            return await tasks_rate(post, total, concurrency)

    return asyncio.run(main())


def store_raw_httpx(url: str, token: str, total: int, concurrency: int) -> float:
    """Events/s POSTed by a bare httpx.AsyncClient: the same request, no checks."""
    import httpx

    body = json.dumps({"type": "bench", "data": DATA}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def main() -> float:
        limits = httpx.Limits(
            max_connections=concurrency, max_keepalive_connections=concurrency
        )
        async with httpx.AsyncClient(limits=limits) as client:

            async def post() -> None:
                response = await client.post(
                    f"{url}/events", content=body, headers=headers
                )
                assert response.status_code in (200, 201)

            return await tasks_rate(post, total, concurrency)

    return asyncio.run(main())


def store_threaded(url: str, token: str, total: int, concurrency: int) -> float:
    """Events/s stored by EventsClient (requests), *concurrency* threads."""
    from cse_bridge import EventsClient

    with EventsClient(
        gateway_url=url, access_token=token, pool_size=concurrency
    ) as client:
        client.store_event("warmup")

        def worker(offset: int) -> None:
            for _ in range(offset, total, concurrency):
                client.store_event("bench", DATA)

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(worker, range(concurrency)))
        return total / (time.perf_counter() - start)


# --- 2. receive rate -------------------------------------------------------------


def blaster(count: int) -> tuple[subprocess.Popen[bytes], int]:
    """bench/pubsub.py's raw server: +OK, then *count* pushes at once."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "pubsub.py"), "--blaster", str(count)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def receive_ours_async(count: int) -> float:
    """Events/s an ``async for`` over AsyncPubSubClient.stream() takes."""
    from cse_bridge.aio import AsyncPubSubClient

    proc, port = blaster(count)

    async def main() -> float:
        client = AsyncPubSubClient(
            access_token="x",  # noqa: S106 - the raw server checks nothing
            sandbox_id="bench-sandbox",
            host="127.0.0.1",
            port=port,
            auto_reconnect=False,
        )
        seen = 0
        first = 0.0
        async for _ in client.stream():
            if not seen:
                first = time.perf_counter()
            seen += 1
            if seen == count:
                break
        elapsed = time.perf_counter() - first
        await client.disconnect()
        return (count - 1) / elapsed

    try:
        return asyncio.run(main())
    finally:
        proc.kill()
        proc.wait()


def receive_threaded(count: int) -> float:
    """Events/s a ``for`` over the threaded PubSubClient.stream() takes."""
    from cse_bridge.subscriber import PubSubClient

    proc, port = blaster(count)
    client = PubSubClient(
        access_token="x",  # noqa: S106 - the raw server checks nothing
        sandbox_id="bench-sandbox",
        host="127.0.0.1",
        port=port,
        auto_reconnect=False,
    )
    try:
        first = 0.0
        for seen, _ in enumerate(client.stream(), start=1):
            if seen == 1:
                first = time.perf_counter()
            if seen == count:
                break
        return (count - 1) / (time.perf_counter() - first)
    finally:
        client.disconnect()
        proc.kill()
        proc.wait()


def receive_redis_asyncio(count: int, decode: bool) -> float:
    """Events/s redis.asyncio's pub/sub delivers, payloads ready in Redis."""
    import redis.asyncio as aioredis

    async def main() -> float:
        channel = f"cse-bridge-bench-{uuid.uuid4().hex}"
        sub = aioredis.Redis()
        pub = aioredis.Redis()
        pubsub = sub.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        blobs = [payload(i) for i in range(count)]
        for start in range(0, count, 1000):
            pipe = pub.pipeline(transaction=False)
            for blob in blobs[start : start + 1000]:
                pipe.publish(channel, blob)
            await pipe.execute()
        seen = 0
        first = 0.0
        while seen < count:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=1.0
            )
            if message is None:
                continue
            if decode:
                json.loads(message["data"])
            if not seen:
                first = time.perf_counter()
            seen += 1
        elapsed = time.perf_counter() - first
        await pubsub.aclose()
        await sub.aclose()
        await pub.aclose()
        return (count - 1) / elapsed

    return asyncio.run(main())


# --- the run ---------------------------------------------------------------------


def print_table(title: str, samples: dict[str, list[float]], base: str) -> None:
    """Median, spread and ratio to *base* of each contender."""
    print(f"\n{title}")
    reference = statistics.median(samples[base])
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"  {name:44} {median:10.0f}  x{median / reference:5.2f}  "
            f"[{min(values):.0f}..{max(values):.0f}]"
        )


def main() -> None:
    """Run both parts, print the medians, write --json if asked."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args()

    from cse_bridge.gateway import issue_token

    stores: dict[str, list[float]] = {
        "raw aiohttp": [],
        "raw httpx": [],
        "AsyncEventsClient (aiohttp)": [],
        "EventsClient (requests, threads)": [],
    }
    runners: dict[str, Any] = dict(
        zip(
            stores,
            (store_raw_aiohttp, store_raw_httpx, store_ours_async, store_threaded),
            strict=True,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_gateway(Path(tmp))
        try:
            for _ in range(args.rounds):
                for name, runner in runners.items():
                    # A fresh sandbox per run: every run stores into an empty log.
                    token = issue_token(SECRET, f"bench-{uuid.uuid4().hex[:8]}", 1)
                    stores[name].append(
                        runner(address["http"], token, args.stores, args.concurrency)
                    )
        finally:
            proc.terminate()
            proc.wait()

    receive: dict[str, list[float]] = {
        "redis.asyncio get_message (bytes)": [],
        "redis.asyncio get_message + json.loads": [],
        "AsyncPubSubClient stream() (SandboxEvent)": [],
        "PubSubClient stream() (threads, SandboxEvent)": [],
    }
    for _ in range(args.rounds):
        receive["redis.asyncio get_message (bytes)"].append(
            receive_redis_asyncio(args.count, decode=False)
        )
        receive["redis.asyncio get_message + json.loads"].append(
            receive_redis_asyncio(args.count, decode=True)
        )
        receive["AsyncPubSubClient stream() (SandboxEvent)"].append(
            receive_ours_async(args.count)
        )
        receive["PubSubClient stream() (threads, SandboxEvent)"].append(
            receive_threaded(args.count)
        )

    print_table(
        f"store rate, {args.stores} events x {args.rounds} rounds, "
        f"{args.concurrency} in flight (median events/s)",
        stores,
        "raw aiohttp",
    )
    print_table(
        f"receive rate, {args.count} events x {args.rounds} rounds (median events/s)",
        receive,
        "redis.asyncio get_message (bytes)",
    )
    if args.json:
        write_results(
            args.json,
            benchmark="aio",
            title="The asyncio clients beside the threaded ones and the raw libraries",
            args=args,
            comparisons=[
                Comparison(
                    id="store",
                    title=(
                        f"Store rate, {args.concurrency} requests in flight, "
                        "local gateway"
                    ),
                    metric="events stored per second",
                    unit="events/s",
                    baseline="raw aiohttp",
                    samples=stores,
                ),
                Comparison(
                    id="receive",
                    title=f"Receive rate, {args.count} events per round",
                    metric="events per second",
                    unit="events/s",
                    baseline="redis.asyncio get_message (bytes)",
                    samples=receive,
                ),
            ],
        )


if __name__ == "__main__":
    main()
