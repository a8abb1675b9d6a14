"""Process lifecycle: exit within the budget, multiprocessing children, threads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from cse_bridge.engine import InMemorySink, on_engine_thread
from cse_bridge.engine._lifecycle import Diagnostics
from cse_bridge.gateway import GatewayThread

from .conftest import EngineFactory, item, read_events

SCRIPT = textwrap.dedent(
    """
    import sys
    from cse_bridge.engine import EventItem, get_shared_engine
    engine = get_shared_engine(schedule_delay=30)
    for i in range(200):
        engine.submit(EventItem("log.info", {"i": i}))
    if sys.argv[1] == "exit3":
        sys.exit(3)
    if sys.argv[1] == "raise":
        raise RuntimeError("boom")
    """
)

MP_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    from cse_bridge.engine import EventItem, get_shared_engine

    def child():
        engine = get_shared_engine(schedule_delay=30)
        for i in range(50):
            engine.submit(EventItem("log.info", {"i": i, "who": "child"}))

    if __name__ == "__main__":
        get_shared_engine(schedule_delay=30).submit(
            EventItem("log.info", {"i": -1, "who": "parent"})
        )
        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join()
    """
)


def _run(
    code: str, arg: str, url: str, token: str, budget: str = "3"
) -> tuple[int, float]:
    env = {
        **os.environ,
        "COMPUTESDK_GATEWAY_URL": url,
        "COMPUTESDK_ACCESS_TOKEN": token,
        "CSE_BRIDGE_EXIT_TIMEOUT": budget,
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, arg],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, time.monotonic() - started


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestProcessExit:
    """A process that submits and exits ships everything, promptly."""

    @pytest.mark.parametrize(
        ("how", "code"), [("normal", 0), ("exit3", 3), ("raise", 1)]
    )
    def test_exit_delivers_everything(
        self, gateway: GatewayThread, how: str, code: int
    ) -> None:
        """Normal exit, sys.exit(3) and an unhandled exception all flush at exit."""
        sandbox = f"sb-exit-{how}"
        returncode, _ = _run(
            SCRIPT, how, gateway.http_url, gateway.issue_token(sandbox)
        )
        assert code == returncode
        # Sorted: the worker sends as soon as it is free, over several connections
        # at once, so the gateway may store neighbours in either order.
        assert list(range(200)) == sorted(
            e["data"]["i"] for e in read_events(gateway, sandbox)
        )

    def test_exit_is_prompt_when_the_gateway_is_unreachable(self) -> None:
        """With nothing listening, exit takes the budget (1 s) plus a margin at most."""
        url = f"http://127.0.0.1:{_closed_port()}"
        returncode, elapsed = _run(SCRIPT, "normal", url, "token", budget="1")
        assert 0 == returncode
        assert elapsed < 1.0 + 2.5

    def test_multiprocessing_fork_child_flushes_at_exit(
        self, gateway: GatewayThread
    ) -> None:
        """A multiprocessing fork child (it ends in os._exit) ships its events once."""
        token = gateway.issue_token("sb-mp")
        returncode, _ = _run(MP_SCRIPT, "", gateway.http_url, token)
        assert 0 == returncode
        events = read_events(gateway, "sb-mp")
        received = sorted((e["data"]["who"], e["data"]["i"]) for e in events)
        assert [("child", i) for i in range(50)] + [("parent", -1)] == received


class TestEngineThreads:
    """Thread identity and diagnostics."""

    def test_worker_thread_is_named_and_marked(
        self, make_engine: EngineFactory
    ) -> None:
        """The worker is the daemon thread cse-bridge-engine, marked as ours."""
        names: list[tuple[str, bool]] = []
        import threading

        def seen(event: object) -> bool:
            thread = threading.current_thread()
            names.append((thread.name, on_engine_thread()))
            return False

        engine = make_engine(InMemorySink(reject=seen))  # type: ignore[arg-type]
        engine.submit(item(1))
        assert engine.flush(10)
        assert [("cse-bridge-engine", True)] == names

    def test_the_worker_leaves_sigterm_to_the_main_thread(
        self, make_engine: EngineFactory
    ) -> None:
        """SIGTERM is blocked on the worker: the kernel gives it to the main thread."""
        masks: list[set[signal.Signals]] = []

        def seen(event: object) -> bool:
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
            return False

        engine = make_engine(InMemorySink(reject=seen))  # type: ignore[arg-type]
        engine.submit(item(1))
        assert engine.flush(10)
        assert signal.SIGTERM in masks[0]
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])

    def test_diagnostics_are_rate_limited(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The same kind of line is said on stderr once per interval."""
        diagnostics = Diagnostics(interval=3600)
        results = [diagnostics.warn("down", "gateway down %s", n) for n in range(5)]
        captured = capsys.readouterr()
        assert [True, False, False, False, False] == results
        assert ("", "gateway down 0\n") == (captured.out, captured.err)
