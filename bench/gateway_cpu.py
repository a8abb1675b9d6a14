"""
CPU instructions per ``POST /events``: the memory-store gateway against a bare aiohttp
handler (in a ``web.Application``, and on the low-level ``web.Server`` the gateway
uses), counted by valgrind's callgrind (Debian packages ``valgrind`` and ``wrk``).

The request rates of ``bench/gateway.py`` swing by 2x on a loaded machine; instruction
counts do not, so one lever of a few percent shows here. Each target runs under
callgrind twice, driven by ``wrk`` for a short and a long run; the difference of the
two totals over the difference of the request counts is what one request costs,
without the start-up. ``--before SRC`` adds the memory store of another checkout's
``src`` (``git archive <rev> src | tar -x -C /tmp/before``), for before/after.

    python bench/gateway_cpu.py [--short 2] [--long 8] [--before SRC] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import Comparison, add_json_option, write_results
from _wrk import POST_LUA

HERE = Path(__file__).resolve().parent


def _total_instructions(out: Path) -> int:
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def count(args: list[str], src: str | None, seconds: int, tmp: Path) -> tuple[int, int]:
    """Return (instructions, requests) of one target driven *seconds* by wrk."""
    out = tmp / "callgrind.out"
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(HERE / "_serve.py"),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        script = tmp / "post.lua"
        script.write_text(POST_LUA)
        report = subprocess.run(
            [
                "wrk",
                "-t1",
                "-c8",
                f"-d{seconds}s",
                "-s",
                str(script),
                info["http"] + "/events",
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_TOKEN": info["token"]},
        ).stdout
        match = re.search(r"(\d+) requests in", report)
        if match is None or "Non-2xx" in report:
            raise RuntimeError(f"wrk failed:\n{report}")
        # SIGINT ends asyncio.run cleanly, so callgrind writes its totals.
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the target did not exit on SIGINT") from None
        return _total_instructions(out), int(match.group(1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.unlink(missing_ok=True)


def per_request(args: list[str], src: str | None, opts: argparse.Namespace) -> float:
    """Instructions one request costs *args* (start-up cancelled out)."""
    tmp = Path(tempfile.mkdtemp(prefix="cse-bench-cpu-"))
    try:
        short = count(args, src, opts.short, tmp)
        long = count(args, src, opts.long, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (long[0] - short[0]) / (long[1] - short[1])


def main() -> None:
    """Count each target and print instructions per request and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=2, help="seconds of the short run")
    parser.add_argument("--long", type=int, default=8, help="seconds of the long run")
    parser.add_argument("--before", metavar="SRC", help="another checkout's src")
    add_json_option(parser)
    opts = parser.parse_args()
    # A shell's background job ignores SIGINT and its children inherit that, so the
    # targets' Python would never install its handler. A handled signal is reset to
    # the default in a child: handle it here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for tool in ("valgrind", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install {tool}")
    targets: dict[str, tuple[list[str], str | None]] = {
        "bare aiohttp": (["bare"], None),
        "bare aiohttp low-level": (["bare-lowlevel"], None),
        "memory store": (["gateway", "memory://"], None),
    }
    if opts.before:
        targets["memory store (before)"] = (["gateway", "memory://"], opts.before)
    counts = {
        name: per_request(args, src, opts) for name, (args, src) in targets.items()
    }
    base = counts["bare aiohttp"]
    print("instructions per POST /events under callgrind (wrk -c8)")
    for name, value in counts.items():
        print(f"{name:<24} {value:>10.0f} {value / base:>6.2f}x bare")
    if opts.json:
        write_results(
            opts.json,
            benchmark="gateway_cpu",
            title="Instructions per POST /events: memory store against bare aiohttp",
            args=opts,
            comparisons=[
                Comparison(
                    id="instructions",
                    title="CPU instructions per POST /events (callgrind)",
                    metric="instructions per request",
                    unit="instructions",
                    baseline="bare aiohttp",
                    samples={name: [value] for name, value in counts.items()},
                    better="lower",
                )
            ],
        )


if __name__ == "__main__":
    main()
