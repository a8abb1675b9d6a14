"""
Pub/sub benchmark: ``PubSubClient`` beside redis-py's own pub/sub, in one run.

1. Store-to-listener latency at a fixed rate (default 1 000 events/s): a producer
   process POSTs through the real gateway (a subprocess) and each event is timed from
   just before the POST to our listener call; for redis-py a producer process
   PUBLISHes the same JSON payloads to a unique channel on the local Redis, timed to
   ``get_message``. Producers run in their own process, as a sandbox does: in the
   listener's process their threads would hold the GIL and add up to the 5 ms switch
   interval to the listener's wake-up.
2. Maximum receive rate: ours reads pushes that a raw server (a subprocess) writes as
   fast as the socket takes them; redis-py reads the same payloads that were
   PUBLISHed to it in pipelines while it was not reading (so Redis holds them ready).

Each part runs ``--rounds`` times; medians are printed. The machine may be noisy:
the figures are for comparison in one run, not absolutes.

    .venv/bin/python bench/pubsub.py [--rate 1000] [--seconds 5] [--count 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _results import Comparison, Fact, add_json_option, write_results

SECRET = "bench-secret-0123456789abcdef0123456789"
API_KEY = "bench-key"
MESSAGE = "GET /api/items 200 in 3.2 ms from 10.0.0.7, user=alice"


def payload(seq: int, sent_ns: int = 0) -> bytes:
    """A SandboxEvent JSON as the gateway pushes it (~250 bytes)."""
    return json.dumps(
        {
            "id": f"evt_{seq:012d}",
            "sandboxId": "bench-sandbox",
            "workspaceId": 1,
            "type": "log.info",
            "data": {"message": MESSAGE, "seq": seq, "sentNs": sent_ns},
            "timestamp": 1_732_780_000_000 + seq,
        },
        separators=(",", ":"),
    ).encode()


def frame(data: bytes) -> bytes:
    """The RESP ``message`` push of *data*."""
    return b"*3\r\n$7\r\nmessage\r\n$13\r\nbench-sandbox\r\n$%d\r\n%s\r\n" % (
        len(data),
        data,
    )


def pct(values: list[float], q: float) -> float:
    """The *q* quantile of *values* (0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the raw push server (subprocess) -------------------------------------------------


def serve_blaster(count: int) -> None:
    """Accept connections; after SUBSCRIBE send +OK then *count* pushes at once."""
    blob = b"".join(frame(payload(i)) for i in range(count))

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readline()
        writer.write(b"+OK\r\n" + blob)
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


# --- ours -----------------------------------------------------------------------------


def start_gateway(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run ``cse-bridge gateway`` (memory store) in a subprocess; return its address."""
    ready = tmp / "ready.json"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cse_bridge", "gateway", "--port", "0"),
            *("--pubsub-port", "0", "--secret", SECRET, "--api-key", f"{API_KEY}=1"),
            *("--ready-file", str(ready)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def ours_latency(address: dict[str, Any], rate: int, seconds: float) -> list[float]:
    """Milliseconds from before each POST to our listener, at *rate* events/s."""
    from cse_bridge.gateway import issue_token
    from cse_bridge.subscriber import PubSubClient

    sandbox = f"bench-{uuid.uuid4().hex[:8]}"
    token = issue_token(SECRET, sandbox, 1)
    host, port = address["pubsub"].rsplit(":", 1)
    total = int(rate * seconds)
    latencies: list[float] = []
    done = threading.Event()

    def on_event(event: Any) -> None:
        latencies.append((time.time_ns() - event.data["sentNs"]) / 1e6)
        if len(latencies) == total:
            done.set()

    client = PubSubClient(access_token=token, host=host, port=int(port))
    client.on("event", on_event)
    client.connect()
    job = {"url": address["http"], "token": token, "rate": rate, "total": total}
    subprocess.run([sys.executable, __file__, "--produce", json.dumps(job)], check=True)
    done.wait(30)
    client.disconnect()
    return latencies


def produce(job: dict[str, Any]) -> None:
    """Producer process: POST *total* events at *rate* through the gateway."""
    from cse_bridge.client import EventsClient

    rate, total = job["rate"], job["total"]
    senders = 2  # one blocking POST at a time each: two keep up with the rate
    with EventsClient(gateway_url=job["url"], access_token=job["token"]) as http:

        def send(offset: int) -> None:
            start = time.perf_counter()
            for i in range(offset, total, senders):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                http.store_event(
                    "log.info", {"message": MESSAGE, "seq": i, "sentNs": time.time_ns()}
                )

        threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def produce_redis(job: dict[str, Any]) -> None:
    """Producer process: PUBLISH *total* payloads at *rate* to *channel*."""
    import redis

    pub = redis.Redis()
    rate, total = job["rate"], job["total"]
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pub.publish(job["channel"], payload(i, time.time_ns()))


def ours_rate(count: int) -> float:
    """Events/s our client delivers to a listener from a server that is never slow."""
    from cse_bridge.subscriber import PubSubClient

    proc = subprocess.Popen(
        [sys.executable, __file__, "--blaster", str(count)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    times: list[float] = []
    done = threading.Event()

    def on_event(_: Any) -> None:
        if not times:
            times.append(time.perf_counter())
        nonlocal seen
        seen += 1
        if seen == count:
            times.append(time.perf_counter())
            done.set()

    seen = 0
    client = PubSubClient(
        access_token="x",  # noqa: S106 - the raw server checks nothing
        sandbox_id="bench-sandbox",
        host="127.0.0.1",
        port=port,
        auto_reconnect=False,
    )
    client.on("event", on_event)
    try:
        client.connect()
        done.wait(60)
    finally:
        client.disconnect()
        proc.kill()
        proc.wait()
    return (count - 1) / (times[1] - times[0])


# --- redis-py -------------------------------------------------------------------------


def redis_latency(rate: int, seconds: float) -> list[float]:
    """Milliseconds from before each PUBLISH to redis-py's ``get_message``."""
    import redis

    channel = f"cse-bridge-bench-{uuid.uuid4().hex}"
    total = int(rate * seconds)
    sub = redis.Redis()
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1.0)
    latencies: list[float] = []

    def listen() -> None:
        while len(latencies) < total:
            msg = pubsub.get_message(timeout=1.0)
            if msg is not None:
                obj = json.loads(msg["data"])
                latencies.append((time.time_ns() - obj["data"]["sentNs"]) / 1e6)

    thread = threading.Thread(target=listen)
    thread.start()
    job = {"channel": channel, "rate": rate, "total": total}
    subprocess.run(
        [sys.executable, __file__, "--produce-redis", json.dumps(job)], check=True
    )
    thread.join(30)
    pubsub.close()
    return latencies


def redis_rate(count: int, decode: bool) -> float:
    """Events/s redis-py's ``get_message`` delivers, payloads ready in Redis."""
    import redis

    channel = f"cse-bridge-bench-{uuid.uuid4().hex}"
    pubsub = redis.Redis().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=1.0)
    pub = redis.Redis()
    blobs = [payload(i) for i in range(count)]
    for start in range(0, count, 1000):
        pipe = pub.pipeline(transaction=False)
        for blob in blobs[start : start + 1000]:
            pipe.publish(channel, blob)
        pipe.execute()
    seen = 0
    first = 0.0
    while seen < count:
        msg = pubsub.get_message(timeout=1.0)
        if msg is None:
            continue
        if decode:
            json.loads(msg["data"])
        if not seen:
            first = time.perf_counter()
        seen += 1
    elapsed = time.perf_counter() - first
    pubsub.close()
    return (count - 1) / elapsed


