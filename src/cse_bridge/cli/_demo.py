"""
``cse-bridge demo``: the whole round trip on one console in a few seconds.

An embedded gateway on free ports; a forwarder into local logging, subscribed with
history first so nothing is missed; a sandbox subprocess that logs and traces through
the bridge. When the sandbox exits, the demo waits until everything it stored came
back, prints a summary and exits 0 (after Ctrl-C or SIGTERM it cleans up and lets
``main`` exit 130 or 143).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from typing import Any, Final

from .. import config
from ._args import _positive_float, missing_extra

__all__ = ["add_parsers", "run_demo"]

DEMO_SANDBOX: Final = "demo-sandbox"
_SCHEDULE_DELAY: Final = "0.05"
"""The sandbox's engine batch wait: 50 ms instead of 1 s keeps the demo snappy."""


def _say(text: str) -> None:
    bold = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    sys.stderr.write(f"\x1b[1m== {text}\x1b[0m\n" if bold else f"== {text}\n")
    sys.stderr.flush()


def add_parsers(commands: Any) -> None:
    """Add the ``demo`` subcommand to ``cse-bridge``'s parser."""
    demo = commands.add_parser(
        "demo",
        help="see the whole round trip in a few seconds (embedded gateway)",
        description=(
            "Start an embedded gateway, run a small sandbox program that logs "
            "(logging, structlog) and traces (OpenTelemetry) through the bridge, and "
            "forward its stream back into logging on this console."
        ),
    )
    demo.add_argument(
        "--timeout",
        type=_positive_float,
        default=20.0,
        metavar="SECONDS",
        help="how long the sandbox and the round trip may take",
    )
    demo.set_defaults(run=lambda args: run_demo(timeout=args.timeout))


def run_demo(timeout: float = 20.0) -> int:
    """
    Run the demo; return 0 once every event came back, 1 if not within *timeout*.

    Blocks for a few seconds; from the main thread (Ctrl-C ends it cleanly).

    Raises:
        MissingExtra: The gateway or the subscriber is not installed.
        KeyboardInterrupt: Ctrl-C or SIGTERM, after the cleanup.
    """
    try:
        from ..forwarder import Forwarder, LoggingSink
        from ..gateway import GatewayConfig, GatewayThread
    except ImportError as exc:
        # Every part of the round trip: the gateway, the subscriber, the producers.
        raise missing_extra(exc, "gateway,redis") from None
    from ..client import EventsClient
    from ._console import console_logging

    api_key = "demo-" + secrets.token_hex(8)
    started = time.monotonic()
    gateway = GatewayThread(
        GatewayConfig(
            http_port=0,
            pubsub_port=0,
            secret=secrets.token_hex(32),
            api_keys={api_key: 1},
        )
    )
    forwarder: Forwarder | None = None
    sandbox: subprocess.Popen[bytes] | None = None
    console = contextlib.ExitStack()  # the console's handlers, off again at the end
    try:
        gateway.start()
        token = gateway.issue_token(DEMO_SANDBOX, 1)
        _say(f"gateway on {gateway.http_url}, pub/sub port {gateway.pubsub_port}")
        console.enter_context(console_logging())
        forwarder = Forwarder(
            [LoggingSink("sandbox")],
            sandboxes=[DEMO_SANDBOX],
            access_token=token,
            api_key=api_key,
            gateway_url=gateway.http_url,
            host=gateway.pubsub_host,
            port=gateway.pubsub_port,
            since=0,  # history first: nothing stored before the subscription is lost
        ).start()
        _say("forwarder subscribed; starting the sandbox program")
        env = dict(
            os.environ,
            **{
                config.ENV_GATEWAY_URL: gateway.http_url,
                config.ENV_ACCESS_TOKEN: token,
                "CSE_BRIDGE_SCHEDULE_DELAY": _SCHEDULE_DELAY,
            },
        )
        env.pop(config.ENV_API_KEY, None)
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "cse_bridge.cli._demo_sandbox"], env=env
        )
        code = sandbox.wait(timeout)
        with EventsClient(gateway_url=gateway.http_url, api_key=api_key) as client:
            stored = len(list(client.iter_events(DEMO_SANDBOX)))
        deadline = time.monotonic() + timeout
        while forwarder.stats().delivered < stored and time.monotonic() < deadline:
            forwarder.flush(0.2)
        delivered = forwarder.stats().delivered
        elapsed = time.monotonic() - started
        _say(
            f"round trip: the sandbox (exit {code}) stored {stored} events; "
            f"{delivered} came back through the forwarder into logging "
            f"in {elapsed:.1f} s"
        )
    except KeyboardInterrupt:
        _say("interrupted")
        raise
    except subprocess.TimeoutExpired:
        _say(f"the sandbox did not finish within {timeout:.0f} s")
        return 1
    else:
        return 0 if delivered >= stored and code == 0 else 1
    finally:
        with console:  # off the root logger last, whatever stopping raises
            if sandbox is not None and sandbox.poll() is None:
                sandbox.kill()
                sandbox.wait()
            if forwarder is not None:
                forwarder.stop(timeout=2.0)
            gateway.stop()
