"""
Ship structlog events as sandbox events, with console output unchanged.

Runs an embedded local gateway and prints what arrived there; ``--use-env`` uses the
gateway COMPUTESDK_* name instead, like ``logging_handler.py``.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

import structlog

from cse_bridge import EventsClient
from cse_bridge.integrations.structlog import EventsProcessor


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
    """Log through structlog, then print the events that arrived."""
    with ExitStack() as stack:
        if "--use-env" in sys.argv[1:]:
            sandbox_id = followed_sandbox()
        else:
            from cse_bridge.testing import capture_events

            sandbox_id = stack.enter_context(capture_events("example")).sandbox_id

        events = EventsProcessor(service_name="example")
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                events,  # before the renderer: it ships the dict, then passes it on
                structlog.dev.ConsoleRenderer(colors=False),
            ]
        )
        log = structlog.get_logger().bind(logger="example.jobs")
        structlog.contextvars.bind_contextvars(request_id="r-1")
        log.info("job started", job="resize", size=3)
        log.warning("job slow", job="resize", seconds=12.5)

        events.flush(5.0)
        with EventsClient() as client:
            for event in client.get_events(sandbox_id):
                data = event.data
                print(
                    f"[{event.type}] {data['logger']}: {data['message']}"
                    f" {data['attributes']} {data['resource']}"
                )


if __name__ == "__main__":
    main()
