"""
The README's usage, written out for mypy. Nothing runs this file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import aclosing

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
from cse_bridge.aio import AsyncEventsClient, AsyncPubSubClient
from cse_bridge.engine import EngineStats, Spool, SpoolStatus, get_shared_engine
from cse_bridge.forwarder import (
    FORWARDED_ATTR,
    Forwarder,
    ForwarderStats,
    JsonlSink,
    LoggingSink,
    Sink,
    is_forwarded,
)
from cse_bridge.forwarder.otlp import OtlpSink
from cse_bridge.gateway import GatewayConfig, GatewayLimits, GatewayThread
from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.subscriber import PubSubClient, PubSubState, sandbox_from_token
from cse_bridge.testing import LocalGateway


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


def exposed_gateway(cert: str, key: str, ca: str) -> int:
    limits = GatewayLimits(idle_timeout=30.0, max_connections=5000, rate_limit=100.0)
    settings = GatewayConfig(limits=limits, tls_cert=cert, tls_key=key)
    with GatewayThread(settings) as gateway:
        with EventsClient(gateway_url=gateway.http_url, ca_file=ca) as client:
            client.get_events("sandbox-1")
        follower = PubSubClient(sandbox_id="sandbox-1", tls=True, ca_file=ca)
        follower.disconnect()
        refused: int = gateway.gateway.rejections.count("connection_cap", "http")
        return refused


# --- Follow a sandbox live (cse_bridge.subscriber) -----------------------------------


def follow_with_callbacks() -> PubSubState:
    # The token, API key and host come from COMPUTESDK_*.
    client = PubSubClient(sandbox_id="sandbox-123")
    unsubscribe: Callable[[], None] = client.on(
        "event", lambda event: print(event.type, event.data)
    )
    client.on("error", lambda exc: print("error:", exc))
    client.connect(timeout=10)
    round_trip: float = client.ping()
    state = client.get_state()
    unsubscribe()
    client.disconnect()
    return state if round_trip >= 0 else "error"


def follow_by_iterating() -> list[str]:
    seen: list[str] = []
    with PubSubClient() as client:
        for event in client.stream():
            seen.append(f"{event.type} {event.data}")
    return seen


def sandbox_named_by(token: str) -> str | None:
    return sandbox_from_token(token)


# --- Bring sandbox events into your own observability (cse_bridge.forwarder) ---------


def forward_into_logging_and_jsonl(token: str) -> ForwarderStats:
    sinks: list[Sink] = [LoggingSink("sandbox"), JsonlSink("events.jsonl")]
    with Forwarder(
        sinks,
        sandboxes=["sb-1", "sb-2"],
        tokens={"sb-2": token},  # sb-1 uses COMPUTESDK_ACCESS_TOKEN
        since=0,
        state_file="fwd.json",
    ) as forwarder:
        flushed: bool = forwarder.flush(5.0)
        stats = forwarder.stats()
    lag: int | None = stats.lag_ms
    drops: int = stats.dropped + stats.overflow + sum(stats.sink_drops.values())
    print(flushed, lag, drops, stats.received, stats.delivered, stats.duplicates)
    return stats


def forward_into_otlp() -> int:
    sink = OtlpSink("http://collector:4318", protocol="grpc", headers={"k": "v"})
    forwarder = Forwarder([sink, JsonlSink()], sandboxes=["sb-1"]).start()
    forwarder.stop(timeout=2.0)
    return sink.exported


def no_echo(record: logging.LogRecord) -> bool:
    return is_forwarded(record) or FORWARDED_ATTR in record.__dict__


def follow_a_local_gateway() -> Forwarder:
    with LocalGateway("sandbox-1") as gateway:
        return Forwarder(
            [LoggingSink()],
            sandboxes=[gateway.sandbox_id],
            access_token=gateway.access_token,
            host=gateway.pubsub_host,
            port=gateway.pubsub_port,
        )


def ship_logs_from_a_sandbox() -> None:
    logging.basicConfig(
        level=logging.INFO,
        handlers=[logging.StreamHandler(), EventsHandler(service_name="worker")],
    )
    logging.getLogger("app").info("order %s placed", 42, extra={"order_id": 42})


async def read_and_follow_from_asyncio(sandbox_id: str) -> list[str]:
    """docs/how-to/asyncio.md: store, page, and follow until a completion."""
    async with AsyncEventsClient() as client:
        result: StoreEventResult = await client.store_event("custom", {"step": 1})
        newest: list[SandboxEvent] = await client.get_events(sandbox_id, limit=100)
        ids = [result.event_id, *(event.id for event in newest)]
        async for event in client.iter_events(sandbox_id, since=0):
            ids.append(event.id)
    async with (
        AsyncPubSubClient(sandbox_id=sandbox_id) as live,
        aclosing(live.stream()) as events,
    ):
        rtt: float = await live.ping()
        async for event in events:
            if event.type == EventType.EXECUTION_COMPLETED or rtt > 1:
                break
    return ids


def ship_with_a_spool(spool: str = "~/.cache/cse-bridge/spool") -> tuple[int, int]:
    handler = EventsHandler(service_name="worker", spool_dir=spool)
    logging.getLogger().addHandler(handler)
    engine = get_shared_engine(spool_dir=spool, spool_after=5.0)
    stats: EngineStats = engine.stats()
    status: SpoolStatus = Spool(spool, 1 << 28).status()
    return stats.spooled + stats.spool_replayed, status.events
