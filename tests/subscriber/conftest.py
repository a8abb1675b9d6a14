"""Fixtures: pub/sub clients on the real gateway that are always disconnected."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cse_bridge.client import EventsClient
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent
from cse_bridge.subscriber import PubSubClient

from ..helpers import API_KEY

WAIT = 10.0
"""Seconds to wait for something that must happen."""

FAST: dict[str, Any] = {
    "reconnect_delay": 0.05,
    "max_reconnect_delay": 0.2,
    "connect_timeout": 5.0,
}
"""Small delays so reconnect tests stay quick."""


class Recorder:
    """Collects what a client's listeners see; lets a test wait for a count."""

    def __init__(self, client: PubSubClient) -> None:
        self.events: list[SandboxEvent] = []
        self.errors: queue.SimpleQueue[BaseException] = queue.SimpleQueue()
        self.connects: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.disconnects: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        client.on("event", self._event)
        client.on("error", self.errors.put)
        client.on("connect", lambda: self.connects.put(None))
        client.on("disconnect", lambda: self.disconnects.put(None))

    def _event(self, event: SandboxEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[SandboxEvent]:
        """Wait until *count* events arrived; return them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.events) >= count, timeout)
            return list(self.events)


@pytest.fixture
def sandbox_id() -> str:
    """A fresh sandbox id."""
    return f"sb-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_client() -> Iterator[Callable[..., PubSubClient]]:
    """Build pub/sub clients; every one is disconnected after the test."""
    made: list[PubSubClient] = []

    def make(**options: Any) -> PubSubClient:
        client = PubSubClient(**{**FAST, **options})
        made.append(client)
        return client

    yield make
    for client in made:
        client.disconnect()


def gateway_options(gw: GatewayThread, sandbox_id: str) -> dict[str, Any]:
    """Client options for *gw*: address, token, API key and HTTP URL."""
    return {
        "host": gw.pubsub_host,
        "port": gw.pubsub_port,
        "access_token": gw.issue_token(sandbox_id),
        "api_key": API_KEY,
        "gateway_url": gw.http_url,
    }


def producer(gw: GatewayThread, sandbox_id: str) -> EventsClient:
    """An HTTP client that stores events for *sandbox_id*."""
    return EventsClient(
        gateway_url=gw.http_url,
        access_token=gw.issue_token(sandbox_id),
        api_key=API_KEY,
        timeout=5.0,
    )
