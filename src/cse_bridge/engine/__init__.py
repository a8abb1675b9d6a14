"""
The shipping engine: one bounded queue and worker that every producer shares.

The story: a producer snapshots an ``EventItem`` on its own thread and submits it
(``_engine``: the queue and the worker); the worker encodes it (``_encode``) and
hands batches to the exporter, a ``Sink`` (``_exporter.EventsSink`` to the gateway,
``InMemorySink`` in tests), which posts through its transport (``_transport``,
``_http11``, ``_proxied``). ``_lifecycle`` ties engines to the process (exit, fork,
SIGTERM, the exit line); ``_options`` holds the knobs (``EngineOptions``).
``_spool`` keeps on disk what the engine could not send (``spool_dir``), for the
next engine of the same sandbox to replay.
"""

from __future__ import annotations

from ._clock import MONOTONIC, Clock, FakeClock, MonotonicClock
from ._encode import (
    MAX_EVENT_BYTES,
    PACKED_SPANS_TYPE,
    PACKED_TYPE,
    TRUNCATION_MARKER,
    encode_item,
)
from ._engine import DROPPED_TYPE, BatchEngine
from ._exporter import EventsSink
from ._lifecycle import install_sigterm_flush, mark_engine_thread, on_engine_thread
from ._memory_sink import InMemorySink, ScriptStep
from ._options import (
    DEFAULT_CONNECTIONS,
    DEFAULT_EXIT_TIMEOUT,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_OVERFLOW,
    DEFAULT_PACK,
    DEFAULT_PACK_SPANS,
    DEFAULT_SCHEDULE_DELAY,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SIGTERM,
    DEFAULT_SPOOL_AFTER,
    DEFAULT_SPOOL_MAX_BYTES,
    ENV_CA_FILES,
    ENV_CONNECTIONS,
    ENV_EXIT_TIMEOUT,
    ENV_MAX_BATCH_BYTES,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_QUEUE_BYTES,
    ENV_MAX_QUEUE_SIZE,
    ENV_OVERFLOW,
    ENV_PACK,
    ENV_PACK_SPANS,
    ENV_SCHEDULE_DELAY,
    ENV_SEND_TIMEOUT,
    ENV_SIGTERM,
    ENV_SPOOL_AFTER,
    ENV_SPOOL_DIR,
    ENV_SPOOL_MAX_BYTES,
    EngineOptions,
    Overflow,
)
from ._shared import get_shared_engine
from ._spool import Spool, Spooler, SpoolStatus
from ._transport import Transport
from ._types import EncodedEvent, EngineStats, EventItem, SendResult, Sink

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_EXIT_TIMEOUT",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_OVERFLOW",
    "DEFAULT_PACK",
    "DEFAULT_PACK_SPANS",
    "DEFAULT_SCHEDULE_DELAY",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_SIGTERM",
    "DEFAULT_SPOOL_AFTER",
    "DEFAULT_SPOOL_MAX_BYTES",
    "DROPPED_TYPE",
    "ENV_CA_FILES",
    "ENV_CONNECTIONS",
    "ENV_EXIT_TIMEOUT",
    "ENV_MAX_BATCH_BYTES",
    "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_QUEUE_BYTES",
    "ENV_MAX_QUEUE_SIZE",
    "ENV_OVERFLOW",
    "ENV_PACK",
    "ENV_PACK_SPANS",
    "ENV_SCHEDULE_DELAY",
    "ENV_SEND_TIMEOUT",
    "ENV_SIGTERM",
    "ENV_SPOOL_AFTER",
    "ENV_SPOOL_DIR",
    "ENV_SPOOL_MAX_BYTES",
    "MAX_EVENT_BYTES",
    "MONOTONIC",
    "PACKED_SPANS_TYPE",
    "PACKED_TYPE",
    "TRUNCATION_MARKER",
    "BatchEngine",
    "Clock",
    "EncodedEvent",
    "EngineOptions",
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
    "Spool",
    "SpoolStatus",
    "Spooler",
    "Transport",
    "encode_item",
    "get_shared_engine",
    "install_sigterm_flush",
    "mark_engine_thread",
    "on_engine_thread",
]
