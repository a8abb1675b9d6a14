"""Run a logging program in a child process and read what it reported on stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

PROGRAM = textwrap.dedent(
    """
    import logging, multiprocessing, os, signal, sys, time
    from cse_bridge.integrations.logging import EventsHandler

    ending, count = sys.argv[1], int(sys.argv[2])
    PRELUDE
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(EventsHandler(OPTIONS))

    def work(part):
        for i in range(part * 100, part * 100 + 100):
            logging.info("record %d", i, extra={"i": i})
        return part

    if __name__ == "__main__":
        if ending == "pool":
            with multiprocessing.get_context("fork").Pool(3) as pool:
                pool.map(work, range(count // 100))
                print(time.monotonic(), flush=True)  # the ending starts
            sys.exit(0)
        for i in range(count):
            logging.info("record %d", i, extra={"i": i})
        if os.environ.get("SETTLE"):  # let the first send start before the ending
            root.handlers[0].engine.flush(float(os.environ["SETTLE"]))
        print(time.monotonic(), flush=True)  # the ending starts
        if ending == "sys.exit":
            sys.exit(3)
        if ending == "raise":
            raise RuntimeError("boom")
        if ending == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        if ending == "os._exit":
            engine = root.handlers[0].engine
            flushed = engine.flush(float(os.environ["FLUSH"]))
            dropped = sum(engine.stats().dropped.values())
            print(f"os._exit: dropped {dropped}", file=sys.stderr, flush=True)
            os._exit(0 if flushed else 9)
    """
)
"""The endings: normal, sys.exit (3), raise (1), sigterm (-15), pool, os._exit."""

EXPECTED_STATUS = {
    "normal": 0,
    "sys.exit": 3,
    "raise": 1,
    "sigterm": -15,
    "pool": 0,
}
"""Each ending's exit status, which the engine must never change."""

EXIT_LINE = re.compile(r"^cse-bridge: (\d+) events not delivered \((\w+): (.*)\)$")
OS_EXIT_LINE = re.compile(r"^os\._exit: dropped (\d+)$", re.MULTILINE)
SPOOL_LINE = re.compile(r"^cse-bridge: (\d+) events spooled in (.+) \((.*)\); the next")


@dataclass(frozen=True)
class Ended:
    """What a child process did: status, stderr, duration and its exit lines."""

    status: int
    stderr: str
    seconds: float
    """From start to end, interpreter start-up included."""
    ending: float
    """From the ending's start (the last record, or the Pool's with-block end) to
    the process's end: what the exit budget bounds."""

    @property
    def exit_lines(self) -> list[str]:
        """The ``events not delivered`` lines (one per process that lost events)."""
        return [line for line in self.stderr.splitlines() if EXIT_LINE.match(line)]

    @property
    def spooled(self) -> int:
        """The events the spool lines say were spooled, summed over processes."""
        return sum(
            int(match.group(1))
            for line in self.stderr.splitlines()
            if (match := SPOOL_LINE.match(line))
        )

    @property
    def dropped_before_os_exit(self) -> int:
        """What the engine counted as dropped when the program called ``os._exit``."""
        match = OS_EXIT_LINE.search(self.stderr)
        return int(match.group(1)) if match else 0

    @property
    def reported(self) -> int:
        """The events the exit lines say were not delivered, summed."""
        return sum(
            int(match.group(1))
            for line in self.exit_lines
            if (match := EXIT_LINE.match(line))
        )


def run_program(
    ending: str,
    count: int,
    url: str,
    token: str,
    *,
    budget: float = 1.0,
    env: dict[str, str] | None = None,
    handler_options: str = "",
    prelude: str = "",
) -> Ended:
    """
    Run ``PROGRAM`` with *ending* and *count* records against *url*; at most 60 s.

    *handler_options* are ``EventsHandler`` keywords (Python source); *prelude* is
    one line run before the handler is set up.
    """
    program = PROGRAM.replace("PRELUDE", prelude or "pass").replace(
        "OPTIONS", handler_options
    )
    full_env = {
        **os.environ,
        "COMPUTESDK_GATEWAY_URL": url,
        "COMPUTESDK_ACCESS_TOKEN": token,
        "CSE_BRIDGE_EXIT_TIMEOUT": str(budget),
        "FLUSH": str(budget),
        **(env or {}),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program, ending, str(count)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ended = time.monotonic()
    # CLOCK_MONOTONIC is system-wide on Linux: the child's reading compares.
    marks = done.stdout.split()
    since_ending = ended - float(marks[-1]) if marks else float("nan")
    return Ended(done.returncode, done.stderr, ended - started, since_ending)
