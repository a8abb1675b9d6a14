"""
Follow a sandbox's events live, as an application would, with gap-free reconnects.

Runs against the gateway named by COMPUTESDK_* variables when COMPUTESDK_ACCESS_TOKEN
is set; otherwise it starts an embedded local gateway and stores a few events itself.
Prints each event as it arrives and stops after COUNT events (default 3).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from contextlib import ExitStack

from cse_bridge import EventsClient
from cse_bridge.subscriber import PubSubClient


def main(count: int = 3) -> None:
    """Subscribe, print *count* events, disconnect."""
    with ExitStack() as stack:
        if os.environ.get("COMPUTESDK_ACCESS_TOKEN"):
            client = PubSubClient()  # everything from COMPUTESDK_* variables
            producer = None
        else:
            from cse_bridge.gateway import GatewayConfig, GatewayThread

            api_key = secrets.token_urlsafe(16)
            gateway = stack.enter_context(
                GatewayThread(
                    GatewayConfig(http_port=0, pubsub_port=0, api_keys={api_key: 1})
                )
            )
            token = gateway.issue_token("sandbox-example", 1)
            client = PubSubClient(
                access_token=token,  # names the sandbox
                host=gateway.pubsub_host,
                port=gateway.pubsub_port,
                api_key=api_key,  # enables backfill after a reconnect
                gateway_url=gateway.http_url,
            )
            producer = stack.enter_context(
                EventsClient(gateway_url=gateway.http_url, access_token=token)
            )
        client.on("error", lambda exc: print(f"error: {exc}", file=sys.stderr))
        with client:  # connects; disconnects at the end of the block
            events = client.stream()
            if producer is not None:
                store = producer.store_event
                threading.Thread(
                    target=lambda: [store("custom", {"n": n}) for n in range(count)]
                ).start()
            for seen, event in enumerate(events, start=1):
                print(event.type, event.data)
                if seen == count:
                    break


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
