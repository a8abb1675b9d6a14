"""
A bounded soak of the gateway under hostile load: is its memory flat, its POST fast?

Starts ``cse-bridge gateway`` (memory store) in its own process, then:

1. **Cost per connection and per subscriber**: opens N idle, unauthenticated pub/sub
   connections, then N subscribers (one sandbox each), and reads the gateway's
   resident memory (``/proc/PID/status``) before and after each step; the difference
   over N is what one costs, and a GiB over that is how many a GiB holds.
2. **Soak** for ``--seconds``: steady ``POST /events`` at ``--rate`` per second over
   ``--sandboxes`` sandboxes, each followed by a subscriber that reads everything,
   plus subscribers that never read (``--slow``, kept under the per-subscriber and
   total output caps), plus ``--idle`` connections that say nothing (closed by the
   gateway's ``--idle-timeout`` and reopened), sampling the resident memory every
   second and timing every POST.

Reports the memory at the start and end of the soak and its peak, p50/p99 POST
latency, and the per-GiB figures. The load runs in this process, on the same cores as
the gateway: on a shared 2-core machine, read the latencies as upper bounds.

    python bench/soak.py [--seconds 60] [--rate 200] [--sandboxes 20] [--slow 20]
        [--idle 500] [--count 1000] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from _results import Comparison, Fact, add_json_option, write_results

from cse_bridge.gateway import issue_token

SECRET = "bench-secret-0123456789abcdef0123456789"
API_KEY = "bench-key"
BLOB = "x" * 2000
"""Each posted event's payload: about 2 KB, a typical structured log line or two."""
GIB = 1024**3


