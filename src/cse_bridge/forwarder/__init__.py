"""
The companion subscriber: events streamed out of sandboxes, into local observability.

``Forwarder`` follows sandboxes over pub/sub (history first when asked, resumable with
a state file) and hands each event once to its sinks: ``LoggingSink`` (real
``logging`` records), ``JsonlSink`` (one JSON line per event) and, in
``cse_bridge.forwarder.otlp``, ``OtlpSink`` (spans and logs to any OTLP backend).
Needs the ``redis`` extra (the pub/sub parser); ``import cse_bridge`` never imports it.
"""

from __future__ import annotations

from ._core import DEFAULT_HANDOFF_SIZE, Forwarder
from ._jsonl_sink import JsonlSink
from ._logging_sink import FORWARDED_ATTR, LoggingSink, is_forwarded
from ._state import Cursor, StateFile
from ._types import ForwarderStats, Sink

__all__ = [
    "DEFAULT_HANDOFF_SIZE",
    "FORWARDED_ATTR",
    "Cursor",
    "Forwarder",
    "ForwarderStats",
    "JsonlSink",
    "LoggingSink",
    "Sink",
    "StateFile",
    "is_forwarded",
]
