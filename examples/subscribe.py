"""
Follow a sandbox's events live, as an application would, with gap-free reconnects.

Starts an embedded local gateway and stores a few events itself. With ``--use-env`` it
follows the sandbox of COMPUTESDK_ACCESS_TOKEN on the gateway COMPUTESDK_* name instead,
says so on stderr, and waits for events someone else stores (``cse-bridge send``).
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


def main(count: int = 3, *, use_env: bool = False) -> None:
    """Subscribe, print *count* events, disconnect."""
    with ExitStack() as stack:
        if use_env:
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
            if use_env:  # subscribed: say what to expect, not silence
                host = os.environ.get("COMPUTESDK_PUBSUB_HOST", "events.computesdk.com")
                print(
                    f"--use-env: following {client.sandbox_id} on {host}; waiting "
                    f"for {count} events: store some with `cse-bridge send TYPE`",
                    file=sys.stderr,
                    flush=True,
                )
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
    args = [a for a in sys.argv[1:] if a != "--use-env"]
    main(int(args[0]) if args else 3, use_env="--use-env" in sys.argv[1:])