def write_json(
    args: argparse.Namespace,
    lat: dict[str, list[list[float]]],
    receive: dict[str, list[float]],
) -> None:
    """Write latency (p50, p99 per round) and receive rate against redis-py."""
    comparisons = [
        Comparison(
            id=f"latency-p{round(q * 100)}",
            title=f"Store-to-listener latency p{round(q * 100)} at {args.rate} events/s",
            metric=f"milliseconds, p{round(q * 100)} of each round",
            unit="ms",
            baseline="redis-py",
            better="lower",
            samples={name: [pct(r, q) for r in rounds] for name, rounds in lat.items()},
        )
        for q in (0.50, 0.99)
    ]
    comparisons.append(
        Comparison(
            id="receive",
            title=f"Maximum receive rate, {args.count} events per round",
            metric="events per second",
            unit="events/s",
            baseline="redis-py get_message (bytes)",
            samples=receive,
        )
    )
    facts = [
        Fact(
            f"{name}: worst latency (median of rounds)",
            statistics.median(max(r) for r in rounds),
            "ms",
        )
        for name, rounds in lat.items()
    ]
    write_results(
        args.json,
        benchmark="pubsub",
        title="PubSubClient against redis-py's pub/sub",
        args=args,
        comparisons=comparisons,
        facts=facts,
    )


