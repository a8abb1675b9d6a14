"""Engine test fixtures: engines that are always shut down, reading events back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cse_bridge.engine import BatchEngine, EventItem, Sink
from cse_bridge.gateway import GatewayThread

from ..helpers import read_all_events

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
    return read_all_events(gateway.http_url, sandbox)
