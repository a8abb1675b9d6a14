"""
Store events as a sandbox would, then read them back as an application would.

Starts an embedded local gateway for the duration of the script. With ``--use-env`` it
uses the gateway COMPUTESDK_* name instead (COMPUTESDK_ACCESS_TOKEN stores,
COMPUTESDK_API_KEY reads SANDBOX_ID, default sandbox-1) and says so on stderr.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import ExitStack

from cse_bridge import EventsClient, EventType


def main() -> None:
    """Store three events, then read them back with filters."""
    with ExitStack() as stack:
        if "--use-env" in sys.argv[1:]:
            sandbox_id = os.environ.get("SANDBOX_ID", "sandbox-1")
            client = stack.enter_context(EventsClient())  # COMPUTESDK_*
            print(
                f"--use-env: sandbox {sandbox_id} on {client.gateway_url}",
                file=sys.stderr,
            )
        else:
            from cse_bridge.gateway import GatewayConfig, GatewayThread

            api_key = secrets.token_urlsafe(16)
            gateway = stack.enter_context(
                GatewayThread(
                    GatewayConfig(http_port=0, pubsub_port=0, api_keys={api_key: 1})
                )
            )
            sandbox_id = "sandbox-example"
            client = stack.enter_context(
                EventsClient(
                    gateway_url=gateway.http_url,
                    access_token=gateway.issue_token(sandbox_id, 1),
                    api_key=api_key,
                )
            )

        # Inside the sandbox: store events (the token names the sandbox).
        client.store_event(EventType.EXECUTION_STARTED, {"command": "python main.py"})
        client.store_event(EventType.TERMINAL_OUTPUT, {"text": "Hello, World!\n"})
        result = client.store_event(
            EventType.EXECUTION_COMPLETED, {"exitCode": 0, "duration": 1234}
        )
        print(f"stored {result.event_id} at {result.timestamp}")

        # In the application: read them back, all or filtered by type.
        for event in client.get_events(sandbox_id):
            print(f"[{event.type}] {event.data}")
        completed = client.get_events(sandbox_id, type=EventType.EXECUTION_COMPLETED)
        print(f"completed: {len(completed)} exitCode={completed[0].data['exitCode']}")


if __name__ == "__main__":
    main()
