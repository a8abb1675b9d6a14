"""
POST /events requests per second: the gateway's stores against a bare aiohttp handler.

Each target runs in its own process; ``wrk`` (Debian package ``wrk``) drives it with the
same request. Rounds are interleaved so that noise on this shared machine hits every
target alike; the report gives medians and ratios to the bare handler.

    python bench/gateway.py [--rounds 5] [--duration 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = """
wrk.method = "POST"
wrk.body = '{"type":"bench.event","data":{"i":1,"message":"hello from the benchmark","ok":true}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
"""


def start(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start one target and return it with its announced address and token."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_serve.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    info: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, info


def run_wrk(
    url: str, token: str, script: str, duration: float, connections: int
) -> float:
    """Return requests/s that wrk measured, failing on any non-2xx answer."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "-s",
            script,
            f"{url}/events",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_TOKEN": token},
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no rate in wrk output:\n{out}")
    return float(match.group(1))


def main() -> None:
    """Run the comparison and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="cse-bench-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    targets = {
        "bare aiohttp": ["bare"],
        "memory store": ["gateway", "memory://"],
        "sqlite store": ["gateway", f"sqlite:///{tmp / 'events.db'}"],
    }
    procs = {name: start(args) for name, args in targets.items()}
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
        for proc, _ in procs.values():
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    base = statistics.median(rates["bare aiohttp"])
    print(
        f"POST /events, wrk -t1 -c{opts.connections}, {opts.rounds} rounds of {opts.duration}s"
    )
    print(f"{'target':<14} {'median req/s':>13} {'min':>9} {'max':>9} {'vs bare':>8}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"{name:<14} {med:>13.0f} {min(values):>9.0f} {max(values):>9.0f} {med / base:>8.2f}"
        )


if __name__ == "__main__":
    main()
