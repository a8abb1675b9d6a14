"""
POST /events requests per second: the gateway's stores against a bare aiohttp handler,
one process and two processes sharing a port (SO_REUSEPORT); then GET with and without
a ``type`` filter on a sandbox holding 100 000 events.

Each target runs in its own process(es); ``wrk`` (Debian package ``wrk``) drives it
with the same request. Rounds are interleaved so that noise on this shared machine hits
every target alike; the report gives medians and ratios. wrk, the gateways and Redis
share the machine's cores: on 2 cores, two gateway processes compete with wrk and Redis.
"memory x2" is two separate logs (not a valid deployment): it shows what two processes
of the fastest store can do here. Redis keys go under a fresh prefix, deleted at the
end.

    python bench/gateway.py [--rounds 5] [--duration 3] [--connections 32]
        [--redis redis://127.0.0.1:6379/0] [--skip-get]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import redis
from _results import Comparison, Fact, add_json_option, write_results
from _wrk import POST_LUA, run_wrk

HERE = Path(__file__).resolve().parent
GET_LUA = """
wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY")
"""
GET_QUERIES = {
    "newest 100": "limit=100",
    "type=rare, newest 100": "type=bench.rare&limit=100",
    "type=rare, since=0, 100": "type=bench.rare&since=0&limit=100",
}
"""GET queries on the filled sandbox; 1% of its events are ``bench.rare``."""
FILL = 100_000

Procs = list[subprocess.Popen[str]]


def start(args: list[str], processes: int = 1) -> tuple[Procs, dict[str, str]]:
    """Start a target (*processes* sharing a port); return them and its address."""
    procs: Procs = []
    info: dict[str, str] = {}
    extra = ["--reuse-port"] if processes > 1 else []
    for _ in range(processes):
        port = ["--port", info["http"].rsplit(":", 1)[1]] if info else []
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_serve.py"), *args, *extra, *port],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
    return procs, info


def report(title: str, rates: dict[str, list[float]], base: str) -> None:
    """Print medians, spread and the ratio to *base*."""
    ref = statistics.median(rates[base])
    print(title)
    print(
        f"{'target':<26} {'median req/s':>13} {'min':>9} {'max':>9} {'vs ' + base:>16}"
    )
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"{name:<26} {med:>13.0f} {min(values):>9.0f} {max(values):>9.0f} {med / ref:>16.2f}"
        )


def drop_keys(url: str, prefixes: list[str]) -> dict[str, int]:
    """Delete every key under *prefixes*; return the bytes each prefix used."""
    client = redis.Redis.from_url(url)
    used: dict[str, int] = {}
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        used[prefix] = sum(int(client.memory_usage(k) or 0) for k in keys)
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    client.close()
    return used


def bench_post(
    opts: argparse.Namespace, tmp: Path, script: Path
) -> tuple[Comparison, list[Fact]]:
    """POST /events: every store, one and two processes."""
    run = uuid.uuid4().hex[:8]
    prefixes = [f"cse-bench-{run}-1", f"cse-bench-{run}-2"]
    targets: dict[str, tuple[list[str], int]] = {
        "bare aiohttp x1": (["bare"], 1),
        "bare aiohttp x2": (["bare"], 2),
        "bare aiohttp low-level x1": (["bare-lowlevel"], 1),
        "memory store x1": (["gateway", "memory://"], 1),
        "memory store x2 (2 logs)": (["gateway", "memory://"], 2),
        "sqlite store x1": (["gateway", f"sqlite:///{tmp / 'events.db'}"], 1),
        "redis store x1": (["gateway", f"{opts.redis}?prefix={prefixes[0]}"], 1),
        "redis store x2": (["gateway", f"{opts.redis}?prefix={prefixes[1]}"], 2),
    }
    procs = {name: start(args, n) for name, (args, n) in targets.items()}
    rates: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for _, info in procs.values():  # warm-up
            run_wrk(info["http"], info["token"], str(script), 1, opts.connections)
        for _ in range(opts.rounds):
            for name, (_, info) in procs.items():
                rates[name].append(
                    run_wrk(
                        info["http"],
                        info["token"],
                        str(script),
                        opts.duration,
                        opts.connections,
                    )
                )
    finally:
        for group, _ in procs.values():
            for proc in group:
                proc.kill()
                proc.wait()
        drop_keys(opts.redis, prefixes)
    report(
        f"POST /events, wrk -t1 -c{opts.connections}, {opts.rounds} rounds of "
        f"{opts.duration}s, {os.cpu_count()} cores shared by wrk, gateways and Redis",
        rates,
        "memory store x1",
    )
    facts = []
    for name in ("bare aiohttp", "memory store", "redis store"):
        one = statistics.median(rates[f"{name} x1"])
        two = statistics.median(
            rates[f"{name} x2" if name != "memory store" else f"{name} x2 (2 logs)"]
        )
        print(f"two processes / one process, {name}: {two / one:.2f}")
        facts.append(Fact(f"two processes / one process, {name}", two / one, "times"))
    post = Comparison(
        id="post",
        title=f"POST /events, wrk -t1 -c{opts.connections}",
        metric="requests per second",
        unit="req/s",
        baseline="memory store x1",
        samples=rates,
    )
    return post, facts


def bench_get(opts: argparse.Namespace, tmp: Path) -> tuple[Comparison, Fact]:
    """GET on a sandbox of FILL events, with and without a type filter."""
    prefix = f"cse-bench-{uuid.uuid4().hex[:8]}-get"
    script = tmp / "get.lua"
    script.write_text(GET_LUA)
    stores = {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp / 'get.db'}",
        "redis": f"{opts.redis}?prefix={prefix}",
    }
    procs = {
        name: start(["gateway", url, "--fill", str(FILL)])
        for name, url in stores.items()
    }
    rates: dict[str, list[float]] = {
        f"{store}: {query}": [] for store in stores for query in GET_QUERIES
    }
    try:
        for _ in range(opts.rounds):
            for store, (_, info) in procs.items():
                for query, params in GET_QUERIES.items():
                    rates[f"{store}: {query}"].append(
                        run_wrk(
                            info["http"],
                            "",
                            str(script),
                            opts.duration,
                            opts.connections,
                            path=f"/events/bench-sandbox?{params}",
                        )
                    )
    finally:
        for group, _ in procs.values():
            for proc in group:
                proc.kill()
                proc.wait()
        used = drop_keys(opts.redis, [prefix])
    report(
        f"GET /events/<sandbox of {FILL} events, 1% bench.rare>, wrk -t1 "
        f"-c{opts.connections}, {opts.rounds} rounds of {opts.duration}s",
        rates,
        "memory: newest 100",
    )
    client = redis.Redis.from_url(opts.redis)
    client.close()
    print(
        f"redis memory for {FILL} events incl. type indexes: {used[prefix] / FILL:.0f} B/event"
    )
    get = Comparison(
        id="get",
        title=f"GET on a sandbox of {FILL} events (1% bench.rare)",
        metric="requests per second",
        unit="req/s",
        baseline="memory: newest 100",
        samples=rates,
    )
    return get, Fact(
        "redis memory per event, type indexes included", used[prefix] / FILL, "B"
    )


def main() -> None:
    """Run the comparisons and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--skip-get", action="store_true")
    parser.add_argument("--skip-post", action="store_true")
    add_json_option(parser)
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="cse-bench-"))
    script = tmp / "post.lua"
    script.write_text(POST_LUA)
    comparisons: list[Comparison] = []
    facts: list[Fact] = []
    try:
        if not opts.skip_post:
            post, post_facts = bench_post(opts, tmp, script)
            comparisons.append(post)
            facts.extend(post_facts)
        if not opts.skip_get:
            get, memory = bench_get(opts, tmp)
            comparisons.append(get)
            facts.append(memory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        write_results(
            opts.json,
            benchmark="gateway",
            title="Gateway requests/s per store, against a bare aiohttp handler",
            args=opts,
            comparisons=comparisons,
            facts=facts,
        )


if __name__ == "__main__":
    main()
