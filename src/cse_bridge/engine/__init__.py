"""
The shipping engine: one bounded queue and worker that every producer shares.

Producers snapshot an ``EventItem`` on their own thread and ``submit`` it; the worker
encodes, batches and sends through a ``Sink`` (``EventsSink`` to the gateway,
``InMemorySink`` in tests).
"""

from __future__ import annotations

from ._clock import MONOTONIC, Clock, FakeClock, MonotonicClock
from ._encode import MAX_EVENT_BYTES, PACKED_TYPE, TRUNCATION_MARKER, encode_item
from ._engine import BatchEngine
from ._lifecycle import install_sigterm_flush, mark_engine_thread, on_engine_thread
from ._memory_sink import InMemorySink, ScriptStep
from ._settings import (
    DEFAULT_CONNECTIONS,
    DEFAULT_EXIT_TIMEOUT,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_OVERFLOW,
    DEFAULT_PACK,
    DEFAULT_SCHEDULE_DELAY,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SIGTERM,
    ENV_CONNECTIONS,
    ENV_EXIT_TIMEOUT,
    ENV_MAX_BATCH_BYTES,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_QUEUE_BYTES,
    ENV_MAX_QUEUE_SIZE,
    ENV_OVERFLOW,
    ENV_PACK,
    ENV_SCHEDULE_DELAY,
    ENV_SEND_TIMEOUT,
    ENV_SIGTERM,
    Overflow,
)
from ._shared import get_shared_engine
from ._sinks import EventsSink
from ._types import EncodedEvent, EngineStats, EventItem, SendResult, Sink
from ._worker import DROPPED_TYPE

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_EXIT_TIMEOUT",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_OVERFLOW",
    "DEFAULT_PACK",
    "DEFAULT_SCHEDULE_DELAY",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_SIGTERM",
    "DROPPED_TYPE",
    "ENV_CONNECTIONS",
    "ENV_EXIT_TIMEOUT",
    "ENV_MAX_BATCH_BYTES",
    "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_QUEUE_BYTES",
    "ENV_MAX_QUEUE_SIZE",
    "ENV_OVERFLOW",
    "ENV_PACK",
    "ENV_SCHEDULE_DELAY",
    "ENV_SEND_TIMEOUT",
    "ENV_SIGTERM",
    "MAX_EVENT_BYTES",
    "MONOTONIC",
    "PACKED_TYPE",
    "TRUNCATION_MARKER",
    "BatchEngine",
    "Clock",
    "EncodedEvent",
    "EngineStats",
    "EventItem",
    "EventsSink",
    "FakeClock",
    "InMemorySink",
    "MonotonicClock",
    "Overflow",
    "ScriptStep",
    "SendResult",
    "Sink",
    "encode_item",
    "get_shared_engine",
    "install_sigterm_flush",
    "mark_engine_thread",
    "on_engine_thread",
]
