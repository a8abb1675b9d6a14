"""
What the operations layer (request observer, probes, drain tracking) costs a POST:
POST /events requests per second of this tree's gateway against an older tree's, both
on the memory store (the fastest, so the overhead shows most).

The baseline is any checkout's ``src`` directory, e.g. the commit before the metrics:
``git archive <commit> src | tar -x -C /tmp/base``. Each target runs in its own
process, started by ``_serve.py`` with ``PYTHONPATH`` naming the source to import;
``wrk`` (Debian package ``wrk``) drives both alike, in interleaved rounds so that noise
on a shared machine hits both; the report gives medians and the ratio.

    python bench/metrics_overhead.py --baseline-src /tmp/base/src
        [--rounds 5] [--duration 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _wrk import POST_LUA, run_wrk

HERE = Path(__file__).resolve().parent


def start(src: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a memory-store gateway importing cse_bridge from *src*."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_serve.py"), "gateway", "memory://"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"},
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def main() -> None:
    """Run the rounds and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    opts = parser.parse_args()
    targets = {
        "baseline": opts.baseline_src.resolve(),
        "this tree": (HERE.parent / "src").resolve(),
    }
    procs = {name: start(src) for name, src in targets.items()}
    rates: dict[str, list[float]] = {name: [] for name in targets}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(POST_LUA)
    try:
        for _, info in procs.values():  # warm-up
            run_wrk(info["http"], info["token"], script.name, 1, opts.connections)
        for _ in range(opts.rounds):
            for name, (_, info) in procs.items():
                rates[name].append(
                    run_wrk(
                        info["http"],
                        info["token"],
                        script.name,
                        opts.duration,
                        opts.connections,
                    )
                )
    finally:
        for proc, _ in procs.values():
            proc.kill()
            proc.wait()
        os.unlink(script.name)
    base = statistics.median(rates["baseline"])
    print(f"{'target':<12} {'median req/s':>13} {'min':>9} {'max':>9} {'ratio':>7}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(
            f"{name:<12} {med:>13.0f} {min(values):>9.0f} {max(values):>9.0f} "
            f"{med / base:>7.3f}"
        )


if __name__ == "__main__":
    main()