def main() -> None:
    """Run both parts and print the medians side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blaster", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--produce", help=argparse.SUPPRESS)
    parser.add_argument("--produce-redis", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args()
    if args.blaster:
        serve_blaster(args.blaster)
        return
    if args.produce:
        produce(json.loads(args.produce))
        return
    if args.produce_redis:
        produce_redis(json.loads(args.produce_redis))
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_gateway(Path(tmp))
        try:
            lat: dict[str, list[list[float]]] = {"ours": [], "redis-py": []}
            for _ in range(args.rounds):
                lat["ours"].append(ours_latency(address, args.rate, args.seconds))
                lat["redis-py"].append(redis_latency(args.rate, args.seconds))
        finally:
            proc.terminate()
            proc.wait()
    print(
        f"\nlatency at {args.rate} events/s, {args.seconds} s x {args.rounds} rounds "
        "(median of rounds, ms)"
    )
    print(f"{'':10} {'p50':>8} {'p99':>8} {'max':>8} {'n':>7}")
    for name, rounds in lat.items():
        p50 = statistics.median(pct(r, 0.50) for r in rounds)
        p99 = statistics.median(pct(r, 0.99) for r in rounds)
        worst = statistics.median(max(r) for r in rounds)
        print(f"{name:10} {p50:8.2f} {p99:8.2f} {worst:8.2f} {len(rounds[0]):7d}")
    ours = [ours_rate(args.count) for _ in range(args.rounds)]
    raw = [redis_rate(args.count, decode=False) for _ in range(args.rounds)]
    decoded = [redis_rate(args.count, decode=True) for _ in range(args.rounds)]
    mo, mr, md = (statistics.median(x) for x in (ours, raw, decoded))
    print(
        f"\nmax receive rate, {args.count} events x {args.rounds} rounds "
        "(median, events/s)"
    )
    print(
        f"ours (SandboxEvent to a listener)  {mo:10.0f}   rounds {[round(x) for x in ours]}"
    )
    print(
        f"redis-py get_message (bytes)       {mr:10.0f}   rounds {[round(x) for x in raw]}"
    )
    print(
        f"redis-py get_message + json.loads  {md:10.0f}   rounds {[round(x) for x in decoded]}"
    )
    print(
        f"ratio ours / redis-py bytes: {mo / mr:.2f}; ours / redis-py+json: {mo / md:.2f}"
    )
    if args.json:
        receive = {
            "ours (SandboxEvent to a listener)": ours,
            "redis-py get_message (bytes)": raw,
            "redis-py get_message + json.loads": decoded,
        }
        write_json(args, lat, receive)


if __name__ == "__main__":
    main()