def rss(pid: int) -> int:
    """The resident memory of process *pid*, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_gateway(
    folder: Path, idle_timeout: float, retention: int
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Run the gateway; return its process and its addresses."""
    ready = folder / "ready.json"
    script = shutil.which("cse-bridge") or str(
        Path(sys.executable).parent / "cse-bridge"
    )
    process = subprocess.Popen(
        [
            script,
            "gateway",
            "--port=0",
            "--pubsub-port=0",
            f"--secret={SECRET}",
            f"--api-key={API_KEY}=1",
            f"--idle-timeout={idle_timeout}",
            f"--retention={retention}",
            f"--ready-file={ready}",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    return process, json.loads(ready.read_text())


def token(sandbox: str) -> str:
    """An access token for *sandbox* in workspace 1."""
    return issue_token(SECRET, sandbox, 1, ttl=None)


async def subscribe(
    host: str,
    port: int,
    sandboxes: list[str],
    *,
    read: bool,
    rcvbuf: int | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A subscriber of *sandboxes*; one that does not *read* leaves its input unread."""
    if rcvbuf is not None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    else:
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
    for sandbox in sandboxes:
        writer.write(f"SUBSCRIBE {sandbox} {token(sandbox)}\r\n".encode())
        assert await reader.readexactly(5) == b"+OK\r\n"
    if not read:
        writer.transport.pause_reading()
    return reader, writer


async def drain(reader: asyncio.StreamReader, counter: list[int]) -> None:
    """Read everything a subscriber gets, counting bytes."""
    while chunk := await reader.read(65536):
        counter[0] += len(chunk)


async def cost_per_connection(
    pid: int, host: str, port: int, count: int
) -> tuple[float, float]:
    """Bytes of gateway memory one idle connection and one subscriber cost."""
    await asyncio.sleep(0.5)
    before = rss(pid)
    idle = [await asyncio.open_connection(host, port) for _ in range(count)]
    await asyncio.sleep(0.5)
    with_idle = rss(pid)
    # The idle ones stay open: the subscribers cannot reuse what they freed.
    subs = [await subscribe(host, port, [f"cost-{i}"], read=True) for i in range(count)]
    await asyncio.sleep(0.5)
    with_subs = rss(pid)
    for _, writer in [*idle, *subs]:
        writer.close()
    return (with_idle - before) / count, (with_subs - with_idle) / count


async def keep_idle(
    host: str, ports: list[int], count: int, stop: asyncio.Event
) -> int:
    """Hold *count* silent connections over *ports*; reopen those the gateway closes."""
    opened = 0

    async def one(port: int) -> None:
        nonlocal opened
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            opened += 1
            closed = asyncio.ensure_future(reader.read())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            stopping.cancel()
            writer.close()

    await asyncio.gather(*(one(ports[i % len(ports)]) for i in range(count)))
    return opened


async def soak(args: argparse.Namespace, pid: int, urls: dict[str, str]) -> dict:
    """The soak itself; returns what it measured."""
    host, _, port_text = urls["pubsub"].rpartition(":")
    pubsub_port = int(port_text)
    http_port = int(urls["http"].rpartition(":")[2])
    per_idle, per_sub = await cost_per_connection(pid, host, pubsub_port, args.count)

    stop = asyncio.Event()
    received = [0]
    sandboxes = [f"soak-{i}" for i in range(args.sandboxes)]
    readers = [await subscribe(host, pubsub_port, [sb], read=True) for sb in sandboxes]
    drains = [asyncio.ensure_future(drain(r, received)) for r, _ in readers]
    # Each slow consumer follows every sandbox and reads nothing: they pass the
    # per-subscriber cap (8 MiB) and, together, the total one (128 MiB).
    slow = [
        await subscribe(host, pubsub_port, sandboxes, read=False, rcvbuf=4096)
        for _ in range(args.slow)
    ]
    idle = asyncio.ensure_future(
        keep_idle(host, [pubsub_port, http_port], args.idle, stop)
    )
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    samples: list[tuple[float, int]] = []
    headers = {sb: {"Authorization": f"Bearer {token(sb)}"} for sb in sandboxes}
    body = {"type": "soak", "data": {"blob": BLOB}}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:

        async def post(sandbox: str) -> None:
            started = time.perf_counter()
            try:
                async with http.post(
                    f"{urls['http']}/events", json=body, headers=headers[sandbox]
                ) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1
                return
            latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        next_sample = began
        tasks: set[asyncio.Task[None]] = set()
        sent = 0
        while (now := time.monotonic()) - began < args.seconds:
            if now >= next_sample:
                samples.append((round(now - began, 1), rss(pid)))
                next_sample += 1.0
            due = int((now - began) * args.rate)
            while sent < due:
                task = asyncio.ensure_future(post(sandboxes[sent % len(sandboxes)]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        samples.append((round(time.monotonic() - began, 1), rss(pid)))
    stop.set()
    reopened = await idle
    for _, writer in [*readers, *slow]:
        writer.close()
    for task in drains:
        task.cancel()
    latencies.sort()
    return {
        "per_idle": per_idle,
        "per_sub": per_sub,
        "samples": samples,
        "latencies": latencies,
        "statuses": statuses,
        "received": received[0],
        "sent": sent,
        "idle_opened": reopened,
    }


def pct(values: list[float], q: float) -> float:
    """The *q* quantile of sorted *values*."""
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=200, help="POSTs per second")
    parser.add_argument("--sandboxes", type=int, default=20)
    parser.add_argument("--slow", type=int, default=20, help="never-reading subs")
    parser.add_argument("--idle", type=int, default=500, help="silent connections")
    parser.add_argument("--count", type=int, default=2000, help="for the cost step")
    parser.add_argument("--idle-timeout", type=float, default=10.0)
    parser.add_argument("--retention", type=int, default=100, help="per sandbox")
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, urls = start_gateway(Path(folder), args.idle_timeout, args.retention)
        try:
            result = asyncio.run(soak(args, process.pid, urls))
        finally:
            process.terminate()
            process.wait(20)
    samples = result["samples"]
    memory = [value for _, value in samples]
    first, last, peak = memory[0], memory[-1], max(memory)
    # Memory rises while the stalled subscribers fill their buffers up to the caps,
    # then falls as they are cut off; from then on (the last quarter) it should be
    # flat.
    tail = memory[len(memory) * 3 // 4 :]
    latencies = result["latencies"]
    p50, p99 = pct(latencies, 0.50) * 1000, pct(latencies, 0.99) * 1000
    per_gib_idle = GIB / max(result["per_idle"], 1.0)
    per_gib_sub = GIB / max(result["per_sub"], 1.0)
    mib = 1024 * 1024
    print(f"gateway RSS over {args.seconds:g} s (MiB):",
          " ".join(f"{value / mib:.0f}" for value in memory))  # fmt: skip
    print(f"RSS start {first / mib:.1f} MiB, peak {peak / mib:.1f}, last quarter "
          f"{min(tail) / mib:.1f} to {max(tail) / mib:.1f}, end {last / mib:.1f}")  # fmt: skip
    print(f"POST latency p50 {p50:.1f} ms, p99 {p99:.1f} ms over "
          f"{len(latencies)} requests; statuses {result['statuses']}")  # fmt: skip
    print(f"subscribers received {result['received'] / mib:.1f} MiB; idle "
          f"connections opened {result['idle_opened']} (closed by --idle-timeout "
          f"{args.idle_timeout:g} s and reopened)")  # fmt: skip
    print(f"one idle connection costs {result['per_idle'] / 1024:.1f} KiB: "
          f"{per_gib_idle:,.0f} per GiB; one subscriber "
          f"{result['per_sub'] / 1024:.1f} KiB: {per_gib_sub:,.0f} per GiB")  # fmt: skip
    if args.json:
        write_results(
            args.json,
            benchmark="soak",
            title="Gateway soak: memory over time and POST latency under load",
            args=args,
            comparisons=[
                Comparison(
                    id="rss",
                    title="Gateway resident memory during the soak",
                    metric="resident memory",
                    unit="MiB",
                    better="lower",
                    baseline="start",
                    samples={
                        "start": [first / mib],
                        "peak": [peak / mib],
                        "last quarter, lowest": [min(tail) / mib],
                        "last quarter, highest": [max(tail) / mib],
                        "end": [last / mib],
                    },
                )
            ],
            facts=[
                Fact("POST latency p50", p50, "ms"),
                Fact("POST latency p99", p99, "ms"),
                Fact("idle connections per GiB", per_gib_idle, "connections"),
                Fact("subscribers per GiB", per_gib_sub, "subscribers"),
                Fact("events posted", float(result["sent"]), "events"),
            ],
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
