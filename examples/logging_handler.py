"""
Ship stdlib logging records as sandbox events: the recommended setup.

The script runs an embedded local gateway (``cse_bridge.testing``) and prints what
arrived there. With ``--use-env`` it ships to the gateway COMPUTESDK_* name instead, as
inside a sandbox (COMPUTESDK_ACCESS_TOKEN, COMPUTESDK_GATEWAY_URL), and reads back with
COMPUTESDK_API_KEY and SANDBOX_ID; it says which sandbox on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack

from cse_bridge import EventsClient
from cse_bridge.engine import get_shared_engine
from cse_bridge.integrations.logging import EventsHandler


def followed_sandbox() -> str:
    """With ``--use-env``: the sandbox COMPUTESDK_* and SANDBOX_ID name (on stderr)."""
    sandbox_id = os.environ.get("SANDBOX_ID", "")
    if not (os.environ.get("COMPUTESDK_ACCESS_TOKEN") and sandbox_id):
        sys.exit(
            "--use-env needs COMPUTESDK_ACCESS_TOKEN, COMPUTESDK_API_KEY, SANDBOX_ID"
        )
    url = os.environ.get("COMPUTESDK_GATEWAY_URL", "https://events.computesdk.com")
    print(f"--use-env: sandbox {sandbox_id} on {url}", file=sys.stderr)
    return sandbox_id


def main() -> None:
    """Log a few records, then print the events that arrived."""
    with ExitStack() as stack:
        if "--use-env" in sys.argv[1:]:
            sandbox_id = followed_sandbox()
        else:
            from cse_bridge.testing import capture_events

            sandbox_id = stack.enter_context(capture_events("example")).sandbox_id

        # The recommended setup: console output as before, plus every record as an
        # event, unhandled exceptions included.
        logging.basicConfig(
            level=logging.INFO,
            handlers=[
                logging.StreamHandler(),
                EventsHandler(service_name="example", capture_uncaught=True),
            ],
        )
        log = logging.getLogger("example.orders")
        log.info("order %s placed", 42, extra={"order_id": 42, "total": 9.5})
        log.warning("stock low for %s", "widget", extra={"left": 3})
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")

        get_shared_engine().flush(5.0)  # what the handler shares with other producers
        with EventsClient() as client:
            for event in client.get_events(sandbox_id):
                if not event.type.startswith("log."):
                    continue  # with --use-env the sandbox may hold other events too
                data = event.data
                exception = data.get("exception", {}).get("type", "")
                print(
                    f"[{event.type}] {data['logger']}: {data['message']}"
                    f" {data['attributes']} {data['resource']} {exception}".rstrip()
                )


if __name__ == "__main__":
    main()
