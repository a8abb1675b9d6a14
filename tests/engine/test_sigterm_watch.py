"""
A SIGTERM reaches the handler even when the main thread sleeps in a lock.

CPython runs a Python signal handler only on the main thread between bytecodes: a
SIGTERM that lands on another thread, or just before the main thread blocks (a
``Pool`` worker going back to wait for a task), leaves it asleep. Each program here
runs in its own process: signal dispositions are process-wide.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

from cse_bridge.gateway import GatewayThread

from .exits import EXIT_LINE, run_program
from .servers import AnsweringServer, closed_port

BUDGET = 1.0
MARGIN = 2.0
"""Seconds past the budget the ending may take on a loaded machine."""

ASLEEP = textwrap.dedent(
    """
    import logging, signal, threading, time
    from cse_bridge.integrations.logging import EventsHandler

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(EventsHandler())
    for i in range(50):
        logging.info("record %d", i)

    def bystander():
        time.sleep(0.3)  # the main thread is asleep in a lock by now
        # The C handler runs here; the main thread is never interrupted.
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(30)

    threading.Thread(target=bystander, daemon=True).start()
    print(time.monotonic(), flush=True)
    threading.Event().wait()
    """
)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with *env* added; at most 15 s."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=15,  # a sleeping main thread would sleep until here
        check=False,
    )


def _run(code: str, url: str) -> tuple[int, str, float]:
    done = _python(
        code,
        COMPUTESDK_GATEWAY_URL=url,
        COMPUTESDK_ACCESS_TOKEN="a-token",
        CSE_BRIDGE_EXIT_TIMEOUT=str(BUDGET),
    )
    marks = done.stdout.split()
    ending = time.monotonic() - float(marks[-1]) if marks else float("nan")
    return done.returncode, done.stderr, ending


def test_a_sigterm_the_main_thread_missed_still_ends_the_process() -> None:
    """The handler runs, reports what it could not send and dies of the signal."""
    status, stderr, ending = _run(ASLEEP, f"http://127.0.0.1:{closed_port()}")
    assert -signal.SIGTERM == status, stderr
    lines = [line for line in stderr.splitlines() if EXIT_LINE.match(line)]
    assert 1 == len(lines), stderr
    assert lines[0].startswith("cse-bridge: 50 events not delivered"), stderr
    # 0.3 s until the signal, the budget, then interpreter start-up margin.
    assert ending < 0.3 + BUDGET + MARGIN, stderr


def test_the_watch_leaves_an_applications_wakeup_fd_alone() -> None:
    """An application that owns ``set_wakeup_fd`` (asyncio does) keeps it."""
    code = textwrap.dedent(
        """
        import logging, os, signal, socket
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        signal.set_wakeup_fd(ours.fileno())
        from cse_bridge.integrations.logging import EventsHandler
        logging.getLogger().addHandler(EventsHandler())
        logging.getLogger().warning("one")
        print(signal.set_wakeup_fd(-1) == ours.fileno(), flush=True)
        """
    )
    done = _python(code, COMPUTESDK_GATEWAY_URL="http://127.0.0.1:9")
    assert "True" == done.stdout.strip(), done.stderr


def test_a_fork_child_watches_its_own_pipe() -> None:
    """A fork child drops the parent's wakeup pipe and makes its own when it logs."""
    code = textwrap.dedent(
        """
        import logging, os, signal
        from cse_bridge.integrations.logging import EventsHandler
        logging.getLogger().addHandler(EventsHandler())
        logging.getLogger().warning("parent")
        pid = os.fork()
        if pid == 0:
            inherited = signal.set_wakeup_fd(-1)
            logging.getLogger().warning("child")
            own = signal.set_wakeup_fd(-1)
            print(inherited, own > 2, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    done = _python(code, COMPUTESDK_GATEWAY_URL="http://127.0.0.1:9")
    assert "-1 True" == done.stdout.strip(), done.stderr


def test_pool_endings_never_hang(gateway: GatewayThread) -> None:
    """
    The ``Pool`` with-block ending, many times, against a gateway answering 429.

    ``Pool.terminate()`` SIGTERMs workers that wait for tasks: this is where the
    missed signal used to hang about one run in fifty on a loaded machine. Set
    ``CSE_BRIDGE_POOL_LOOPS`` to loop longer.
    """
    loops = int(os.environ.get("CSE_BRIDGE_POOL_LOOPS", "9"))
    token = gateway.issue_token("sb-pool-loop")
    with (
        AnsweringServer(429, {"Retry-After": "0"}) as server,
        ThreadPoolExecutor(3) as pool,
    ):
        runs = list(
            pool.map(
                lambda _: run_program("pool", 600, server.url, token, budget=BUDGET),
                range(loops),
            )
        )
    for ended in runs:
        assert 0 == ended.status, ended
        assert 600 == ended.reported, ended
        assert ended.ending < BUDGET + MARGIN, ended
