"""
Forward a sandbox's events into local logging: what the sandbox logs comes back here.

Runs on an embedded local gateway; with ``--use-env``, on the gateway COMPUTESDK_*
name instead (the token names the sandbox; said on stderr). The
"sandbox" is this same process, logging through its own EventsHandler on the ``shop``
logger; the forwarder re-emits each record as ``sandbox.shop`` on the console, and
the script exits once all came back.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import ExitStack

from cse_bridge.forwarder import Forwarder, LoggingSink
from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.subscriber import sandbox_from_token

RECORDS = 4
FORMAT = "%(name)s %(levelname)s %(message)s [sandboxId=%(sandboxId)s]"


class Arrivals(logging.Handler):
    """Sets ``done`` once *count* records arrived: the script's finish line."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count, self.done = count, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.count -= 1  # handle() holds the handler's lock
        if self.count == 0:
            self.done.set()


def run_sandbox() -> None:
    """Log like an application in a sandbox: a few records and an exception."""
    log = logging.getLogger("shop")
    log.setLevel(logging.DEBUG)
    log.propagate = False  # the console shows only what came back
    shipper = EventsHandler(service_name="shop")  # COMPUTESDK_* from the environment
    log.addHandler(shipper)
    log.debug("cart %s loaded", "c-7", extra={"items": 3})
    log.info("order %s placed", 42, extra={"order_id": 42, "total": 9.5})
    log.warning("stock low for %s", "widget", extra={"left": 3})
    try:
        prices: dict[str, float] = {}
        print(prices["missing"])  # raises: a real exception to log
    except KeyError:
        log.exception("lookup failed")
    shipper.flush()  # send now rather than after the engine's batch wait


def main() -> int:
    """Follow the sandbox, run it, print what came back; 0 once all of it did."""
    with ExitStack() as stack:
        token = os.environ.get("COMPUTESDK_ACCESS_TOKEN", "")
        if "--use-env" in sys.argv[1:]:
            sandbox_id = sandbox_from_token(token) or os.environ["SANDBOX_ID"]
            host, port = None, None  # COMPUTESDK_PUBSUB_HOST / _PORT
            print(f"--use-env: sandbox {sandbox_id} (COMPUTESDK_*)", file=sys.stderr)
        else:
            from cse_bridge.testing import capture_events

            # Points COMPUTESDK_* at the local gateway, as a sandbox would have them.
            gateway = stack.enter_context(capture_events("shop-sandbox"))
            sandbox_id = gateway.sandbox_id
            host, port = gateway.pubsub_host, gateway.pubsub_port

        # Local logging as any application has it; forwarded records are ordinary
        # records of "sandbox.<original logger>", with sandboxId and the extras set.
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter(FORMAT))
        arrivals = Arrivals(RECORDS)
        forwarded = logging.getLogger("sandbox")
        forwarded.setLevel(logging.DEBUG)
        forwarded.addHandler(console)
        forwarded.addHandler(arrivals)

        # No echo: the forwarder re-emits on its own thread, which an EventsHandler
        # never ships from, so even a root-level EventsHandler would not loop.
        forwarder = Forwarder(
            [LoggingSink("sandbox")], sandboxes=[sandbox_id], host=host, port=port
        )
        stack.enter_context(forwarder)  # subscribed before the sandbox logs
        run_sandbox()
        if not arrivals.done.wait(10.0):
            print(f"only {RECORDS - arrivals.count} of {RECORDS} records came back")
            return 1
        print(f"{RECORDS} records came back from {sandbox_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
