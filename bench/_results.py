"""
The benchmarks' ``--json PATH`` output: one schema for every script in bench/.

A results file describes one run of one script::

    {
      "schema": 1,
      "benchmark": "gateway",              # the script's name, also the file's
      "title": "Gateway POST and GET requests/s",
      "date": "2025-01-01T12:00:00+00:00", # UTC, when the run finished
      "revision": "8007a44...",            # git HEAD the run was made on, or null
      "modified": false,                   # src/ or bench/*.py differed from it
      "machine": {"cores": 2, "cpu": "...", "python": "3.11.7",
                  "implementation": "CPython", "platform": "Linux-...",
                  "arch": "x86_64"},
      "command": "python bench/gateway.py --rounds 3 --json ...",
      "environment": {"CSE_BRIDGE_CONNECTIONS": "16"},  # CSE_BRIDGE_* set, if any
      "parameters": {"rounds": 3, ...},    # the parsed options
      "comparisons": [                     # one chart panel each
        {"id": "post", "title": "...", "metric": "requests per second",
         "unit": "req/s", "better": "higher", "baseline": "memory store x1",
         "rows": [{"name": "bare aiohttp x1", "median": ..., "min": ..., "max": ...,
                   "runs": [...], "ratio_to_baseline": ..., "notes": "..."}]}
      ],
      "facts": [{"name": "...", "value": ..., "unit": "..."}]  # figures to quote
    }

Every row of a comparison shares its metric and unit, so the ratios compare like with
like; ``ratio_to_baseline`` is the row's median over the baseline row's median. A
script with several baselines (emit.py times the app thread against stdlib and the
delivery rate against wrk) writes one comparison per baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parent.parent


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` (write the results there too) to a script's parser."""
    parser.add_argument(
        "--json",
        metavar="PATH",
        type=Path,
        help="also write the results as JSON (see bench/_results.py) to PATH",
    )


@dataclass
class Comparison:
    """
    Contenders measured on one metric against a named baseline: one chart panel.

    *samples* maps each contender (in display order) to its measurements, one per
    run; a contender measured once has a one-item list. *notes* adds a short text to
    a row (records lost, say).
    """

    id: str
    title: str
    metric: str
    unit: str
    baseline: str
    samples: Mapping[str, Sequence[float]]
    better: Literal["higher", "lower"] = "higher"
    notes: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The comparison with each row's median, spread and ratio to the baseline."""
        if self.baseline not in self.samples:
            raise ValueError(f"baseline {self.baseline!r} is not among the rows")
        base = statistics.median(self.samples[self.baseline])
        rows = []
        for name, values in self.samples.items():
            if not values:
                raise ValueError(f"row {name!r} has no measurement")
            median = statistics.median(values)
            rows.append(
                {
                    "name": name,
                    "median": median,
                    "min": min(values),
                    "max": max(values),
                    "runs": list(values),
                    "ratio_to_baseline": median / base if base else None,
                    **({"notes": self.notes[name]} if name in self.notes else {}),
                }
            )
        return {
            "id": self.id,
            "title": self.title,
            "metric": self.metric,
            "unit": self.unit,
            "better": self.better,
            "baseline": self.baseline,
            "rows": rows,
        }


@dataclass
class Fact:
    """A single figure worth quoting that compares with nothing (a memory peak)."""

    name: str
    value: float
    unit: str


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python and platform of this machine."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() is all there is
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "arch": platform.machine(),
    }


def command() -> str:
    """This process's command line, the script's path relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = sys.argv[0]
    return shlex.join(["python", shown, *sys.argv[1:]])


def git(*args: str) -> str | None:
    """The output of a read-only git command in the repository, or None."""
    try:
        return subprocess.run(
            # --no-optional-locks: never refresh the index, even for `status`
            ["git", "--no-optional-locks", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def revision() -> tuple[str | None, bool | None]:
    """
    The git commit checked out, and whether the measured code differs from it.

    The measured code is src/ and the scripts; (None, None) outside a checkout.
    """
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    changes = git(
        "status", "--porcelain", "--untracked-files=no", "--", "src", "bench/*.py"
    )
    return commit, None if changes is None else bool(changes)


def write_results(
    path: Path,
    *,
    benchmark: str,
    title: str,
    args: argparse.Namespace,
    comparisons: Sequence[Comparison],
    facts: Sequence[Fact] = (),
) -> None:
    """
    Write one run's results to *path* as JSON (the schema in this module's docstring).

    Args:
        path: the file to write; its directory is created if missing.
        benchmark: the script's name (``gateway`` for bench/gateway.py).
        title: a one-line description of what the script measures.
        args: the script's parsed options, recorded as its parameters.
        comparisons: one per baseline, in the order to show them.
        facts: lone figures to quote beside the comparisons.
    """
    parameters = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key != "json" and value is not None
    }
    commit, modified = revision()
    document = {
        "schema": SCHEMA_VERSION,
        "benchmark": benchmark,
        "title": title,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "revision": commit,
        "modified": modified,
        "machine": machine(),
        "command": command(),
        "environment": {
            key: value
            for key, value in sorted(os.environ.items())
            if key.startswith("CSE_BRIDGE_")
        },
        "parameters": parameters,
        "comparisons": [comparison.to_json() for comparison in comparisons],
        "facts": [
            {"name": fact.name, "value": fact.value, "unit": fact.unit}
            for fact in facts
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults written to {path}")
