"""Engine test fixtures: engines that are always shut down, reading events back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from cse_bridge.engine import BatchEngine, EventItem, Sink
from cse_bridge.gateway import GatewayThread

from ..helpers import API_KEY

EngineFactory = Callable[..., BatchEngine]


@pytest.fixture
def make_engine() -> Iterator[EngineFactory]:
    """Build engines with fast test defaults; every one is shut down afterwards."""
    engines: list[BatchEngine] = []

    def make(sink: Sink, **options: Any) -> BatchEngine:
        options.setdefault("schedule_delay", 0.02)
        engine = BatchEngine(sink, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.shutdown(1.0)


def item(index: int, event_type: str = "log.info", **extra: object) -> EventItem:
    """A small log-like item numbered *index*."""
    return EventItem(event_type, {"message": f"record {index}", "i": index, **extra})


def read_events(gateway: GatewayThread, sandbox: str) -> list[dict[str, Any]]:
    """Every event of *sandbox*, oldest first, paging with ``since``."""
    events: list[dict[str, Any]] = []
    since = 0
    while True:
        answer = requests.get(
            f"{gateway.http_url}/events/{sandbox}",
            params={"since": since, "limit": 1000},
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        answer.raise_for_status()
        page = answer.json()["data"]["events"]
        if not page:
            return events
        page.sort(key=lambda event: event["timestamp"])
        events.extend(page)
        since = page[-1]["timestamp"]
