"""
Ship stdlib logging records as sandbox events: the recommended setup.

Inside a sandbox COMPUTESDK_ACCESS_TOKEN (and COMPUTESDK_GATEWAY_URL) configure the
handler; set COMPUTESDK_API_KEY and SANDBOX_ID too to read the events back. Without
them the script runs an embedded local gateway (``cse_bridge.testing``) and prints
what arrived there.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack

from cse_bridge import EventsClient
from cse_bridge.engine import get_shared_engine
from cse_bridge.integrations.logging import EventsHandler


def main() -> None:
    """Log a few records, then print the events that arrived."""
    with ExitStack() as stack:
        sandbox_id = os.environ.get("SANDBOX_ID", "")
        if not (os.environ.get("COMPUTESDK_ACCESS_TOKEN") and sandbox_id):
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
                data = event.data
                exception = data.get("exception", {}).get("type", "")
                print(
                    f"[{event.type}] {data['logger']}: {data['message']}"
                    f" {data['attributes']} {data['resource']} {exception}".rstrip()
                )


if __name__ == "__main__":
    main()
