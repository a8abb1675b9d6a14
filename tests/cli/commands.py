"""Run the real ``cse-bridge`` command: to completion, in the background, or with an
optional dependency made unimportable."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cse_bridge import config as cfg
from cse_bridge.gateway import GatewayThread

from ..helpers import API_KEY, CONFIG_ENV

SCRIPT = str(Path(sys.executable).with_name("cse-bridge"))
"""The installed console script: what a user runs."""
WAIT = 20.0

# Runs cse-bridge as the console script does, with the packages named in
# CSE_TEST_BLOCK impossible to import, as in an install without their extra.
_BLOCKING = """
import importlib.abc, os, sys

BLOCKED = set(os.environ["CSE_TEST_BLOCK"].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
sys.argv[0] = "cse-bridge"
from cse_bridge.cli import main
sys.exit(main())
"""


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without our variables, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_ENV}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def gateway_environ(gw: GatewayThread, sandbox: str, **extra: str) -> dict[str, str]:
    """COMPUTESDK_* pointing at *gw*, with a token for *sandbox* and the API key."""
    return environ(
        **{
            cfg.ENV_GATEWAY_URL: gw.http_url,
            cfg.ENV_PUBSUB_HOST: gw.pubsub_host,
            cfg.ENV_PUBSUB_PORT: str(gw.pubsub_port),
            cfg.ENV_ACCESS_TOKEN: gw.issue_token(sandbox),
            cfg.ENV_API_KEY: API_KEY,
        },
        **extra,
    )


def run(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    block: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cse-bridge ARGS`` to completion (without the *block* packages)."""
    command = [SCRIPT, *args]
    env = environ() if env is None else dict(env)
    if block:
        command = [sys.executable, "-c", _BLOCKING, *args]
        env["CSE_TEST_BLOCK"] = ",".join(block)
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


class Background:
    """
    ``cse-bridge ARGS`` running; a thread collects its output for bounded waits.

    With *merged*, stderr goes into the same pipe as stdout, as on a terminal.
    """

    def __init__(self, *args: str, env: dict[str, str], merged: bool = False) -> None:
        self.proc = subprocess.Popen(
            [SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out))
        ]
        if not merged:
            self._threads.append(
                threading.Thread(target=self._pump, args=(self.proc.stderr, self._err))
            )
        for thread in self._threads:
            thread.start()

    def _pump(self, pipe, buffer: bytearray) -> None:
        while chunk := pipe.read1(65536):
            with self._lock:
                buffer.extend(chunk)
                self._lock.notify_all()

    @property
    def out(self) -> str:
        """Everything written to stdout (and stderr, if merged) so far."""
        with self._lock:
            return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        """Everything written to stderr so far (empty if merged)."""
        with self._lock:
            return self._err.decode(errors="replace")

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        """Wait until *predicate(output)* holds; return the output; fail on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self._out.decode(errors="replace")):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._busy()):
                    raise AssertionError(
                        f"not seen within {timeout} s (exit {self.proc.poll()}): "
                        f"{self._out.decode(errors='replace')!r} "
                        f"{self._err.decode(errors='replace')!r}"
                    )
                self._lock.wait(min(left, 0.5))
            return self._out.decode(errors="replace")

    def _busy(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, signum: int) -> int:
        """Send *signum*; return the exit status once the output is all read."""
        self.proc.send_signal(signum)
        return self.finish()

    def finish(self) -> int:
        """Wait for the exit and the end of the output; return the exit status."""
        code = self.proc.wait(WAIT)
        for thread in self._threads:
            thread.join(WAIT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()
