"""
Configure the events handler with ``logging.config.dictConfig``, as written in docs.

Configured by COMPUTESDK_* like ``logging_handler.py``; without them it runs an
embedded local gateway and prints what arrived there.
"""

from __future__ import annotations

import logging
import logging.config
import os
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


def main() -> None:
    """Apply the configuration, log, then print the events that arrived."""
    with ExitStack() as stack:
        sandbox_id = os.environ.get("SANDBOX_ID", "")
        if not (os.environ.get("COMPUTESDK_ACCESS_TOKEN") and sandbox_id):
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
                data = event.data
                print(
                    f"[{event.type}] {data['logger']}: {data['message']}"
                    f" {data['attributes']} {data['resource']}"
                )


if __name__ == "__main__":
    main()
