"""
Configure the events handler with ``logging.config.dictConfig``, as written in docs.

Runs an embedded local gateway and prints what arrived there; ``--use-env`` uses the
gateway COMPUTESDK_* name instead, like ``logging_handler.py``.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from contextlib import ExitStack

from cse_bridge import EventsClient
from cse_bridge.engine import get_shared_engine

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
        "events": {
            "class": "cse_bridge.integrations.logging.EventsHandler",
            "level": "INFO",
            "service_name": "example",
            "resource": {"deployment.environment": "dev"},
            "capture_uncaught": True,
            "max_queue_size": 10000,
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "events"]},
}


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
    """Apply the configuration, log, then print the events that arrived."""
    with ExitStack() as stack:
        if "--use-env" in sys.argv[1:]:
            sandbox_id = followed_sandbox()
        else:
            from cse_bridge.testing import capture_events

            sandbox_id = stack.enter_context(capture_events("example")).sandbox_id

        logging.config.dictConfig(LOGGING)
        log = logging.getLogger("example.config")
        log.info("configured from a dict", extra={"source": "dictConfig"})
        logging.config.dictConfig(LOGGING)  # reconfiguring closes and rebuilds
        log.error("still shipping after reconfiguration")

        get_shared_engine().flush(5.0)
        with EventsClient() as client:
            for event in client.get_events(sandbox_id):
                if not event.type.startswith("log."):
                    continue  # with --use-env the sandbox may hold other events too
                data = event.data
                print(
                    f"[{event.type}] {data['logger']}: {data['message']}"
                    f" {data['attributes']} {data['resource']}"
                )


if __name__ == "__main__":
    main()
