"""
The README's usage, written out for mypy. Nothing runs this file.
"""

from __future__ import annotations

from cse_bridge import (
    EventsAuthError,
    EventsClient,
    EventsError,
    EventsNetworkError,
    EventType,
    SandboxEvent,
    StoreEventResult,
    create_events_client,
)
from cse_bridge.gateway import GatewayConfig, GatewayThread


def store_from_sandbox() -> str:
    client = create_events_client(access_token="token")
    result: StoreEventResult = client.store_event(
        EventType.EXECUTION_COMPLETED, {"exitCode": 0, "duration": 1234}
    )
    return result.event_id


def read_from_application() -> list[str]:
    with EventsClient(api_key="key", gateway_url="http://127.0.0.1:8080") as client:
        events: list[SandboxEvent] = client.get_events(
            "sandbox-123", type="execution.completed", since=0, limit=50
        )
        client.set_api_key("other-key")
        client.set_access_token("other-token")
    return [f"[{e.type}] {e.data}" for e in events]


def handle_errors(client: EventsClient) -> int | None:
    try:
        client.get_events("sandbox-123")
    except EventsAuthError:
        return 401
    except EventsNetworkError as exc:
        return exc.status_code
    except EventsError as exc:
        return exc.status_code
    return None


def embedded_gateway() -> str:
    with GatewayThread(GatewayConfig(http_port=0, pubsub_port=0)) as gateway:
        token: str = gateway.issue_token("sandbox-1", 1)
        return gateway.http_url + token
